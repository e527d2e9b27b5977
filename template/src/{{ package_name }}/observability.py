"""Structured logging with the request id, error reporting, and the Prometheus metrics."""

from __future__ import annotations

import logging
import os
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import orjson
import psutil
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .routing import PUBLIC

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

# Set by the request-context middleware; read by every log line written during the request.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# The current span's trace and span ids, set by tracing.py when TRACING_ENABLED is on. Unset,
# the JSON lines cost one test of None more and import nothing of OpenTelemetry's.
trace_ids: Callable[[], tuple[str, str] | None] | None = None

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_RECORD_ATTRIBUTES: Final = frozenset(
    [
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",  # uvicorn's ANSI-coloured duplicate of the message
    ]
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the trace_id and
    span_id of the current span when tracing is on, and any `extra`.

    Written here rather than taken from python-json-logger because it sits on every request's
    path (the access line): with orjson and a per-second time prefix it formats in ~3 us, a
    third of what the stdlib json module and datetime cost.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if trace_ids is not None and (ids := trace_ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key != "request_id":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()

    def _timestamp(self, created: float) -> str:
        # Handlers format under their lock, so this one-entry cache needs no lock of its own.
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"


class ConsoleFormatter(logging.Formatter):
    """One line a person can read, with the same fields as the JSON line:

        12:00:01.234 INFO    access [5f0c9e] POST /api/jobs 202 3.1ms client=127.0.0.1
        12:00:01.236 INFO    my_service.jobs.service [5f0c9e] job started job_id=ab12 attempt=1

    Local time to the millisecond, level, logger, request id (`-` outside a request), the
    message, then every `extra` field as key=value (a value with spaces or quotes is quoted;
    a field that is None is left out). An access line reads as method, path, status and
    duration. A traceback follows on the next lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get() or "-"
        fields = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and key != "request_id" and value is not None
        }
        message = record.getMessage()
        if all(key in fields for key in _ACCESS_FIELDS):
            method, path, status, duration_ms = (fields.pop(key) for key in _ACCESS_FIELDS)
            message = f"{method} {path} {status} {duration_ms}ms"
            if fields.get("route") == path:
                del fields["route"]  # says nothing the path does not
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = (
            f"{clock}.{int(record.msecs):03d} {record.levelname:<7} {record.name} "
            f"[{request_id}] {message}"
        )
        line += "".join(f" {key}={_console_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


# The fields of an access line (middleware.py), shown first and without their names.
_ACCESS_FIELDS: Final = ("method", "path", "status", "duration_ms")


def _console_value(value: object) -> str:
    """A string as it is unless that would be ambiguous (empty, spaces, quotes, `=`), then
    quoted; anything else as compact JSON."""
    if not isinstance(value, str):
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    if not value or any(c.isspace() or c in "\"'=" for c in value):
        return orjson.dumps(value).decode()
    return value


LogFormat = Literal["auto", "json", "console"]


def chosen_format(log_format: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """`auto`: console lines for a person at a terminal, JSON for everything else (a log
    collector, a file, a pipe)."""
    if log_format == "auto":
        return "console" if stream.isatty() else "json"
    return log_format


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Route every logger (uvicorn's included) through one stdout handler."""
    # Skip what no line prints: caller lookup, thread, process and multiprocessing names. The
    # logging HOWTO's "Optimization" section documents these switches; together they save
    # ~5 us on every access line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    console = chosen_format(log_format, sys.stdout) == "console"
    handler.setFormatter(ConsoleFormatter() if console else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The request-context middleware writes the access line, with the request id.
    logging.getLogger("uvicorn.access").disabled = True


def configure_error_reporting(dsn: str | None, *, environment: str, release: str) -> bool:
    """Report errors to Sentry when `dsn` is set; True when reporting is on.

    Sentry then reports what the service does not handle: an unhandled error in a request
    (logged by the request-context middleware, which answers the 500) or in a job, and any
    line logged at ERROR. Its integrations for the libraries installed here switch themselves
    on: FastAPI and Starlette (the request's method, URL and route on each event) and, in a
    worker, Celery's or arq's. Each event is tagged with `request_id`, the id of the request
    it happened in or that submitted the job: the id in the 500's body and in the log lines.
    Performance tracing stays off (`traces_sample_rate` unset): sampled or not, it costs
    every request.

    Without a DSN this returns before importing sentry_sdk, so nothing of Sentry is loaded,
    patched or run on any path: off costs nothing.
    """
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        before_send=_tag_request_id,
        # A line logged at ERROR is an event: said here, as sentry-sdk 3 no longer does it by
        # default (2.x did). The unhandled request's and the failed job's lines are those.
        integrations=[LoggingIntegration(event_level=logging.ERROR)],
    )
    return True


def _tag_request_id(event: Event, hint: Hint) -> Event:
    # Sentry calls this where the event is captured: in the request's or the job's context.
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    return event


_REQUESTS_HELP = "HTTP requests by method, route template and status code."
_LATENCY_HELP = "Time from the request to the end of the response, by route template."
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


class _RequestCounts(Collector):
    """http_requests_total and http_request_duration_seconds of one process, kept in plain ints
    and floats and turned into samples at each scrape.

    prometheus-client's Counter and Histogram take three locks and a dozen calls per request
    (~5 us, a tenth of a liveness probe); these are written from the event loop's thread
    only, so a dict update and a bisect do. Workers that share PROMETHEUS_MULTIPROC_DIR use
    the library's metrics instead, which write to the files the scrape reads.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._requests: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count per bucket (not cumulative; the last is +Inf), the sum.
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._bounds = _LATENCY_BUCKETS
        self._le = [*(repr(bound) for bound in _LATENCY_BUCKETS), "+Inf"]  # as the library

    def started(self) -> None:
        self.in_flight += 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight -= 1
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get((method, route))
        if latency is None:
            latency = self._latency[method, route] = [0.0] * (len(self._bounds) + 2)
        latency[bisect_left(self._bounds, seconds)] += 1  # the first bucket with seconds <= le
        latency[-1] += seconds

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        requests, latency = self._families()
        for (method, route, status), count in list(self._requests.items()):
            requests.add_metric((method, route, str(status)), count)
        for labels, values in list(self._latency.items()):
            cumulative = list(accumulate(values[:-1]))
            latency.add_metric(labels, list(zip(self._le, cumulative, strict=True)), values[-1])
        return [requests, latency]

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "http_requests", _REQUESTS_HELP, labels=("method", "route", "status")
            ),
            HistogramMetricFamily(
                "http_request_duration_seconds", _LATENCY_HELP, labels=("method", "route")
            ),
        )


class _SharedRequestCounts:
    """The same metrics through prometheus-client, for workers sharing
    PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self, registry: CollectorRegistry, in_flight: Gauge) -> None:
        self.in_flight = in_flight
        self.requests = Counter(
            "http_requests_total", _REQUESTS_HELP, ("method", "route", "status"), registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            _LATENCY_HELP,
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def started(self) -> None:
        self.in_flight.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight.dec()
        # Labelled children are cached: `labels()` validates and locks on every call.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        count, latency = children
        count.inc()
        latency.observe(seconds)


#: Statement kinds of db_query_duration_seconds; the rest (DDL, CTEs, PRAGMA) is "other".
STATEMENT_KINDS: Final = ("select", "insert", "update", "delete")
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class Metrics:
    """The service's Prometheus metrics, on a registry owned by one app instance (or worker).

    A registry per app (not the global default) lets tests build many apps in one process.
    With PROMETHEUS_MULTIPROC_DIR set (several uvicorn workers, or a Celery worker's pool),
    /metrics aggregates every process's values through prometheus-client's multiprocess
    collector. Beside the requests it holds what every service has: the database's queries
    and pool, the jobs, calls to other services, and the dependencies' readiness; a feature
    adds its own metrics to `registry`.
    """

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_query = Histogram(
            "db_query_duration_seconds",
            "Time the database took to run a statement, by kind (select, insert, update, "
            "delete, other).",
            ("statement",),
            buckets=_DB_BUCKETS,
            registry=registry,
        )
        self.db_pool_size = Gauge(
            "db_pool_size",
            "Connections the pool keeps open (DB_POOL_SIZE), per process.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_checked_out = Gauge(
            "db_pool_checked_out",
            "Connections in use right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_overflow = Gauge(
            "db_pool_overflow",
            "Connections open beyond DB_POOL_SIZE right now (at most DB_MAX_OVERFLOW).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_wait = Histogram(
            "db_pool_wait_seconds",
            "Time a checkout waited for a connection (opening one included).",
            buckets=_DB_BUCKETS,
            registry=registry,
        )
        self.jobs_queued = Gauge(
            "jobs_queued",
            "Jobs waiting to run, by kind, as the job sweeper last counted them.",
            ("kind",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "Time one attempt at a job took, by kind and outcome (succeeded, failed, retried).",
            ("kind", "outcome"),
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.jobs_retried = Counter(
            "jobs_retried_total",
            "Job attempts that failed and were scheduled again.",
            ("kind",),
            registry=registry,
        )
        self.jobs_swept = Counter(
            "jobs_swept_total",
            "Jobs the sweeper handed to the queue again (never run, or their worker was lost).",
            ("kind",),
            registry=registry,
        )
        self.outbound = Histogram(
            "outbound_request_duration_seconds",
            "Calls to other services (llm, graph_store, smtp), by target and outcome (ok, error).",
            ("target", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.dependency_up = Gauge(
            "dependency_up",
            "1 while a dependency passes its readiness check, 0 while it is down or degraded.",
            ("dependency",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        # The request metrics: `started()` when a request begins, `observe(...)` when it ends
        # (the request-context middleware calls them directly, one call each per request).
        self.requests: _RequestCounts | _SharedRequestCounts
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            self.requests = _SharedRequestCounts(registry, self.in_flight)
        else:
            local = self.requests = _RequestCounts()
            self.in_flight.set_function(lambda: local.in_flight)
            registry.register(local)
            # CPU seconds, resident memory and open files of this process. With several
            # processes, the metrics port reports their sum instead (ProcessTreeCollector).
            ProcessCollector(registry=registry)

    def started(self) -> None:
        """A request began."""
        self.requests.started()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request that `started` ended."""
        self.requests.observe(method, route, status, seconds)

    def dependencies(self, checks: dict[str, str]) -> None:
        """Record a readiness round: each resource's name to "ok" or what went wrong."""
        for name, result in checks.items():
            self.dependency_up.labels(name).set(1 if result == "ok" else 0)

    def exposition(self) -> tuple[bytes, str]:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


metrics_router = APIRouter(tags=["observability"])


@metrics_router.get(
    "/metrics",
    openapi_extra=PUBLIC,
    summary="Prometheus metrics",
    description="Request count and latency per route template, requests in flight, and more.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)


class ProcessTreeCollector(Collector):
    """process_cpu_seconds_total and process_resident_memory_bytes of a process and all its
    descendants (uvicorn's workers, a Celery worker's pool), summed at each scrape.

    prometheus-client's own process collector reports one process, and in multiprocess mode
    none: this is what a container's CPU and memory limits are measured against.
    """

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)

    def describe(self) -> Iterable[Metric]:
        return self._families(0.0, 0)

    def collect(self) -> Iterable[Metric]:
        cpu = 0.0
        rss = 0
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    rss += process.memory_info().rss
            except psutil.Error:  # exited between the listing and the reading
                continue
        return self._families(cpu, rss)

    @staticmethod
    def _families(cpu: float, rss: int) -> list[Metric]:
        return [
            CounterMetricFamily(
                "process_cpu_seconds",
                "User and system CPU time of the service's processes, in seconds.",
                value=cpu,
            ),
            GaugeMetricFamily(
                "process_resident_memory_bytes",
                "Resident memory of the service's processes, in bytes.",
                value=rss,
            ),
        ]


_process_metrics: dict[int, Metrics] = {}


def worker_metrics(port: int | None) -> Metrics | None:
    """A worker process's metrics when WORKER_METRICS_PORT (`port`) serves them; None
    otherwise. One per process: a Celery pool process, forked from the worker, makes its own
    (the `worker` command has set PROMETHEUS_MULTIPROC_DIR for them all by then)."""
    if port is None:
        return None
    pid = os.getpid()
    metrics = _process_metrics.get(pid)
    if metrics is None:
        metrics = _process_metrics[pid] = Metrics()
    return metrics


def serve_metrics(host: str, port: int) -> None:
    """/metrics of every worker on a port of its own, from a thread of the calling process.

    The workers write their metrics to PROMETHEUS_MULTIPROC_DIR; this reads them all at each
    scrape (prometheus-client's multiprocess collector). Kept off the API port, the metrics
    are not reachable through the load balancer, only by whatever can reach the pod or task.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(ProcessTreeCollector(os.getpid()))
    start_http_server(port, addr=host, registry=registry)
    logging.getLogger(__name__).info("metrics served", extra={"address": f"{host}:{port}"})
