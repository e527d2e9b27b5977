"""Optional OpenTelemetry tracing by OTLP: requests, database, Redis, graph server, outbound HTTP.

On with TRACING_ENABLED=true. Where the spans go, and how many are kept, are the standard
OpenTelemetry variables, read by the SDK itself: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTLP over HTTP, default http://localhost:4318),
OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default: every trace), OTEL_SERVICE_NAME
(default: the project's command name) and OTEL_RESOURCE_ATTRIBUTES.

Off, it costs nothing on a request: FastAPI's telemetry stays off, no engine, client or
formatter is touched, and neither the OpenTelemetry SDK nor an instrumentation package is
imported (FastAPI itself imports the OpenTelemetry API, which does nothing unconfigured).

Each app gets a tracer provider of its own rather than the process-wide one, and each
resource is instrumented as an instance (the engine, the Redis client, the HTTP client), so
tests can build many apps in one process and every app's spans go where its settings say.
The SDK and exporter ship in the project's `tracing` extra, so an image built without it
stays lean; turning tracing on without them stops the start with the command that adds them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from opentelemetry.trace import get_current_span

from . import COMMAND, __version__, observability

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import TracerProvider as ApiTracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

#: FastAPI's native telemetry when tracing is off: nothing per request.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class TracingUnavailableError(RuntimeError):
    """TRACING_ENABLED is set but the OpenTelemetry SDK is not installed."""


@runtime_checkable
class Traceable(Protocol):
    """A resource that can send its calls' spans to a tracer provider (its own client's)."""

    def instrument(self, tracer_provider: ApiTracerProvider) -> None: ...


class Tracing:
    """One tracer provider, batching spans to the OTLP exporter, for one app or worker."""

    def __init__(self) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailableError(
                "TRACING_ENABLED is set but the OpenTelemetry packages are not installed: "
                f"install the `tracing` extra (`uv sync --extra tracing`, or "
                f"`pip install '{COMMAND}[tracing]'`)"
            ) from exc
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, TracerProvider
        # the sampler (OTEL_TRACES_SAMPLER, _ARG), the exporter its endpoint, headers and
        # timeout (OTEL_EXPORTER_OTLP_*).
        defaults = {SERVICE_VERSION: __version__}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            defaults[SERVICE_NAME] = COMMAND
        resource = Resource.create(defaults)
        self.provider: TracerProvider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        observability.trace_ids = current_trace_ids

    def telemetry(self) -> TelemetryConfig:
        """FastAPI's native request spans, on this provider: the server span of each request,
        named after its route. Its own metrics and logs stay off (Prometheus and the JSON
        logs have them), and so do its spans around each dependency and the endpoint."""
        return {
            "tracer_provider": self.provider,
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        }

    def instrument(self, resources: Iterable[object]) -> None:
        """Send the spans of each traceable resource (opened already) to this provider."""
        for resource in resources:
            if isinstance(resource, Traceable):
                resource.instrument(self.provider)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export the spans ended so far now; False if that took longer than the timeout."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is left and stop the exporter's thread."""
        self.provider.shutdown()


def instrument_engine(engine: AsyncEngine, tracer_provider: ApiTracerProvider) -> None:
    """A span per statement of this engine (and none of another's)."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as version
    from opentelemetry.metrics import NoOpMeterProvider

    # What SQLAlchemyInstrumentor.instrument(engine=...) does, without the process-wide patch
    # of create_engine it also makes, and which it makes only once per process. The
    # connection-usage metric goes nowhere: the pool's metrics are Prometheus's.
    name = "opentelemetry.instrumentation.sqlalchemy"
    meter = NoOpMeterProvider().get_meter(name, version)
    usage = meter.create_up_down_counter("db.client.connections.usage")
    EngineTracer(  # type: ignore[no-untyped-call]
        tracer_provider.get_tracer(name, version), engine.sync_engine, usage
    )


def current_trace_ids() -> tuple[str, str] | None:
    """The trace and span ids of the current span, as the hex an OTLP backend shows."""
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
