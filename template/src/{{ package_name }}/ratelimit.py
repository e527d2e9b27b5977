"""Per-user rate limits with the `limits` library, declared per endpoint.

    @router.get("/search", summary="...", dependencies=[rate_limit("search", per=caller_key)])

The limit for "search" is `RATE_LIMIT_ROUTES["search"]`, else `RATE_LIMIT_DEFAULT`; the same
setting is written into the route's OpenAPI description at start-up, so docs and behaviour
cannot drift. Counters live next to the cache (Redis when it is configured, process memory
otherwise) in a moving window: no double burst at a window edge.

Who is limited: whatever the `per` dependency names (the client address when none is given).
The limit depends on it, so FastAPI resolves the caller before counting, whatever order the
route lists its dependencies in; FastAPI runs a dependency once per request, so an
authentication the handler also takes costs nothing more. The address is the one uvicorn
derives from X-Forwarded-For only when the direct peer is in FORWARDED_ALLOW_IPS (addresses or
CIDRs), so a client cannot pick a fresh identity by sending its own X-Forwarded-For header.

When the storage is down (errors, timeouts), RATE_LIMIT_FAIL_OPEN decides: serve the request
unchecked, counted in `rate_limit_fail_open_total`, or answer 503. Waiting for the storage is
not an outage: a storage that can serve only so many calls at once says how many
(`max_concurrent_calls`; Redis: its pool's connections), and a burst queues for a turn: only
a request that waited `wait_timeout` in vain is refused (503, `rate_limit_busy`), never served
unchecked. Once its turn comes, a check that takes longer than `call_timeout` (Redis:
RATE_LIMIT_REDIS_TIMEOUT) is the storage being down.

A storage that counts a request and reads its window in one call (`SingleTripWindow`: the
Redis one, one round trip) is asked once per check; any other is asked twice, as `limits`
offers no call doing both.

Every limited response carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
(seconds until a request is allowed again), including a `Response` the handler builds itself;
a 429 also carries Retry-After.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from .cache import Outage
from .errors import AppError, ServiceUnavailableError
from .middleware import add_response_headers
from .observability import Metrics
from .resources import registry, resources_of
from .routing import api_routes
from .settings import Settings
from .tracing import Traceable

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

_UNBOUNDED: Final = nullcontext()

# The counter of failed authentications per client address (see `RateLimiter.count_failure`).
AUTH_FAILURES = "auth_failures"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"


@runtime_checkable
class BoundedStorage(Protocol):
    """A storage that serves at most `max_concurrent_calls` calls at once (a connection pool
    without waiting of its own): the limiter gives checks turns so that no call is refused."""

    max_concurrent_calls: int


@runtime_checkable
class SingleTripWindow(Protocol):
    """A storage that counts a hit and reads the moving window it leaves in one call:
    (allowed, reset time in epoch seconds, remaining), as `limits` reports them in two."""

    async def hit_with_stats(
        self, item: RateLimitItem, *identifiers: str
    ) -> tuple[bool, float, int]: ...


class RateLimiter:
    """The limits per route and the storage that counts them; a resource in the app's registry."""

    name = "ratelimit"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        storage: Callable[[], Storage],
        *,
        retry_after: float = 1.0,
        warning_interval: float = 60.0,
        wait_timeout: float = 5.0,
        call_timeout: float | None = None,
    ) -> None:
        # Parsed once: a typo in a limit fails start-up, not the first request.
        self.default = parse(settings.rate_limit_default)
        self.routes = {name: parse(text) for name, text in settings.rate_limit_routes.items()}
        self.routes[AUTH_FAILURES] = parse(settings.rate_limit_auth_failures)
        self.fail_open = settings.rate_limit_fail_open
        self._storage_factory = storage
        self._limiter: MovingWindowRateLimiter | None = None
        self._single_trip: SingleTripWindow | None = None
        self._turns: asyncio.Semaphore | None = None  # the storage's bound, if it has one
        self.wait_timeout = wait_timeout
        # Each check's storage calls as a whole; one that runs out is an outage. None: no
        # bound of the limiter's own (process memory cannot hang).
        self.call_timeout = call_timeout
        self.outage = Outage(
            "rate-limit storage unavailable; "
            + ("serving requests unlimited" if self.fail_open else "answering 503"),
            retry_after=retry_after,
            warning_interval=warning_interval,
        )
        self.rejected = Counter(
            "rate_limit_rejected_total",
            "Requests answered 429, by route name.",
            ("route",),
            registry=metrics.registry,
        )
        self.errors = Counter(
            "rate_limit_errors_total",
            "Storage errors while checking a limit.",
            registry=metrics.registry,
        )
        self.served_unchecked = Counter(
            "rate_limit_fail_open_total",
            "Requests served without a limit check because the storage was down, by route name.",
            ("route",),
            registry=metrics.registry,
        )

    def limit(self, route: str) -> RateLimitItem:
        return self.routes.get(route, self.default)

    async def open(self) -> None:
        # Built here, not in __init__: the storage may share a pool the cache opens first.
        storage = self._storage_factory()
        self._limiter = MovingWindowRateLimiter(storage)
        self._single_trip = storage if isinstance(storage, SingleTripWindow) else None
        self._turns = (
            asyncio.Semaphore(storage.max_concurrent_calls)
            if isinstance(storage, BoundedStorage)
            else None
        )

    async def close(self) -> None:
        # The cache backend owns the connections. A reopened limiter builds its bound anew,
        # for the storage it then has.
        self._limiter = self._single_trip = None
        self._turns = None

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """The storage's calls as spans, when it has a client to trace (Redis)."""
        if isinstance(self._single_trip, Traceable):
            self._single_trip.instrument(tracer_provider)

    async def enforce(self, route: str, identity: str) -> dict[str, str]:
        """Count one request; the headers to send, or RateLimitedError when over the limit."""
        if self._limiter is None:
            raise RuntimeError("the rate limiter is not open")
        item = self.limit(route)
        if self.outage.backing_off:
            return self._unchecked(route)
        async with self._turn():
            if self.outage.backing_off:  # began while this request waited: do not try again
                return self._unchecked(route)
            try:
                async with self._bounded():
                    if self._single_trip is not None:
                        allowed, reset_at, remaining = await self._single_trip.hit_with_stats(
                            item, route, identity
                        )
                    else:
                        allowed = await self._limiter.hit(item, route, identity)
                        reset_at, remaining = await self._limiter.get_window_stats(
                            item, route, identity
                        )
            except Exception as exc:  # any storage failure: the setting decides, never a 500
                self.errors.inc()
                self.outage.failed(exc)
                return self._unchecked(route)
        self.outage.succeeded()
        reset = max(math.ceil(reset_at - time.time()), 0)
        headers = {
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(reset),
        }
        if not allowed:
            self.rejected.labels(route).inc()
            raise RateLimitedError(
                f"rate limit of {item} exceeded; retry in {max(reset, 1)} s",
                headers={**headers, "Retry-After": str(max(reset, 1))},
            )
        return headers

    async def failures_exhausted(self, address: str) -> RateLimitedError | None:
        """The 429 for an address that used up its failed authentications, else None; counts
        nothing. An authenticator asks before a lookup that costs something (a query)."""
        if self._limiter is None:
            raise RuntimeError("the rate limiter is not open")
        item = self.limit(AUTH_FAILURES)
        if self.outage.backing_off:
            self._unchecked(AUTH_FAILURES)
            return None
        async with self._turn():
            try:
                async with self._bounded():
                    if await self._limiter.test(item, AUTH_FAILURES, address):
                        return None
                    reset_at, _ = await self._limiter.get_window_stats(item, AUTH_FAILURES, address)
            except Exception as exc:  # the storage is down: the setting decides, as for limits
                self.errors.inc()
                self.outage.failed(exc)
                self._unchecked(AUTH_FAILURES)
                return None
        self.outage.succeeded()
        self.rejected.labels(AUTH_FAILURES).inc()
        retry = max(math.ceil(reset_at - time.time()), 1)
        return RateLimitedError(
            f"too many failed authentications from this address; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )

    async def count_failure(self, address: str) -> RateLimitedError | None:
        """Count a failed authentication of `address`: the 429 to answer instead of 401 once
        it is over RATE_LIMIT_AUTH_FAILURES, else None."""
        try:
            await self.enforce(AUTH_FAILURES, address)
        except RateLimitedError as exc:
            return RateLimitedError(
                "too many failed authentications from this address; "
                f"retry in {exc.headers['Retry-After'] if exc.headers else 1} s",
                headers=exc.headers,
            )
        return None

    def _bounded(self) -> AbstractAsyncContextManager[object]:
        if self.call_timeout is None:
            return _UNBOUNDED  # no timer to start and cancel on every check
        return asyncio.timeout(self.call_timeout)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """One of the storage's connections, waited for: contention is not an outage."""
        if self._turns is None:
            yield
            return
        try:
            async with asyncio.timeout(self.wait_timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise ServiceUnavailableError(
                "too many requests are waiting for a rate-limit check; retry later",
                retry_after=1,
                code="rate_limit_busy",
            ) from None
        try:
            yield
        finally:
            self._turns.release()

    def _unchecked(self, route: str) -> dict[str, str]:
        if self.fail_open:
            self.served_unchecked.labels(route).inc()
            return {}
        raise ServiceUnavailableError(
            "rate limiting is unavailable; retry later",
            retry_after=max(math.ceil(self.outage.retry_after), 1),
            code="rate_limit_unavailable",
        )


def client_address(request: Request) -> str:
    """The client's address, as uvicorn derived it (X-Forwarded-For only from a trusted proxy)."""
    return f"ip:{request.client.host if request.client else 'unknown'}"


async def by_client_address(request: Request) -> str:
    """The default `per`: the client's address. `async def`: FastAPI runs a plain `def`
    dependency in a worker thread, on every request."""
    return client_address(request)


class RateLimit:
    """The dependency behind `rate_limit(route, per=...)`; its route name also feeds the docs.

    `per` is called here rather than declared as a dependency of its own: its parameters
    become this dependency's, so FastAPI resolves one node fewer per limited request (each
    node costs its resolution: ~5% of a cached read). What `per` itself depends on, such as
    the authenticated user, is still resolved once per request and shared.
    """

    def __init__(self, route: str, per: Callable[..., Any]) -> None:
        self.route = route
        self.per = per
        # FastAPI reads a dependency's parameters from its signature: `request`, then those of
        # `per` (whose string annotations are resolved in per's own module).
        parameters = inspect.signature(per, eval_str=True).parameters
        self._per_takes_request = "request" in parameters
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
                *(
                    parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                    for name, parameter in parameters.items()
                    if name != "request"
                ),
            ]
        )

    async def __call__(self, *, request: Request, **arguments: Any) -> None:
        if self._per_takes_request:
            arguments["request"] = request
        caller = self.per(**arguments)
        if inspect.isawaitable(caller):
            caller = await caller
        limiter = registry(request).get(RateLimiter)
        add_response_headers(request, await limiter.enforce(self.route, caller))


def rate_limit(route: str, *, per: Callable[..., Any] = by_client_address) -> Any:
    """`dependencies=[rate_limit("search", per=caller_key)]`: limit this endpoint under the
    name "search", counted per what `per` (a dependency returning a string) names. `per` is
    called on the event loop, even a plain `def`: keep it to reading what it is given."""
    return Depends(RateLimit(route, per))


def describe(item: RateLimitItem, per: Callable[..., Any]) -> str:
    who = "client address" if per is by_client_address else "caller"
    return f"Rate limit: {item} per {who}; over it the answer is 429 with Retry-After."


def document_rate_limits(app: FastAPI) -> None:
    """Write each limited route's limit into its OpenAPI description and responses."""
    limiter = resources_of(app).get(RateLimiter)
    for route in api_routes(app.routes):
        for limited in _rate_limits(route.dependant):
            text = describe(limiter.limit(limited.route), limited.per)
            if text not in (route.description or ""):
                route.description = "\n\n".join(filter(None, [route.description, text]))
            route.responses.setdefault(429, {"description": "Rate limit exceeded"})


def _rate_limits(dependant: Dependant) -> Iterator[RateLimit]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RateLimit):
            yield dependency.call
        yield from _rate_limits(dependency)
