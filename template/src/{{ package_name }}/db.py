"""The database: one async engine per process, one session per request, Alembic migrations."""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy import MetaData, Table, bindparam, event, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_only

from . import COMMAND
from .errors import (
    DatabaseUnavailableError,
    SchemaNotMigratedError,
    ServiceUnavailableError,
    describe_error,
    is_schema_error,
    is_unavailable,
)
from .observability import STATEMENT_KINDS, Metrics
from .resources import registry
from .settings import Settings
from .tracing import instrument_engine

if TYPE_CHECKING:
    import aiosqlite
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger(__name__)

# What a driver raises when the server cannot be reached. asyncpg raises plain OSError and
# TimeoutError while connecting; SQLAlchemy wraps what happens on an open connection. Not all:
# a server error such as "the database system is starting up" is a plain DBAPIError, so to
# tell an outage from a bug use `is_unavailable` (errors.py), or `Database.session()`.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The branch label of the template's own revisions, and that of the project's revisions:
#: two branches, so a template release that adds a revision never makes two heads with yours
#: (migrations/env.py puts every new revision on APP_BRANCH).
TEMPLATE_BRANCH = "template"
APP_BRANCH = "app"


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


def load_models() -> list[str]:
    """Import every module named `models` in this package, so `Base.metadata` holds every table.

    Alembic's autogenerate compares the database with `Base.metadata`: a table whose module was
    never imported looks dropped, and the revision it writes drops it. Found by name rather than
    listed by hand, so a feature's `models.py` (or `models/` package) counts the day it is added.
    """
    root = Path(__file__).parent
    found = {
        path.relative_to(root).with_suffix("").parts
        for path in root.rglob("models.py")
        if "migrations" not in path.relative_to(root).parts
    } | {
        path.parent.relative_to(root).parts
        for path in root.rglob("models/__init__.py")
        if "migrations" not in path.relative_to(root).parts
    }
    modules = sorted(".".join((__package__ or root.name, *parts)) for parts in found)
    for module in modules:
        importlib.import_module(module)
    return modules


@dataclass(frozen=True, slots=True)
class Revisions:
    """What the code's migrations know: the heads to upgrade to, and each revision's ancestry."""

    heads: frozenset[str]
    #: Every revision the code knows -> itself and every revision it needs applied first
    #: (down revisions and `depends_on`, transitively).
    lineage: dict[str, frozenset[str]]

    def applied_with(self, applied: frozenset[str]) -> frozenset[str]:
        """Every revision in effect when `applied` is what Alembic's version table holds.

        The table keeps only the tips: a revision that another applied one descends from or
        depends on (the template's head, once your branch depends on it) is not listed.
        """
        return frozenset().union(*(self.lineage.get(revision, {revision}) for revision in applied))


@functools.cache
def code_revisions(directory: Path = MIGRATIONS_DIR) -> Revisions:
    config = Config()
    config.set_main_option("script_location", str(directory))
    scripts = ScriptDirectory.from_config(config)
    needs = {
        script.revision: {
            needed.revision
            for name in (*_names(script.down_revision), *_names(script.dependencies))
            if (needed := scripts.get_revision(name)) is not None
        }
        for script in scripts.walk_revisions()
    }
    lineage: dict[str, frozenset[str]] = {}

    def walk(revision: str) -> frozenset[str]:
        if revision not in lineage:
            lineage[revision] = frozenset({revision}).union(*map(walk, needs[revision]))
        return lineage[revision]

    for revision in needs:
        walk(revision)
    return Revisions(heads=frozenset(scripts.get_heads()), lineage=lineage)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """The database's applied revisions against the code's heads."""

    applied: frozenset[str]
    code: Revisions

    @property
    def current(self) -> bool:
        # A revision the code does not know is a newer release's (applied before a rolling
        # deploy replaces this process): its schema is meant to serve this code too.
        if self.applied - self.code.lineage.keys():
            return True
        return self.code.heads <= self.code.applied_with(self.applied)

    def describe(self) -> str:
        at = ", ".join(sorted(self.applied)) or "no revision (not migrated)"
        needs = ", ".join(sorted(self.code.heads - self.code.applied_with(self.applied)))
        return f"database schema at {at}, code needs {needs}: run `{COMMAND} migrate`"


async def _applied_revisions(connection: AsyncConnection) -> frozenset[str]:
    """The revisions in Alembic's version table; none when it does not exist yet."""
    try:
        rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
    except sa_exc.DBAPIError as exc:
        if is_schema_error(exc):
            return frozenset()
        raise
    return frozenset(row[0] for row in rows)


class _MeasuredQueuePool(AsyncAdaptedQueuePool):
    """The default pool of an async engine, reporting its usage and each checkout's wait.

    SQLAlchemy's pool events fire once a connection is checked out, not when the wait for
    one starts, and before a checked-in one is counted as returned; `_do_get` and
    `_do_return_conn` are the documented steps a pool subclass implements, so the figures
    are taken around them.
    """

    metrics: Metrics | None = None

    def _do_get(self) -> ConnectionPoolEntry:
        if self.metrics is None:
            return super()._do_get()
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            self.metrics.db_pool_wait.observe(time.perf_counter() - started)
            self._report(self.metrics)

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        if self.metrics is not None:
            self._report(self.metrics)

    def _report(self, metrics: Metrics) -> None:
        metrics.db_pool_checked_out.set(self.checkedout())
        metrics.db_pool_overflow.set(max(self.overflow(), 0))

    def recreate(self) -> _MeasuredQueuePool:
        # `dispose` swaps the pool for a new one, which reports to the same metrics.
        pool = cast(_MeasuredQueuePool, super().recreate())
        pool.metrics = self.metrics
        return pool


# SQLAlchemy names a pool's logger after its class, and quiets only its own ("sqlalchemy.*")
# below WARNING: this one too, or every dispose and recreate is logged at INFO.
logging.getLogger(f"{__name__}.{_MeasuredQueuePool.__name__}").setLevel(logging.WARNING)


def measure(engine: AsyncEngine, metrics: Metrics) -> None:
    """Record each statement's time by kind, and the pool's usage, in `metrics`.

    A statement is timed around the dialect's execute step, the driver's call: the database's
    work and the round trip, not the ORM's, failures included. Wrapped on this engine's own
    dialect rather than timed by SQLAlchemy's cursor events: with any engine event listened
    for, every statement pays the connection's event dispatch (measured on SQLite: ~110k
    instructions a statement, where this wrapper costs ~13k).
    """
    sync_engine = engine.sync_engine
    by_kind = {kind: metrics.db_query.labels(kind) for kind in (*STATEMENT_KINDS, "other")}
    other = by_kind["other"]

    def timed(execute: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(execute)
        def timed_execute(cursor: Any, statement: str, *args: Any) -> None:
            started = time.perf_counter()
            try:
                execute(cursor, statement, *args)
            finally:
                kind = by_kind.get(statement.lstrip()[:6].lower(), other)
                kind.observe(time.perf_counter() - started)

        return timed_execute

    dialect = sync_engine.dialect
    for step in ("do_execute", "do_executemany", "do_execute_no_params"):
        setattr(dialect, step, timed(getattr(dialect, step)))

    pool = sync_engine.pool
    if isinstance(pool, _MeasuredQueuePool):
        pool.metrics = metrics
        metrics.db_pool_size.set(pool.size())


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database
    embedded = url.get_backend_name() == "sqlite"
    # asyncpg: seconds to connect. sqlite3: seconds a writer waits for the write lock.
    timeout = settings.db_pool_timeout if embedded else settings.db_connect_timeout
    connect_args: dict[str, Any] = {"timeout": timeout}
    if not embedded:
        # The server cancels a statement that runs too long or waits too long for a lock (one
        # user's burst of trades queued on their portfolio's row must not hold the pool); the
        # client stops waiting for a server that hangs (accepts and never answers).
        connect_args["command_timeout"] = settings.db_statement_timeout
        connect_args["server_settings"] = {
            "statement_timeout": f"{round(settings.db_statement_timeout * 1000)}ms",
            "lock_timeout": f"{round(settings.db_lock_timeout * 1000)}ms",
        }
    engine = create_async_engine(
        url,
        poolclass=_MeasuredQueuePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        # A local file does not go stale; a server connection may be cut by a proxy or failover.
        pool_recycle=-1 if embedded else settings.db_pool_recycle,
        pool_timeout=settings.db_pool_timeout,
        echo=settings.db_echo,
        connect_args=connect_args,
    )
    if embedded:
        _configure_sqlite(engine)
    elif settings.db_pool_pre_ping:
        _ping_in_one_round_trip(engine)
    return engine


def _ping_in_one_round_trip(engine: AsyncEngine) -> None:
    """The pool's check of a PostgreSQL connection before handing it out, in one round trip.

    SQLAlchemy's asyncpg dialect runs the empty query `;` inside a transaction of its own:
    BEGIN, `;`, ROLLBACK, three round trips on every checkout (so that PgBouncer's transaction
    mode keeps its prepared statement on one server connection). `SELECT 1` on the simple
    protocol, as asyncpg's `execute` without arguments sends it, is one round trip and
    prepares nothing, so it is just as safe behind PgBouncer. It fails as that ping fails, and
    its error goes through the same translation, so the pool still replaces a dead connection.
    """
    dialect = engine.sync_engine.dialect

    def do_ping(dbapi_connection: Any) -> bool:
        try:
            await_only(dialect.get_driver_connection(dbapi_connection).execute("SELECT 1"))
        except Exception as error:
            dbapi_connection._handle_exception(error)  # what the dialect's own ping does
        return True

    dialect.do_ping = do_ping  # type: ignore[method-assign]


def _configure_sqlite(engine: AsyncEngine) -> None:
    # First of all connect listeners, the dialect's own first-connect queries included: a
    # cancellation while any of them runs closes the connection, and that close needs it.
    event.listen(engine.sync_engine, "connect", _stop_once, insert=True)

    # SQLite allows one writer: the busy timeout above makes concurrent writers wait instead of
    # failing, and WAL lets readers proceed while one writes.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _stop_once(dbapi_connection: Any, _record: Any) -> None:
    """Make a second `stop()` of an aiosqlite connection a no-op.

    aiosqlite (0.22) stops its worker thread once per `stop()` call and answers only the first:
    a second call returns a future nobody ever resolves, and `close()` awaits it. SQLAlchemy
    calls both when a task is cancelled while its connection is being closed (a request cut
    off mid-query, a shutdown): it closes gracefully in a shielded task and, on the second
    cancellation, force-stops the thread, so the graceful close then waits forever and so does
    the event loop at shutdown. The worker exits on the first stop, so later ones have nothing
    to wait for.
    """
    connection: aiosqlite.Connection = dbapi_connection.driver_connection
    stop = connection.stop
    stopped = False

    def once() -> asyncio.Future[Any] | None:
        nonlocal stopped
        if stopped:
            return None
        stopped = True
        return stop()

    connection.stop = once  # type: ignore[method-assign]


class Database:
    """The engine and session factory as a lifespan resource."""

    name = "database"

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self.retry_after = settings.db_retry_after_seconds
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.schema: SchemaState | None = None

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

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose database failures raise the 503 a client should get (`translate`).

        Use it wherever a request opens a session of its own (`get_session` does): code that
        opens `sessions()` directly lets an outage through as whatever the driver raised.
        """
        async with self.translating(), self.sessions() as session:
            yield session

    @asynccontextmanager
    async def translating(self) -> AsyncIterator[None]:
        """Raise the 503 for an outage or a missing schema inside the block; anything else as is."""
        try:
            yield
        except Exception as exc:
            if not (is_unavailable(exc) or is_schema_error(exc)):
                raise
            error = await self.translate(exc)
            # The cause goes to the log; the client learns what to do about it.
            logger.warning("%s: %s", error.code, describe_error(exc))
            raise error from exc

    async def open(self) -> None:
        engine = create_engine(self._settings)
        if self._metrics is not None:
            measure(engine, self._metrics)
        try:
            # Fail the start now, with a clear error, rather than on the first request.
            async with asyncio.timeout(self._settings.db_connect_timeout):
                await self._ping(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Start anyway: readiness stays 503 with the reason until `migrate` has run.
        schema = await self.refresh_schema()
        if not schema.current:
            logger.warning("database schema is not current", extra={"reason": schema.describe()})

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessions = None

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """A span per statement, when tracing is on (tracing.py)."""
        instrument_engine(self.engine, tracer_provider)

    async def check(self) -> None:
        """Readiness: the database answers and its schema is what this code needs."""
        schema = await self.refresh_schema()
        if not schema.current:
            raise SchemaNotMigratedError(schema.describe(), retry_after=self.retry_after)

    async def refresh_schema(self) -> SchemaState:
        code = await asyncio.to_thread(code_revisions)
        async with self.engine.connect() as connection:
            applied = await _applied_revisions(connection)
        self.schema = SchemaState(applied, code)
        return self.schema

    async def translate(self, exc: BaseException) -> ServiceUnavailableError:
        """The 503 a client gets for a database failure: a missing schema, or an outage."""
        if is_schema_error(exc):
            schema: SchemaState | None
            try:
                async with asyncio.timeout(self._settings.db_connect_timeout):
                    schema = await self.refresh_schema()
            except Exception:
                schema = self.schema
            detail = schema.describe() if schema is not None else describe_error(exc)
            return SchemaNotMigratedError(detail, retry_after=self.retry_after)
        return DatabaseUnavailableError(self.retry_after)

    @staticmethod
    async def _ping(engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response is done."""
    async with registry(request).get(Database).session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


# --- bulk writes ------------------------------------------------------------------------------
# Rows per SQLite executemany (one statement per row, whatever the count).
SQLITE_CHUNK = 2000


def insert_rows(
    dialect: str, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[postgresql.Insert | sqlite.Insert, Any]]:
    """Statements that insert `rows` (mappings with the same keys, at least one), each with
    the parameters to execute it with; add ON CONFLICT or RETURNING to them as needed.

    On PostgreSQL one `INSERT ... SELECT FROM unnest(arrays)`: a single statement and round
    trip whatever the count (asyncpg's executemany runs the statement once per row: 64,000
    rows took 4 s where this takes 0.3 s). On SQLite an executemany per SQLITE_CHUNK rows,
    which runs in-process."""
    names = list(rows[0])
    if dialect == "postgresql":
        arrays = [bindparam(name, type_=postgresql.ARRAY(table.c[name].type)) for name in names]
        unnested = func.unnest(*arrays).table_valued(*names).render_derived()
        statement = postgresql.insert(table).from_select(
            names, select(*(unnested.c[name] for name in names))
        )
        return [(statement, {name: [row[name] for row in rows] for name in names})]
    return [
        (sqlite.insert(table), list(rows[start : start + SQLITE_CHUNK]))
        for start in range(0, len(rows), SQLITE_CHUNK)
    ]


def migrate(settings: Settings, revision: str = "heads") -> None:
    """Upgrade the database schema to `revision` (synchronous: call it outside the event loop).

    The default, `heads`, is every branch's newest revision: the template's and your own.
    """
    if settings.database_is_embedded:
        Path(settings.database.database or ".").parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = settings.database
    command.upgrade(config, revision)
