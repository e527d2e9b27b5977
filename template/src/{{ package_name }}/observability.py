"""Structured logging with the request id, and the Prometheus metrics registry."""

from __future__ import annotations

import logging
import os
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from itertools import accumulate
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .routing import PUBLIC

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
    """Human-readable lines for local development, still carrying the request id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get() or "-"
        return super().format(record)


def configure_logging(level: str, log_format: str) -> None:
    """Route every logger (uvicorn's included) through one stdout handler."""
    # Skip what no line prints: caller lookup, thread, process and multiprocessing names. The
    # logging HOWTO's "Optimization" section documents these switches; together they save
    # ~5 us on every access line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The request-context middleware writes the access line, with the request id.
    logging.getLogger("uvicorn.access").disabled = True


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


class Metrics:
    """The service's Prometheus metrics, on a registry owned by one app instance.

    A registry per app (not the global default) lets tests build many apps in one process.
    With PROMETHEUS_MULTIPROC_DIR set (several uvicorn workers), /metrics aggregates every
    worker's values through prometheus-client's multiprocess collector.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served right now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._local: _RequestCounts | None = None
        self._shared: _SharedRequestCounts | None = None
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            self._shared = _SharedRequestCounts(self.registry, self.in_flight)
        else:
            local = self._local = _RequestCounts()
            self.in_flight.set_function(lambda: local.in_flight)
            self.registry.register(local)

    def started(self) -> None:
        """A request began."""
        if self._local is not None:
            self._local.in_flight += 1
        elif self._shared is not None:
            self._shared.in_flight.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request that `started` ended."""
        if self._local is not None:
            self._local.observe(method, route, status, seconds)
        elif self._shared is not None:
            self._shared.observe(method, route, status, seconds)

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


def serve_metrics(host: str, port: int) -> None:
    """/metrics of every worker on a port of its own, from a thread of the calling process.

    The workers write their metrics to PROMETHEUS_MULTIPROC_DIR; this reads them all at each
    scrape (prometheus-client's multiprocess collector). Kept off the API port, the metrics
    are not reachable through the load balancer, only by whatever can reach the pod or task.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
    logging.getLogger(__name__).info("metrics served", extra={"address": f"{host}:{port}"})
