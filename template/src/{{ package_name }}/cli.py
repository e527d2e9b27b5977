"""Command line: `serve` runs the API, `worker` runs jobs, `migrate` upgrades the schema."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client import values
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from . import __version__
from .components import FLAVOR, run_worker, startup_problem
from .db import migrate
from .observability import configure_error_reporting, configure_logging, serve_metrics
from .server import uvicorn_options
from .settings import Settings

logger = logging.getLogger(__name__)


def _prepare_metrics_dir(directory: Path) -> None:
    """Create the workers' shared metrics directory, without an earlier run's files.

    prometheus-client writes there from the first metric on and expects the directory to exist
    and to be emptied between runs; a container's fresh volume (an emptyDir) is neither made
    nor kept by anyone else.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # Set in `.env` only, the variable is news to prometheus-client and to the workers.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    problem = startup_problem(settings)
    if problem is not None and settings.is_production:
        sys.stderr.write(f"refusing to start: {problem}\n")
        return 2
    metrics_dir = settings.prometheus_multiproc_dir
    if metrics_dir is None and settings.metrics_port is not None:
        # The metrics port reads every worker's metrics from files, even with one worker.
        metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-"))
    if metrics_dir is not None:
        try:
            _prepare_metrics_dir(metrics_dir)
        except OSError as exc:
            sys.stderr.write(
                f"PROMETHEUS_MULTIPROC_DIR={metrics_dir} is unusable: {exc.strerror or exc}\n"
            )
            return 2
    if settings.metrics_port is not None:
        try:
            serve_metrics(args.host or settings.host, settings.metrics_port)
        except OSError as exc:
            sys.stderr.write(f"METRICS_PORT={settings.metrics_port} is unusable: {exc}\n")
            return 2
    if settings.should_auto_migrate:
        logger.info("migrating the embedded database", extra={"database": str(settings.database)})
        migrate(settings)
    # uvicorn stops on SIGTERM (no new connections; requests in flight get
    # GRACEFUL_SHUTDOWN_SECONDS), restores this handler and sends the signal again: a stop
    # asked for and carried out exits 0, not 143, which supervisors would count as a crash.
    signal.signal(signal.SIGTERM, _stop)
    uvicorn.run(
        f"{__package__}.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.web_concurrency,
        reload=args.reload,
        **uvicorn_options(settings),
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    configure_error_reporting(
        settings.sentry_dsn, environment=settings.environment, release=__version__
    )
    return run_worker(settings)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    logger.info("migrating", extra={"revision": args.revision})
    try:
        migrate(settings, args.revision)
    except (OSError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and exc.statement is not None:
            raise  # a revision's own SQL failed: the traceback says where
        # No connection (refused, unknown host, timeout, rejected login): say where and why.
        url = settings.database
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        where = f"{url.host}:{url.port or 5432}/{url.database}" if url.host else url.database
        reason = f"{type(cause).__name__}: {cause}"
        sys.stderr.write(f"migrate: cannot connect to the database at {where}: {reason}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (uvicorn)")
    serve.add_argument("--host", help="bind address (default: HOST)")
    serve.add_argument("--port", type=int, help="port (default: PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WEB_CONCURRENCY)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev only)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run background jobs (needs the broker's URL)")
    worker.set_defaults(handler=_worker)

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database schema")
    migrate_cmd.add_argument(
        "revision",
        nargs="?",
        default="heads",
        help="target (default: heads, the newest revision of the template's and your branch)",
    )
    migrate_cmd.set_defaults(handler=_migrate)

    FLAVOR.add_commands(commands)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # Name the environment variable, not a traceback through pydantic.
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            sys.stderr.write(f"invalid setting {name}: {error['msg']}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler = args.handler
    return int(handler(args, settings))
