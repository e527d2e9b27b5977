"""The trade rules: what a portfolio can take, booked once per Idempotency-Key.

A buy needs cash for notional + fees; a sell needs the holding, and releases its cost basis
pro rata, which gives the realized P&L. Amounts are exact decimals at the stored scales.

With an Idempotency-Key the first answer is written down in the same transaction as the
trade, keyed by (user, key); a retry with the same order gets that answer again and books
nothing; the same key with another order is refused (`idempotency_key_reused`). A rejection
(insufficient cash, say) is a first answer too, and is replayed the same way: a retry must not
book the trade later, once cash has arrived. What the answer looks like is the caller's
business (`Idempotency.answer`): this module never sees HTTP.
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ...cache import Cache
from ...db import Database
from ...errors import AppError, NotFoundError
from ..market import MarketData
from ..models import Portfolio, Trade
from ..money import PRICE_STEP, QUANTITY_STEP, ZERO, round_money
from ..portfolio import invalidate_portfolio
from . import repository
from .schemas import TradeRequest, TradeView

# Enough digits for quantity x price without rounding before `round_money`.
_EXACT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


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

    def __init__(self) -> None:
        detail = "this Idempotency-Key was used for another request; use a new key"
        error = {"field": "header.idempotency-key", "message": detail, "type": self.code}
        super().__init__(detail, extra={"errors": [error]})


@dataclass(frozen=True)
class FirstAnswer:
    """The answer an Idempotency-Key's first request got, exactly as it was given."""

    status_code: int
    body: bytes


@dataclass(frozen=True)
class Idempotency:
    """A request's Idempotency-Key, and how the caller words an outcome as its answer."""

    key: str
    answer: Callable[[TradeView | TradeRejectedError], FirstAnswer]


async def book_trade(
    database: Database,
    cache: Cache,
    market: MarketData,
    user_id: int,
    order: TradeRequest,
    once: Idempotency | None = None,
) -> TradeView | FirstAnswer:
    """Book `order` for the user: the booked trade, or (a retry of an Idempotency-Key) the
    first answer. Raises TradeRejectedError when the portfolio cannot take the order (with a
    key, after writing the rejection down), NotFoundError without a portfolio."""
    request_digest = hashlib.sha256(order.model_dump_json().encode()).digest()
    async with repository.writer_lock(database), database.session() as session:
        portfolio = await repository.lock_portfolio(session, user_id)
        if portfolio is None:
            raise NotFoundError(f"user {user_id} has no portfolio")
        if once is not None:
            first = await repository.idempotency_record(session, user_id, once.key)
            if first is not None:
                if first.request_digest != request_digest:
                    raise IdempotencyKeyReusedError()
                return FirstAnswer(first.status_code, first.response)
        try:
            trade = await _execute(session, portfolio, order)
        except TradeRejectedError as rejection:
            if once is not None:
                # `_execute` checks before it changes anything: the record is all this
                # transaction writes.
                answer = once.answer(rejection)
                repository.record_answer(
                    session, user_id, once.key, request_digest, answer.status_code, answer.body
                )
                await session.commit()
            raise
        booked = TradeView(
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
        if once is not None:
            answer = once.answer(booked)
            repository.record_answer(
                session, user_id, once.key, request_digest, answer.status_code, answer.body
            )
        await session.commit()
    await invalidate_portfolio(cache, user_id, market.price_version)
    return booked


async def _execute(session: AsyncSession, portfolio: Portfolio, order: TradeRequest) -> Trade:
    instrument, holding = await repository.instrument_and_holding(session, portfolio, order.symbol)
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
                holding = repository.open_holding(session, portfolio, instrument)
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
    return await repository.add_trade(
        session,
        Trade(
            portfolio_id=portfolio.id,
            instrument_id=instrument.id,
            side=order.side,
            quantity=quantity,
            price=price,
            fees=fees,
            notional=notional,
            realized_pnl=realized,
            executed_at=datetime.now(UTC),
        ),
    )
