"""Command line: `serve` runs the API, `worker` runs jobs, `migrate` upgrades the schema."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from .components import run_worker
from .db import migrate
from .observability import configure_logging
from .settings import Settings

logger = logging.getLogger(__name__)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.should_auto_migrate:
        logger.info("migrating the embedded database", extra={"database": str(settings.database)})
        migrate(settings)
    uvicorn.run(
        f"{__package__}.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.web_concurrency,
        reload=args.reload,
        log_config=None,  # our JSON logging, configured in create_app
        access_log=False,  # the request-context middleware writes one line per request
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    return run_worker(settings)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    logger.info("migrating", extra={"revision": args.revision})
    migrate(settings, args.revision)
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
    migrate_cmd.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    migrate_cmd.set_defaults(handler=_migrate)

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
