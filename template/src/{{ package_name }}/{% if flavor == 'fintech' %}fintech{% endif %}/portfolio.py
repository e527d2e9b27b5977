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

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ..cache import Cache
from ..db import Database
from ..deps import settings_of
from ..ratelimit import rate_limit
from ..resources import registry
from ..settings import Settings
from .auth import OwnUserId, caller_key
from .market import market_data_of
from .valuation import Valuation, value_portfolio

router = APIRouter(prefix="/api/users", tags=["portfolios"])


class PortfolioView(Valuation):
    price_version: int
    as_of: datetime


def cache_key(user_id: int, price_version: int) -> str:
    return f"portfolio:{user_id}:{price_version}"


async def invalidate_portfolio(cache: Cache, user_id: int, price_version: int) -> None:
    await cache.invalidate(cache_key(user_id, price_version), cache_key(user_id, price_version - 1))


async def load_portfolio(session: AsyncSession, user_id: int, price_version: int) -> PortfolioView:
    valuation = await value_portfolio(session, user_id)
    return PortfolioView(**dict(valuation), price_version=price_version, as_of=datetime.now(UTC))


async def read_portfolio_json(
    database: Database, cache: Cache, settings: Settings, price_version: int, user_id: int
) -> bytes:
    """The user's portfolio at `price_version` as JSON: the cached bytes as they are (a warm
    read parses and serializes nothing), or valued and cached."""

    async def load() -> PortfolioView:
        async with database.session() as session:
            return await load_portfolio(session, user_id, price_version)

    return await cache.get_or_load_json(
        cache_key(user_id, price_version),
        load,
        PortfolioView,
        ttl=settings.portfolio_cache_ttl,
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
    response_model=PortfolioView,
)
async def get_portfolio(user_id: OwnUserId, request: Request) -> Response:
    # By type from the registry, not dependencies: the flavor's hottest authenticated read.
    # The body goes out as the cache holds it; `response_model` documents its shape.
    resources = registry(request)
    body = await read_portfolio_json(
        resources.get(Database),
        resources.get(Cache),
        settings_of(request),
        market_data_of(request).price_version,
        user_id,
    )
    return Response(body, media_type="application/json")
