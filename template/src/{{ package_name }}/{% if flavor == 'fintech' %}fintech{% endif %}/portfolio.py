"""GET /api/users/{user_id}/portfolio: holdings, positions and market value, cache-aside.

The entry is keyed by user and price version ("portfolio:<user>:<version>"): a price update
makes every process read fresh values, and a trade drops the user's entries for the current
and the previous version (`invalidate_portfolio`): exact keys, one round trip, where a prefix
scan would walk the whole keyspace on every trade. A process that has not yet seen the latest
price version notices it within MARKET_DATA_REFRESH_SECONDS; PORTFOLIO_CACHE_TTL bounds
anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..cache import Cache, cache_of
from ..db import Database
from ..deps import settings_of
from ..errors import NotFoundError
from ..ratelimit import rate_limit
from ..resources import registry
from .auth import OwnUserId, caller_key
from .market import market_data_of
from .models import Holding, Instrument, Portfolio
from .money import ZERO, DecimalString, round_money

router = APIRouter(prefix="/api/users", tags=["portfolios"])


class Position(BaseModel):
    symbol: str
    name: str
    currency: str
    quantity: DecimalString
    price: DecimalString
    market_value: DecimalString
    cost_basis: DecimalString
    unrealized_pnl: DecimalString


class PortfolioView(BaseModel):
    user_id: int
    currency: str
    cash: DecimalString
    positions_value: DecimalString
    total_value: DecimalString
    positions: list[Position]
    price_version: int
    as_of: datetime


def cache_key(user_id: int, price_version: int) -> str:
    return f"portfolio:{user_id}:{price_version}"


async def invalidate_portfolio(cache: Cache, user_id: int, price_version: int) -> None:
    await cache.invalidate(cache_key(user_id, price_version), cache_key(user_id, price_version - 1))


async def load_portfolio(session: AsyncSession, user_id: int, price_version: int) -> PortfolioView:
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
    return PortfolioView(
        user_id=user_id,
        currency=portfolio.currency,
        cash=portfolio.cash,
        positions_value=positions_value,
        total_value=portfolio.cash + positions_value,
        positions=positions,
        price_version=price_version,
        as_of=datetime.now(UTC),
    )


@router.get(
    "/{user_id}/portfolio",
    summary="A user's portfolio",
    description="Cash, positions and market value (amounts are strings). Served from the cache "
    "for PORTFOLIO_CACHE_TTL seconds; a trade by the user or a price update refreshes it. "
    "Only the owner may read it (403 otherwise).",
    responses={
        401: {"description": "Missing or invalid bearer token"},
        403: {"description": "Another user's portfolio"},
        404: {"description": "No such portfolio"},
    },
    dependencies=[rate_limit("portfolio", per=caller_key)],
)
async def get_portfolio(user_id: OwnUserId, request: Request) -> PortfolioView:
    database = registry(request).get(Database)
    settings = settings_of(request)
    version = market_data_of(request).price_version

    async def load() -> PortfolioView:
        async with database.session() as session:
            return await load_portfolio(session, user_id, version)

    return await cache_of(request).get_or_load(
        cache_key(user_id, version),
        load,
        PortfolioView,
        ttl=settings.portfolio_cache_ttl,
    )
