"""Command line: `serve` runs the API, `worker` runs jobs, `migrate` upgrades the schema,
`plan-capacity` sizes and prices the deployment."""

from __future__ import annotations

import argparse
import logging
import math
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
from .capacity import PlanError, PlanInputs, bench_rps, plan, report, write_plot
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


def _collect_metrics(
    directory: Path | None, host: str, port: int | None, port_setting: str
) -> bool:
    """Share metrics between this process and its children through `directory` (a fresh
    temporary one when only `port` is set), and serve them on `port`. False, having said
    why, when either is unusable."""
    if directory is None and port is not None:
        # The metrics port reads every process's metrics from files, even with one process.
        directory = Path(tempfile.mkdtemp(prefix="metrics-"))
    if directory is not None:
        try:
            _prepare_metrics_dir(directory)
        except OSError as exc:
            sys.stderr.write(
                f"PROMETHEUS_MULTIPROC_DIR={directory} is unusable: {exc.strerror or exc}\n"
            )
            return False
    if port is not None:
        try:
            serve_metrics(host, port)
        except OSError as exc:
            sys.stderr.write(f"{port_setting}={port} is unusable: {exc}\n")
            return False
    return True


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    problem = startup_problem(settings)
    if problem is not None and settings.is_production:
        sys.stderr.write(f"refusing to start: {problem}\n")
        return 2
    host = args.host or settings.host
    if not _collect_metrics(
        settings.prometheus_multiproc_dir, host, settings.metrics_port, "METRICS_PORT"
    ):
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
        host=host,
        port=args.port or settings.port,
        workers=settings.web_concurrency if args.workers is None else args.workers,
        reload=args.reload,
        **uvicorn_options(settings),
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    port = settings.worker_metrics_port
    if port is not None:
        # Beside serve's files, not among them: each empties its directory when it starts.
        shared = settings.prometheus_multiproc_dir
        directory = None if shared is None else shared / "worker"
        if not _collect_metrics(directory, settings.host, port, "WORKER_METRICS_PORT"):
            return 2
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


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be above zero: {text!r}")
    return value


def _plan_capacity(args: argparse.Namespace, settings: Settings) -> int:
    rps_per_worker = args.rps_per_worker
    if args.from_bench is not None:
        try:
            endpoint, rps_per_worker = bench_rps(args.from_bench, args.endpoint)
        except PlanError as exc:
            sys.stderr.write(f"plan-capacity: {exc}\n")
            return 2
        sys.stdout.write(f"benchmark: {rps_per_worker:,.0f} requests/s per worker ({endpoint})\n")
    inputs = PlanInputs(
        rps_per_worker=rps_per_worker,
        requests_per_day=args.requests_per_day,
        peak_factor=args.peak_factor,
        p95_target=args.p95_target,
        workers=settings.web_concurrency if args.workers is None else args.workers,
        cpu_target=settings.scaling_cpu_target,
        min_replicas=settings.scaling_min_replicas,
        max_replicas=settings.scaling_max_replicas,
        instance_vcpu=settings.instance_vcpu,
        instance_memory_gb=settings.instance_memory_gb,
        price_vcpu_hour=settings.price_vcpu_hour,
        price_gb_hour=settings.price_gb_hour,
    )
    try:
        result = plan(inputs)
    except PlanError as exc:
        sys.stderr.write(f"plan-capacity: {exc}\n")
        return 2
    sys.stdout.write(report(result) + "\n")
    if args.plot is not None:
        try:
            write_plot(result, args.plot)
        except (RuntimeError, OSError) as exc:
            sys.stderr.write(f"plan-capacity --plot: {exc}\n")
            return 2
        sys.stdout.write(f"plot: {args.plot}\n")
    # A maximum that cannot carry the peak fails the command (a check for CI); a wasteful
    # minimum is only a warning.
    return 1 if result.peak_instances > inputs.max_replicas else 0


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

    capacity = commands.add_parser(
        "plan-capacity",
        help="instances and monthly cost for a traffic, from the benchmark's requests/s",
        description="Instances over a day and their monthly cost, within SCALING_MIN_REPLICAS "
        "and SCALING_MAX_REPLICAS, at SCALING_CPU_TARGET, priced with PRICE_VCPU_HOUR and "
        "PRICE_GB_HOUR. Exits 1 when the maximum cannot carry the peak.",
    )
    measured = capacity.add_mutually_exclusive_group(required=True)
    measured.add_argument(
        "--rps-per-worker",
        type=_positive,
        help="requests/s one worker process serves on a core of its own "
        "(bench/bench_stack.py through uvicorn)",
    )
    measured.add_argument(
        "--from-bench",
        type=Path,
        help="read it from `bench/bench_stack.py --json FILE`'s file",
    )
    capacity.add_argument(
        "--endpoint",
        help="with --from-bench: the benchmark's endpoint to plan for (default: the slowest)",
    )
    capacity.add_argument(
        "--requests-per-day", type=_positive, required=True, help="the day's requests"
    )
    capacity.add_argument(
        "--peak-factor",
        type=_positive,
        default=3.0,
        help="the busiest moment's rate as a multiple of the average (default: 3)",
    )
    capacity.add_argument(
        "--p95-target",
        type=_positive,
        default=0.2,
        help="seconds; the latency objective of observability/alerts.yaml (default: 0.2)",
    )
    capacity.add_argument(
        "--workers", type=int, help="worker processes per instance (default: WEB_CONCURRENCY)"
    )
    capacity.add_argument(
        "--plot",
        type=Path,
        default=Path("capacity.png"),
        help="PNG of the day's traffic and instances (default: capacity.png; needs matplotlib)",
    )
    capacity.add_argument("--no-plot", dest="plot", action="store_const", const=None)
    capacity.set_defaults(handler=_plan_capacity)

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
