"""The fintech domain: portfolios, trades, reports, market and reference data.

Each module holds one feature's router and service side by side; `models.py` holds the
tables. `components.py` adds `fintech_resources` to the lifespan and `fintech_routers` to the
app.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..db import Database
from ..resources import Resource
from ..settings import Settings
from . import market, portfolio, reports, static_data, tokens, trades


def fintech_resources(settings: Settings, database: Database) -> list[Resource]:
    return [market.MarketData(settings, database)]


def fintech_routers() -> list[APIRouter]:
    # The market-data document is the hottest read: its route is matched first.
    return [
        market.router,
        portfolio.router,
        trades.router,
        reports.router,
        static_data.router,
        tokens.router,
    ]
