"""The fintech tables: users and their API tokens, instruments, portfolios, holdings, trades,
idempotency records, reports and the outbox of e-mails to send.

Money, prices and quantities are `Decimal` in Python and `NUMERIC(p, s)` on PostgreSQL. On
SQLite a NUMERIC column would turn '0.10' into the binary float 0.1, so there they are stored
as text (see `Exact`) and never summed or compared in SQL: arithmetic happens in Python.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from ..db import Base

# Scales: money to 1/10000 of a unit, prices to 8 places, quantities to 10 places.
MONEY_PRECISION, MONEY_SCALE = 20, 4
PRICE_PRECISION, PRICE_SCALE = 20, 8
QUANTITY_PRECISION, QUANTITY_SCALE = 28, 10


class Exact(TypeDecorator[Decimal]):
    """`NUMERIC(precision, scale)`, stored as text on SQLite so no value ever becomes a float."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self.step = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        # The same rounding on both databases (PostgreSQL would round to the scale anyway).
        exact = Decimal(value).quantize(self.step, rounding=ROUND_HALF_EVEN)
        return format(exact, "f") if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)) if not isinstance(value, Decimal) else value


def money() -> Exact:
    return Exact(MONEY_PRECISION, MONEY_SCALE)


def price() -> Exact:
    return Exact(PRICE_PRECISION, PRICE_SCALE)


def quantity() -> Exact:
    return Exact(QUANTITY_PRECISION, QUANTITY_SCALE)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """Only the SHA-256 digest of a token is stored; see auth.py for why SHA-256 suffices."""

    __tablename__ = "api_tokens"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Past it the token is refused; revoking sets `revoked_at`, and the token is refused too.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)


class Instrument(Base):
    __tablename__ = "instruments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    asset_class: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    price: Mapped[Decimal] = mapped_column(price())
    price_updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MarketState(Base):
    """One row: the price version, bumped in the transaction that changes any price."""

    __tablename__ = "market_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    price_version: Mapped[int] = mapped_column(Integer)


class Portfolio(Base):
    __tablename__ = "portfolios"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    cash: Mapped[Decimal] = mapped_column(money())

    # Also in the schema (revision 0004): no code path may leave a portfolio overdrawn. The
    # CAST is for SQLite, where amounts are text.
    __table_args__ = (CheckConstraint("CAST(cash AS NUMERIC) >= 0", name="cash_not_negative"),)


class Holding(Base):
    __tablename__ = "holdings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    quantity: Mapped[Decimal] = mapped_column(quantity())
    # What the quantity held cost, fees included (average-cost method).
    cost_basis: Mapped[Decimal] = mapped_column(money())

    __table_args__ = (
        UniqueConstraint("portfolio_id", "instrument_id"),
        CheckConstraint("CAST(quantity AS NUMERIC) >= 0", name="quantity_not_negative"),
    )


class Trade(Base):
    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(quantity())
    price: Mapped[Decimal] = mapped_column(price())
    fees: Mapped[Decimal] = mapped_column(money())
    # quantity x price rounded to the money scale; cash moves by notional +/- fees.
    notional: Mapped[Decimal] = mapped_column(money())
    realized_pnl: Mapped[Decimal] = mapped_column(money())
    executed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("side IN ('buy', 'sell')", name="side_known"),
        Index("ix_trades_portfolio_id_executed_at", "portfolio_id", "executed_at"),
    )


class IdempotencyRecord(Base):
    """The first answer to a POST with an Idempotency-Key, replayed to retries."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    # Amounts inside are strings: JSON numbers would be floats to most readers.
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("state IN ('pending', 'ready')", name="state_known"),)


class OutboxState(enum.StrEnum):
    PENDING = "pending"  # waiting for its first attempt, or for a retry's backoff
    SENDING = "sending"  # claimed by a sender (see reports/delivery.py)
    SENT = "sent"  # the mail server accepted it
    FAILED = "failed"  # refused for good (5xx) or out of attempts; `error` says why
    UNDELIVERABLE = "undeliverable"  # nowhere to send it (the user has no address)


class OutboxMessage(Base):
    """A message a delivery step sends (here: the report e-mail), written in the same
    transaction as what it announces, so it is sent if and only if that committed.

    Its state moves like a job's: claimed with one conditional UPDATE (pending -> sending), so
    one sender has it at a time, then sent, failed or back to pending for a retry.
    `message_id` is chosen when the row is written: a message sent again after its sender was
    lost carries the same Message-ID, which mail systems use to recognise a duplicate.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    recipient: Mapped[str] = mapped_column(String(254))
    payload: Mapped[Any] = mapped_column(JSON)
    report_id: Mapped[str | None] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    # When a sender may take it next: when it was written, or after a retry's backoff.
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The last refusal, or why it was given up.
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Also in the schema (revision 0009): whatever the code does, a message is sent exactly
    # when it has a time it was sent, and one that was given up says why.
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'sending', 'sent', 'failed', 'undeliverable')",
            name="state_known",
        ),
        CheckConstraint("(state = 'sent') = (sent_at IS NOT NULL)", name="sent_when_sent_at"),
        CheckConstraint(
            "state NOT IN ('failed', 'undeliverable') OR error IS NOT NULL",
            name="given_up_says_why",
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_outbox_sent_at", "sent_at"),
        # The senders' scan: what is due, oldest first.
        Index("ix_outbox_state_available_at", "state", "available_at"),
    )
