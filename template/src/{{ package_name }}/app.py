"""The application factory: settings -> resources -> routes -> error handlers -> middleware."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import SERVICE_DESCRIPTION, SERVICE_NAME, __version__, health
from .components import (
    build_resources,
    feature_routers,
    precompressed_paths,
    router_body_limits,
    startup_problem,
)
from .db import Database
from .errors import install_error_handlers
from .middleware import (
    BodyMiddleware,
    RequestContextMiddleware,
    body_limits,
)
from .observability import (
    Metrics,
    configure_error_reporting,
    configure_logging,
    metrics_router,
)
from .observability import metrics as metrics_endpoint
from .openapi import install_openapi
from .ratelimit import document_rate_limits
from .resources import ResourceRegistry, resources_of
from .settings import Settings
from .tracing import TELEMETRY_OFF, Tracing

logger = logging.getLogger(__name__)


class UnsafeConfigurationError(RuntimeError):
    """A production configuration that would expose the service (see `startup_problem`)."""


# What a router without a lifespan of its own has (APIRouter's default, built per router).
_DEFAULT_LIFESPAN = type(APIRouter().lifespan_context)


def _inlinable(router: APIRouter, sized: Sequence[tuple[APIRouter, int]]) -> bool:
    """Whether `router`'s routes can join the app's router as they are: each route already
    carries the router's prefix, tags, dependencies and body limit (APIRouter adds them as
    routes are declared). Not a router with a lifespan or startup/shutdown handlers, which
    only `include_router` runs, nor one whose body limit comes from the settings
    (`router_body_limits`), which `body_limits` finds by the included router."""
    return (
        not router.on_startup
        and not router.on_shutdown
        and type(router.lifespan_context) is _DEFAULT_LIFESPAN
        and all(limited is not router for limited, _ in sized)
    )


def _withhold_internals(app: FastAPI, settings: Settings) -> None:
    """Keep off an API port that faces clients what is for operators: the scaling report and
    the metrics where internals are hidden (EXPOSE_INTERNALS), the metrics where they have a
    port of their own (METRICS_PORT)."""
    withheld: set[object] = set()
    if not settings.shows_internals:
        withheld |= {health.scaling, metrics_endpoint}
    if settings.metrics_port is not None:
        withheld.add(metrics_endpoint)
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "endpoint", None) not in withheld
    ]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    tracing: Tracing | None = app.state.tracing
    try:
        async with resources_of(app) as registry:
            if tracing is not None:
                tracing.instrument(registry)
            with _collector_settled(app.state.settings.gc_gen0_threshold):
                yield
    finally:
        if tracing is not None:
            # The spans still batched leave now, not with the process: a worker's last ones.
            await asyncio.to_thread(tracing.shutdown)


@contextmanager
def _collector_settled(gen0_threshold: int) -> Iterator[None]:
    """While the app serves: what start-up built out of the garbage collector's reach, and
    young objects collected less often (GC_GEN0_THRESHOLD). Both undone when it stops, for
    whatever else runs in the process next (a test suite starts many apps)."""
    if gen0_threshold == 0:
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()  # no collection first: one over a test suite's heap costs more than it frees
    gc.set_threshold(gen0_threshold, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    configure_error_reporting(
        settings.sentry_dsn, environment=settings.environment, release=__version__
    )
    problem = startup_problem(settings)
    if problem is not None:
        if settings.is_production:
            raise UnsafeConfigurationError(f"refusing to start: {problem}")
        logger.warning(problem)
    metrics = Metrics()
    resources = build_resources(settings, metrics)
    tracing = Tracing() if settings.tracing_enabled else None

    app = FastAPI(
        title=SERVICE_NAME,
        version=__version__,
        description=SERVICE_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.serves_docs else None,
        redoc_url="/redoc" if settings.serves_docs else None,
        openapi_url="/openapi.json" if settings.serves_docs else None,
        # The request spans when tracing is on; off, FastAPI passes requests straight through.
        telemetry=tracing.telemetry() if tracing is not None else TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.tracing = tracing
    app.state.metrics = metrics
    app.state.resources = registry = ResourceRegistry(resources)
    sized = router_body_limits(settings)  # routers whose body limit the settings choose

    # Probes first, because FastAPI matches routes in registration order and probes are the most
    # frequent requests. Routes go straight onto the app's router where they can: FastAPI
    # matches an included router through a wrapper of its own, ~50k instructions per request
    # (callgrind, fintech's market data: 557k -> 505k).
    app.router.routes.extend(health.router.routes)
    if settings.metrics_enabled:
        app.router.routes.extend(metrics_router.routes)
    for router in feature_routers():
        if _inlinable(router, sized):
            app.router.routes.extend(router.routes)
        else:
            app.include_router(router)
    document_rate_limits(app)
    _withhold_internals(app, settings)
    limits = list(body_limits(app.routes, settings.max_body_bytes, sized))
    install_openapi(app, limits)

    install_error_handlers(app, registry.get(Database))

    # add_middleware wraps what is already there: the last one added runs first.
    app.add_middleware(
        BodyMiddleware,
        max_body=settings.max_body_bytes,
        routes=limits,
        gzip_minimum_size=settings.gzip_minimum_size,
        gzip_level=settings.gzip_level,
        precompressed=precompressed_paths(),
    )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=[settings.request_id_header, "Retry-After", "X-RateLimit-Remaining"],
            max_age=600,
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics if settings.metrics_enabled else None,
        header=settings.request_id_header,
        access_log=settings.access_log,
        quiet_paths=() if settings.access_log_probes else health.PROBE_PATHS,
        hsts_seconds=settings.hsts_seconds,
        docs_paths=[path for path in (app.docs_url, app.redoc_url) if path],
        cache_control=settings.cache_control,
    )
    return app
