"""The fintech flavor as the core plugs it in: its resources, routers, auth and commands."""

from __future__ import annotations

from fastapi import APIRouter

from ..flavor import Background, Flavor, Foundation
from ..resources import Service
from . import market, portfolio, static_data
from .auth import caller_key, job_owner
from .mail import SmtpServer, mail_server
from .reports.delivery import OutboxDelivery
from .reports.router import router as reports_router
from .reports.service import REPORT_JOB_KIND
from .seed import add_seed_command
from .tokens.router import router as tokens_router
from .trades.router import router as trades_router


def fintech_resources(foundation: Foundation) -> list[Service]:
    return [
        market.MarketData(foundation.settings, foundation.database),
        mail_server(foundation.settings),
    ]


def fintech_background(background: Background) -> list[Service]:
    """The report e-mails' sender, when a mail server is configured (without one they wait
    in the outbox, and the API's start-up log says so)."""
    server = SmtpServer.from_settings(background.settings)
    if server is None:
        return []
    return [OutboxDelivery(background.settings, background.database, background.metrics, server)]


def fintech_routers() -> list[APIRouter]:
    # The market-data document is the hottest read: its route is matched first.
    return [
        market.router,
        portfolio.router,
        trades_router,
        reports_router,
        static_data.router,
        tokens_router,
    ]


FLAVOR = Flavor(
    name="fintech",
    routers=fintech_routers,
    job_owner=job_owner,
    caller_key=caller_key,
    resources=fintech_resources,
    background=fintech_background,
    jobs=(REPORT_JOB_KIND,),
    # Market data is gzipped once per price change (market.py), not per request.
    precompressed_paths=(market.router.prefix,),
    add_commands=add_seed_command,
)
