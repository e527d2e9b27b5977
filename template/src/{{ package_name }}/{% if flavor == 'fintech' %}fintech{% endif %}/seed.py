"""`seed --users N --instruments M`: realistic, deterministic demo data, inserted in bulk.

Rows go in through SQLAlchemy Core `insert()` with lists of dicts in chunks (one
multi-row INSERT per chunk on both databases), not through the ORM unit of work. The
same `--seed` gives the same users, instruments, prices and holdings; API tokens are random
every time (only their digests are stored) and can be written to a file for load tests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db import Base, create_engine, migrate
from ..settings import Settings
from .auth import digest, new_token
from .models import (
    ApiToken,
    Holding,
    Instrument,
    MarketState,
    Portfolio,
    Trade,
    User,
)
from .money import round_money

CHUNK = 2000
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman")
WORDS = ("Global", "Pacific", "Northern", "United", "Atlas", "Summit", "Harbor", "Quantum")
SECTORS = ("Energy", "Holdings", "Systems", "Pharma", "Logistics", "Bank", "Foods", "Mining")
ASSET_CLASSES = (("equity", 70), ("etf", 20), ("bond", 10))
CURRENCIES = (("USD", 60), ("EUR", 25), ("GBP", 15))


@dataclass
class SeedResult:
    users: int
    instruments: int
    holdings: int
    seconds: float
    tokens: dict[int, str] = field(default_factory=dict)


def _symbol(number: int) -> str:
    """A unique ticker-like symbol for each positive number: A, B, ..., Z, AA, AB, ..."""
    letters = ""
    while number > 0:
        number, digit = divmod(number - 1, 26)
        letters = chr(ord("A") + digit) + letters
    return letters


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def _insert(connection: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows):
        await connection.execute(insert(table), chunk)


async def _next_id(connection: AsyncConnection, table: Table) -> int:
    return int(await connection.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0) + 1


async def seed(
    engine: AsyncEngine,
    *,
    users: int,
    instruments: int,
    rng_seed: int = 42,
    token_ttl: timedelta = timedelta(days=90),
) -> SeedResult:
    """Add `users` users (with portfolios, holdings, opening trades and one token each) and
    `instruments` instruments; existing rows are kept."""
    started = time.perf_counter()
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    tokens: dict[int, str] = {}
    async with engine.begin() as connection:
        first_instrument = await _next_id(connection, _table(Instrument))
        instrument_rows = [
            {
                "id": number,
                "symbol": _symbol(number),
                "name": f"{rng.choice(WORDS)} {rng.choice(SECTORS)} {_symbol(number)}",
                "asset_class": _weighted(rng, ASSET_CLASSES),
                "currency": _weighted(rng, CURRENCIES),
                "price": Decimal(rng.randint(100, 500_000)) / 100,
                "price_updated_at": now,
            }
            for number in range(first_instrument, first_instrument + instruments)
        ]
        await _insert(connection, _table(Instrument), instrument_rows)
        # Portfolios are in USD and hold USD instruments (there is no FX conversion).
        prices = {
            row.id: row.price
            for row in await connection.execute(
                select(Instrument.id, Instrument.price).where(Instrument.currency == "USD")
            )
        }
        instrument_ids = list(prices)

        first_user = await _next_id(connection, _table(User))
        first_portfolio = await _next_id(connection, _table(Portfolio))
        user_rows, portfolio_rows, token_rows = [], [], []
        holding_rows: list[dict[str, Any]] = []
        trade_rows: list[dict[str, Any]] = []
        for offset in range(users):
            user_id, portfolio_id = first_user + offset, first_portfolio + offset
            user_rows.append(
                {
                    "id": user_id,
                    "email": f"user{user_id}@example.com",
                    "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    "created_at": now,
                }
            )
            portfolio_rows.append(
                {
                    "id": portfolio_id,
                    "user_id": user_id,
                    "currency": "USD",
                    "cash": Decimal(rng.randint(100_000, 100_000_000)) / 100,
                }
            )
            token = new_token()
            tokens[user_id] = token
            token_rows.append(
                {
                    "digest": digest(token),
                    "user_id": user_id,
                    "label": "seed",
                    "created_at": now,
                    "expires_at": now + token_ttl,
                }
            )
            count = min(len(instrument_ids), rng.randint(3, 8))
            for instrument_id in rng.sample(instrument_ids, count):
                # Whole shares mostly; some fractional ones with many decimal places.
                if rng.random() < 0.8:
                    quantity = Decimal(rng.randint(1, 500))
                else:
                    quantity = Decimal(rng.randint(1, 10**12)) / 10**8
                paid = prices[instrument_id] * Decimal(rng.randint(70, 130)) / 100
                cost = round_money(quantity * paid)
                holding_rows.append(
                    {
                        "portfolio_id": portfolio_id,
                        "instrument_id": instrument_id,
                        "quantity": quantity,
                        "cost_basis": cost,
                    }
                )
                trade_rows.append(
                    {
                        "portfolio_id": portfolio_id,
                        "instrument_id": instrument_id,
                        "side": "buy",
                        "quantity": quantity,
                        "price": paid.quantize(Decimal("0.00000001")),
                        "fees": Decimal(0),
                        "notional": cost,
                        "realized_pnl": Decimal(0),
                        "executed_at": now - timedelta(days=rng.randint(1, 900)),
                    }
                )
        await _insert(connection, _table(User), user_rows)
        await _insert(connection, _table(ApiToken), token_rows)
        await _insert(connection, _table(Portfolio), portfolio_rows)
        await _insert(connection, _table(Holding), holding_rows)
        await _insert(connection, _table(Trade), trade_rows)
        if instruments:
            await connection.execute(
                update(MarketState)
                .where(MarketState.id == 1)
                .values(price_version=MarketState.price_version + 1)
            )
        if connection.dialect.name == "postgresql":
            # Explicit ids were inserted: move the sequences past them.
            for table in ("users", "instruments", "portfolios"):
                await connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                    )
                )
    return SeedResult(
        users=users,
        instruments=instruments,
        holdings=len(holding_rows),
        seconds=time.perf_counter() - started,
        tokens=tokens,
    )


async def _run(args: argparse.Namespace, settings: Settings) -> SeedResult:
    engine = create_engine(settings)
    try:
        return await seed(
            engine,
            users=args.users,
            instruments=args.instruments,
            rng_seed=args.seed,
            token_ttl=timedelta(days=settings.auth_token_ttl_days),
        )
    finally:
        await engine.dispose()


def run_seed(args: argparse.Namespace, settings: Settings) -> int:
    if settings.should_auto_migrate:
        migrate(settings)
    result = asyncio.run(_run(args, settings))
    sys.stdout.write(
        f"seeded {result.users} users, {result.instruments} instruments and"
        f" {result.holdings} holdings in {result.seconds:.2f} s\n"
    )
    if args.tokens_file is not None:
        lines = "".join(f"{user_id}\t{token}\n" for user_id, token in result.tokens.items())
        args.tokens_file.write_text(lines, encoding="utf-8")
        args.tokens_file.chmod(0o600)
        sys.stdout.write(f"API tokens (user id, token) written to {args.tokens_file}\n")
    elif result.tokens:
        user_id, token = next(iter(result.tokens.items()))
        sys.stdout.write(f"demo token for user {user_id}: {token}\n")
    if result.tokens:
        sys.stdout.write(
            f"tokens expire in {settings.auth_token_ttl_days} days; a user issues, lists and "
            "revokes their own with POST, GET and DELETE /api/tokens\n"
        )
    return 0


def add_seed_command(commands: Any) -> None:
    """Register `seed` on the CLI's subcommands."""
    parser = commands.add_parser("seed", help="fill the database with demo data (bulk inserts)")
    parser.add_argument("--users", type=int, default=100, help="users to add (default: 100)")
    parser.add_argument(
        "--instruments", type=int, default=500, help="instruments to add (default: 500)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--tokens-file", type=Path, help="write every new user's API token to this file"
    )
    parser.set_defaults(handler=run_seed)
