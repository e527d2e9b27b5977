"""POST /api/users/{user_id}/trades: validate, book in one transaction, honour Idempotency-Key.

Booking takes the user's portfolio row lock first, so two trades of one user never interleave
and two sells that together would overdraw cannot both pass the holdings check:
- PostgreSQL: `SELECT ... FOR UPDATE` on the portfolio row (other users' trades run on);
- SQLite: `BEGIN IMMEDIATE`, which takes the database's single write lock before the first
  read, so it also holds across processes (several `serve` workers on one file); waiting
  writers wait up to DB_POOL_TIMEOUT in the driver's thread, never on the event loop. In
  front of it an asyncio lock queues this process's trades: SQLite's busy handler polls with
  sleeps of up to 100 ms, which measured as a 1 s p99 under 16 concurrent trades.

With an `Idempotency-Key` header the first answer is stored in the same
transaction as the trade, keyed by (user, key); a retry with the same body gets that answer
again (`Idempotent-Replayed: true`) and books nothing; the same key with another body is
refused (422 `idempotency_key_reused`). A rejection (insufficient cash, say) is a first answer
too, and is replayed the same way. Records are kept until deleted; prune them by age if the
table grows.
"""

from __future__ import annotations

import asyncio
import decimal
import hashlib
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ..cache import Cache, cache_of
from ..db import Database
from ..errors import PROBLEM_JSON, AppError, NotFoundError, problem
from ..ratelimit import rate_limit
from ..resources import registry
from ..schemas import RequestModel
from .auth import OwnUserId, caller_key
from .market import MarketData, market_data_of
from .models import Holding, IdempotencyRecord, Instrument, Portfolio, Trade
from .money import (
    PRICE_STEP,
    QUANTITY_STEP,
    ZERO,
    DecimalString,
    Fees,
    Price,
    Quantity,
    round_money,
)
from .portfolio import invalidate_portfolio

router = APIRouter(prefix="/api/users", tags=["trades"])

# Enough digits for quantity x price without rounding before `round_money`.
_EXACT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


class TradeRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=16, examples=["ACME"])
    side: Literal["buy", "sell"]
    quantity: Quantity = Field(examples=["1.5"])
    price: Price | None = Field(
        default=None, description="Execution price; the instrument's current price when absent."
    )
    fees: Fees = Field(default=ZERO, examples=["0.20"])


class TradeView(BaseModel):
    id: int
    user_id: int
    symbol: str
    side: Literal["buy", "sell"]
    quantity: DecimalString
    price: DecimalString
    fees: DecimalString
    notional: DecimalString
    realized_pnl: DecimalString
    cash_after: DecimalString
    executed_at: datetime


class TradeRejectedError(AppError):
    """A well-formed trade the portfolio cannot take; the body names the field."""

    status_code = 422

    def __init__(self, code: str, field: str, detail: str) -> None:
        super().__init__(
            detail,
            extra={"errors": [{"field": f"body.{field}", "message": detail, "type": code}]},
        )
        self.code = code


class IdempotencyKeyReusedError(AppError):
    status_code = 422
    code = "idempotency_key_reused"


_process_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()


def _process_lock(database: Database) -> AbstractAsyncContextManager[Any]:
    """SQLite: one trade at a time in this process (see the module docstring)."""
    if database.engine.dialect.name != "sqlite":
        return nullcontext()
    lock = _process_writers.get(database)
    if lock is None:
        lock = _process_writers[database] = asyncio.Lock()
    return lock


async def lock_portfolio(session: AsyncSession, user_id: int) -> Portfolio | None:
    """The user's portfolio, locked until the transaction ends (see the module docstring)."""
    query = select(Portfolio).where(Portfolio.user_id == user_id)
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))
        return await session.scalar(query)
    return await session.scalar(query.with_for_update())


async def _execute(session: AsyncSession, portfolio: Portfolio, order: TradeRequest) -> Trade:
    instrument = await session.scalar(select(Instrument).where(Instrument.symbol == order.symbol))
    if instrument is None:
        raise TradeRejectedError(
            "unknown_instrument", "symbol", f"unknown instrument '{order.symbol}'"
        )
    if instrument.currency != portfolio.currency:
        # No FX conversion here: a portfolio holds instruments quoted in its own currency.
        raise TradeRejectedError(
            "currency_mismatch",
            "symbol",
            f"{order.symbol} is quoted in {instrument.currency}; the portfolio is in"
            f" {portfolio.currency}",
        )
    # At the stored scales (exact: the request's digits are within them), so the answer and
    # a replay of it show what was booked.
    quantity = order.quantity.quantize(QUANTITY_STEP)
    price = (order.price if order.price is not None else instrument.price).quantize(PRICE_STEP)
    fees = round_money(order.fees)
    holding = await session.scalar(
        select(Holding).where(
            Holding.portfolio_id == portfolio.id, Holding.instrument_id == instrument.id
        )
    )
    with decimal.localcontext(_EXACT):
        notional = round_money(quantity * price)
        realized = ZERO
        if order.side == "buy":
            total = notional + fees
            if portfolio.cash < total:
                raise TradeRejectedError(
                    "insufficient_cash",
                    "quantity",
                    f"buying costs {total} {portfolio.currency}; cash is {portfolio.cash}",
                )
            if holding is None:
                holding = Holding(
                    portfolio_id=portfolio.id,
                    instrument_id=instrument.id,
                    quantity=ZERO,
                    cost_basis=ZERO,
                )
                session.add(holding)
            portfolio.cash -= total
            holding.quantity += quantity
            holding.cost_basis += total
        else:
            held = holding.quantity if holding is not None else ZERO
            if holding is None or held < quantity:
                raise TradeRejectedError(
                    "insufficient_holdings",
                    "quantity",
                    f"selling {quantity} {order.symbol}; the portfolio holds {held}",
                )
            proceeds = notional - fees
            if portfolio.cash + proceeds < ZERO:
                raise TradeRejectedError(
                    "insufficient_cash", "fees", f"fees of {fees} exceed cash and proceeds"
                )
            released = round_money(holding.cost_basis * quantity / held)
            realized = proceeds - released
            portfolio.cash += proceeds
            holding.quantity -= quantity
            holding.cost_basis -= released
    trade = Trade(
        portfolio_id=portfolio.id,
        instrument_id=instrument.id,
        side=order.side,
        quantity=quantity,
        price=price,
        fees=fees,
        notional=notional,
        realized_pnl=realized,
        executed_at=datetime.now(UTC),
    )
    session.add(trade)
    await session.flush()
    return trade


class Booked(BaseModel):
    status_code: int
    body: bytes
    replayed: bool

    @property
    def media_type(self) -> str:
        return "application/json" if self.status_code < 400 else PROBLEM_JSON


async def book_trade(
    database: Database,
    cache: Cache,
    market: MarketData,
    user_id: int,
    order: TradeRequest,
    idempotency_key: str | None,
) -> Booked:
    request_digest = hashlib.sha256(order.model_dump_json().encode()).digest()
    async with _process_lock(database), database.session() as session:
        portfolio = await lock_portfolio(session, user_id)
        if portfolio is None:
            raise NotFoundError(f"user {user_id} has no portfolio")
        if idempotency_key is not None:
            first = await session.get(IdempotencyRecord, (user_id, idempotency_key))
            if first is not None:
                if first.request_digest != request_digest:
                    detail = "this Idempotency-Key was used for another request; use a new key"
                    raise IdempotencyKeyReusedError(
                        detail,
                        extra={
                            "errors": [
                                {
                                    "field": "header.idempotency-key",
                                    "message": detail,
                                    "type": IdempotencyKeyReusedError.code,
                                }
                            ]
                        },
                    )
                return Booked(status_code=first.status_code, body=first.response, replayed=True)
        try:
            trade = await _execute(session, portfolio, order)
        except TradeRejectedError as exc:
            if idempotency_key is None:
                raise
            # The rejection is the first answer too: a retry must not book the trade later
            # (say, once cash has arrived). `_execute` checks before it changes anything, so
            # the record is all this transaction writes.
            answer = problem(exc.status_code, exc.code, exc.detail, **exc.extra)
            rejected = Booked(status_code=exc.status_code, body=bytes(answer.body), replayed=False)
            session.add(_record(user_id, idempotency_key, request_digest, rejected))
            await session.commit()
            return rejected
        booked = Booked(
            status_code=201,
            body=TradeView(
                id=trade.id,
                user_id=user_id,
                symbol=order.symbol,
                side=order.side,
                quantity=trade.quantity,
                price=trade.price,
                fees=trade.fees,
                notional=trade.notional,
                realized_pnl=trade.realized_pnl,
                cash_after=portfolio.cash,
                executed_at=trade.executed_at,
            )
            .model_dump_json()
            .encode(),
            replayed=False,
        )
        if idempotency_key is not None:
            session.add(_record(user_id, idempotency_key, request_digest, booked))
        await session.commit()
    await invalidate_portfolio(cache, user_id, market.price_version)
    return booked


def _record(user_id: int, key: str, request_digest: bytes, answer: Booked) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=user_id,
        key=key,
        request_digest=request_digest,
        status_code=answer.status_code,
        response=answer.body,
        created_at=datetime.now(UTC),
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    403: {"description": "Another user's portfolio"},
    404: {"description": "No such portfolio"},
    422: {
        "description": "Invalid trade: the errors name the field (unknown instrument, "
        "insufficient cash or holdings, Idempotency-Key reused with another body)"
    },
}


@router.post(
    "/{user_id}/trades",
    status_code=201,
    response_model=TradeView,
    summary="Book a trade",
    description="Buys or sells at the given price (the current price when absent); amounts "
    "are strings. Booked in one transaction under the portfolio's lock. With an "
    "Idempotency-Key header, a retry returns the first answer and books nothing.",
    responses=_RESPONSES,
    dependencies=[rate_limit("trades", per=caller_key)],
)
async def post_trade(
    user_id: OwnUserId,
    order: TradeRequest,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
    ] = None,
) -> Response:
    booked = await book_trade(
        registry(request).get(Database),
        cache_of(request),
        market_data_of(request),
        user_id,
        order,
        idempotency_key,
    )
    headers = {"Idempotent-Replayed": "true"} if booked.replayed else None
    return Response(
        booked.body, status_code=booked.status_code, media_type=booked.media_type, headers=headers
    )
