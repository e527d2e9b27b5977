"""The database: one async engine per process, one session per request, Alembic migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from alembic import command
from alembic.config import Config
from fastapi import Depends, Request
from sqlalchemy import MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from .errors import DatabaseUnavailableError
from .settings import Settings

# What a driver raises when the server cannot be reached. asyncpg raises plain OSError and
# TimeoutError while connecting; SQLAlchemy wraps what happens on an open connection.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    # Stable constraint names, so Alembic can drop and alter them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database
    embedded = url.get_backend_name() == "sqlite"
    # asyncpg: seconds to connect. sqlite3: seconds a writer waits for the write lock.
    timeout = settings.db_pool_timeout if embedded else settings.db_connect_timeout
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        # A local file does not go stale; a server connection may be cut by a proxy or failover.
        pool_recycle=-1 if embedded else settings.db_pool_recycle,
        pool_timeout=settings.db_pool_timeout,
        echo=settings.db_echo,
        connect_args={"timeout": timeout},
    )
    if embedded:
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLite allows one writer: the busy timeout above makes concurrent writers wait instead of
    # failing, and WAL lets readers proceed while one writes.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class Database:
    """The engine and session factory as a lifespan resource."""

    name = "database"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.retry_after = settings.db_retry_after_seconds
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database is not open")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("the database is not open")
        return self._sessions

    async def open(self) -> None:
        engine = create_engine(self._settings)
        try:
            # Fail the start now, with a clear error, rather than on the first request.
            async with asyncio.timeout(self._settings.db_connect_timeout):
                await self._ping(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessions = None

    async def check(self) -> None:
        await self._ping(self.engine)

    @staticmethod
    async def _ping(engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response is done."""
    database: Database = request.app.state.database
    async with database.sessions() as session:
        try:
            yield session
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailableError(database.retry_after) from exc


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def migrate(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database schema to `revision` (synchronous: call it outside the event loop)."""
    if settings.database_is_embedded:
        Path(settings.database.database or ".").parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = settings.database
    command.upgrade(config, revision)
