"""Market data: every instrument with its price, as one large JSON document.

The document is serialized and gzip-compressed once per price update, never per request:
measured here, per-request gzip (level 9) of a 50 KB body cut throughput 16x and per-request
serialization of a 50 KB dict 43x. Requests pick one of two prepared byte strings and answer
`304 Not Modified` when the client's `If-None-Match` names the current version.

Prices change through `update_prices`, which bumps `market_state.price_version` in the same
transaction. Every API process polls that one-row table every MARKET_DATA_REFRESH_SECONDS (a
primary-key read) and rebuilds its copy when the version moved, so all processes serve new
prices within that bound; the process that made the update rebuilds at once.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database
from ..deps import settings_of
from ..errors import AppError
from ..resources import Degraded, FailureLog, registry, stop_task
from ..routing import PUBLIC
from ..settings import Settings
from .models import Instrument, MarketState
from .money import as_string

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/market-data", tags=["market data"])


class UnknownInstrumentError(AppError):
    status_code = 422
    code = "unknown_instrument"


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    identity: bytes
    gzipped: bytes
    identity_etag: str
    gzip_etag: str


def _decimal_as_string(value: Any) -> str:
    if isinstance(value, Decimal):
        return as_string(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def build_snapshot(version: int, rows: list[Any], level: int) -> Snapshot:
    """Serialize and compress once (CPU-bound: run it in a thread)."""
    document = {
        "price_version": version,
        "count": len(rows),
        "instruments": [
            {
                "symbol": row.symbol,
                "name": row.name,
                "currency": row.currency,
                "price": row.price,
                "price_updated_at": row.price_updated_at,
            }
            for row in rows
        ],
    }
    identity = orjson.dumps(document, default=_decimal_as_string)
    # mtime=0: the same prices give the same bytes, so every process sends the same ETag.
    gzipped = gzip.compress(identity, compresslevel=level, mtime=0)
    tag = hashlib.blake2b(identity, digest_size=12).hexdigest()
    # Strong ETags differ per representation (RFC 9110 8.8.3): the gzip body is other bytes.
    return Snapshot(version, identity, gzipped, f'"{tag}"', f'"{tag}-gzip"')


class MarketData:
    """The prepared market-data document; a lifespan resource with a polling task."""

    name = "market_data"

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._snapshot: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._rebuild = asyncio.Lock()
        self._checked_at = 0.0  # monotonic time of the last successful version check
        self._failures = FailureLog(logger, "market data refresh failed; serving the last prices")

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("market data is not open")
        return self._snapshot

    @property
    def price_version(self) -> int:
        return self.snapshot.version

    async def open(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            # Not migrated yet, or the database is down: serve an empty document until the
            # poller's next successful refresh, rather than refuse to start.
            self._failures.failed(exc)
            self._snapshot = await asyncio.to_thread(
                build_snapshot, -1, [], self._settings.market_data_gzip_level
            )
        self._task = asyncio.create_task(self._poll(), name="market-data-poll")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def check(self) -> None:
        """Readiness: degraded (still ready) while prices cannot be read; the last ones serve."""
        if self.snapshot.version < 0:
            raise Degraded("no prices loaded yet (database not migrated or unreachable)")
        self._failures.check()
        age = time.monotonic() - self._checked_at
        if age > max(10 * self._settings.market_data_refresh_seconds, 30.0):
            raise Degraded(f"prices last checked {age:.0f} s ago; serving the last ones")

    async def refresh(self) -> bool:
        """Rebuild when the stored price version moved; True when it did."""
        async with self._database.sessions() as session:
            version = await current_version(session)
            self._checked_at = time.monotonic()
            if self._snapshot is not None and self._snapshot.version == version:
                return False
            async with self._rebuild:
                if self._snapshot is not None and self._snapshot.version >= version:
                    return False
                rows = (
                    await session.execute(
                        select(
                            Instrument.symbol,
                            Instrument.name,
                            Instrument.currency,
                            Instrument.price,
                            Instrument.price_updated_at,
                        ).order_by(Instrument.symbol)
                    )
                ).all()
                snapshot = await asyncio.to_thread(
                    build_snapshot, version, list(rows), self._settings.market_data_gzip_level
                )
                self._snapshot = snapshot
        logger.info(
            "market data rebuilt",
            extra={
                "price_version": version,
                "instruments": len(rows),
                "bytes": len(snapshot.identity),
            },
        )
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.market_data_refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the database is down: keep serving the last prices
                self._failures.failed(exc)
            else:
                self._failures.succeeded()


async def current_version(session: AsyncSession) -> int:
    version = await session.scalar(select(MarketState.price_version).where(MarketState.id == 1))
    return int(version or 0)


async def update_prices(session: AsyncSession, prices: Mapping[str, Decimal]) -> int:
    """Set instruments' prices and bump the price version, in the caller's transaction.

    Returns the new version; the caller commits. Unknown symbols raise and change nothing.
    """
    now = datetime.now(UTC)
    for symbol, new_price in prices.items():
        if new_price <= 0:
            raise ValueError(f"price of {symbol} must be positive")
        done = await session.execute(
            update(Instrument)
            .where(Instrument.symbol == symbol)
            .values(price=new_price, price_updated_at=now)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise UnknownInstrumentError(f"unknown instrument '{symbol}'")
    bumped = await session.execute(
        update(MarketState)
        .where(MarketState.id == 1)
        .values(price_version=MarketState.price_version + 1)
        .returning(MarketState.price_version)
    )
    return int(bumped.scalar_one())


def market_data_of(request: Request) -> MarketData:
    return registry(request).get(MarketData)


def _accepts_gzip(request: Request) -> bool:
    accept = request.headers.get("accept-encoding", "")
    for part in accept.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in {"gzip", "*"}:
            return params.replace(" ", "").lower() not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


def _matches(if_none_match: str, snapshot: Snapshot) -> bool:
    if if_none_match.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): a proxy may have weakened the tag.
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return snapshot.identity_etag in tags or snapshot.gzip_etag in tags


@router.get(
    "",
    openapi_extra=PUBLIC,
    summary="Prices of every instrument",
    description="One JSON document with every instrument and its price (prices are strings). "
    "Gzip-compressed for clients that accept it (above the minimum size), with an ETag: send "
    "it back in If-None-Match to get 304 Not Modified while prices are unchanged.",
    responses={304: {"description": "Prices unchanged since the ETag sent"}},
)
async def get_market_data(request: Request) -> Response:
    snapshot = market_data_of(request).snapshot
    compressed = (
        _accepts_gzip(request) and len(snapshot.identity) >= settings_of(request).gzip_minimum_size
    )
    headers = {
        "ETag": snapshot.gzip_etag if compressed else snapshot.identity_etag,
        "Vary": "Accept-Encoding",
        "Cache-Control": "no-cache",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, snapshot):
        return Response(status_code=304, headers=headers)
    if compressed:
        # Compressed once per price change; the compression layer lets this path by
        # (`precompressed_paths` in components.py).
        headers["Content-Encoding"] = "gzip"
        return Response(snapshot.gzipped, media_type="application/json", headers=headers)
    return Response(snapshot.identity, media_type="application/json", headers=headers)
