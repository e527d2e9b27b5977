"""What a portfolio is worth at current prices, computed in one place: the portfolio endpoint
serves it (cached) and the report job stores it, so the two never disagree on a figure."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from .models import Holding, Instrument, Portfolio, Trade
from .money import ZERO, DecimalString, round_money


class Position(BaseModel):
    symbol: str
    name: str
    currency: str
    quantity: DecimalString
    price: DecimalString
    market_value: DecimalString
    cost_basis: DecimalString
    unrealized_pnl: DecimalString


class Valuation(BaseModel):
    """Cash and every open position at current prices, market values rounded as money."""

    user_id: int
    currency: str
    cash: DecimalString
    positions_value: DecimalString
    total_value: DecimalString
    positions: list[Position]

    @property
    def unrealized_pnl(self) -> Decimal:
        return sum((position.unrealized_pnl for position in self.positions), ZERO)


async def value_portfolio(session: AsyncSession, user_id: int) -> Valuation:
    """The user's portfolio at the prices in the database; 404 when the user has none."""
    portfolio = await session.scalar(select(Portfolio).where(Portfolio.user_id == user_id))
    if portfolio is None:
        raise NotFoundError(f"user {user_id} has no portfolio")
    rows = await session.execute(
        select(Holding, Instrument)
        .join(Instrument, Instrument.id == Holding.instrument_id)
        .where(Holding.portfolio_id == portfolio.id)
        .order_by(Instrument.symbol)
    )
    positions = []
    for holding, instrument in rows:
        # Compared here, not in SQL: SQLite stores amounts as text, where "0.0000" != "0".
        if holding.quantity == ZERO:
            continue
        value = round_money(holding.quantity * instrument.price)
        positions.append(
            Position(
                symbol=instrument.symbol,
                name=instrument.name,
                currency=instrument.currency,
                quantity=holding.quantity,
                price=instrument.price,
                market_value=value,
                cost_basis=holding.cost_basis,
                unrealized_pnl=value - holding.cost_basis,
            )
        )
    positions_value = sum((position.market_value for position in positions), ZERO)
    return Valuation(
        user_id=user_id,
        currency=portfolio.currency,
        cash=portfolio.cash,
        positions_value=positions_value,
        total_value=portfolio.cash + positions_value,
        positions=positions,
    )


async def realized_pnl(session: AsyncSession, user_id: int) -> Decimal:
    """Profit and loss the user's sells have realised, summed in Python (SQLite keeps amounts
    as text, so SUM there would be a float)."""
    amounts = await session.scalars(
        select(Trade.realized_pnl)
        .join(Portfolio, Portfolio.id == Trade.portfolio_id)
        .where(Portfolio.user_id == user_id)
    )
    return sum(amounts, ZERO)
