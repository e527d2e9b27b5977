"""The registry of long-lived resources: opened in order, closed in reverse, checked for readiness.

Every pool, client and background loop the service owns is a `Resource`. The lifespan opens
them through one `ResourceRegistry`; if one fails to open, those already open are closed
before the error propagates, so a failed start leaks nothing. A `Service` built on resources
(a search engine over an index and a graph, say) is held beside them, found by type the same
way, and has nothing to open or close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, TypeVar, cast, runtime_checkable

from fastapi import FastAPI, Request

from .errors import describe_error

logger = logging.getLogger(__name__)

DEGRADED = "degraded: "
R = TypeVar("R")


class Service(Protocol):
    """Something handlers reach by type (see `ResourceRegistry.get`); a `Resource` is one."""

    name: str


@runtime_checkable
class Resource(Protocol):
    """Something opened at start-up and closed at shutdown."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Checkable(Protocol):
    """A resource whose health readiness should report. `check` raises when unhealthy."""

    name: str

    async def check(self) -> None: ...


class Degraded(Exception):
    """Raised by `check` when a resource is down but the service works around it (fails open).

    Readiness reports it as "degraded: ..." and stays ready: taking every replica out of the
    load balancer because a cache is down would turn a slower service into no service.
    """


class ResourceStartupError(RuntimeError):
    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"resource '{name}' failed to open: {type(cause).__name__}: {cause}")
        self.resource = name


class ResourceRegistry:
    def __init__(self, resources: Sequence[Service]) -> None:
        names = [resource.name for resource in resources]
        if len(set(names)) != len(names):
            raise ValueError(f"resource names must be unique, got {names}")
        self._resources = {resource.name: resource for resource in resources}
        self._by_kind: dict[type, Service] = {}
        self._stack: AsyncExitStack | None = None

    def replace(self, resource: Service) -> Service:
        """Put `resource` in the place of the one with its name, and return that one (a test
        standing in a failing storage, say). The caller opens the new one and closes the old."""
        old = self._resources[resource.name]
        self._resources[resource.name] = resource
        self._by_kind.clear()
        return old

    def get(self, kind: type[R]) -> R:
        """The one resource that is a `kind`. By type, not by name: renaming or removing a
        resource is an error mypy reports, not an attribute missing at run time."""
        found = self._by_kind.get(kind)
        if found is None:
            matches = [r for r in self._resources.values() if isinstance(r, kind)]
            if len(matches) != 1:
                raise LookupError(f"{len(matches)} resources are a {kind.__name__}, not one")
            found = self._by_kind[kind] = matches[0]
        return cast(R, found)

    def __iter__(self) -> Iterator[Service]:
        return iter(self._resources.values())

    async def __aenter__(self) -> ResourceRegistry:
        async with AsyncExitStack() as stack:
            for resource in self._resources.values():
                if not isinstance(resource, Resource):
                    continue  # a service: nothing to open
                try:
                    await resource.open()
                except Exception as exc:
                    logger.error("start-up failed", extra={"resource": resource.name})
                    # Leaving the `async with` closes what was opened, in reverse.
                    raise ResourceStartupError(resource.name, exc) from exc
                stack.push_async_callback(self._close, resource)
                logger.info("resource opened", extra={"resource": resource.name})
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    @staticmethod
    async def _close(resource: Resource) -> None:
        try:
            await resource.close()
        except Exception:
            # Keep closing the others: one bad close must not leak the rest.
            logger.exception("resource failed to close", extra={"resource": resource.name})
        else:
            logger.info("resource closed", extra={"resource": resource.name})

    async def check(self, check_timeout: float) -> dict[str, str]:
        """Run every readiness check concurrently; map each name to "ok", "degraded: ..." or
        the failure."""
        checkable = [r for r in self._resources.values() if isinstance(r, Checkable)]
        results = await asyncio.gather(
            *(asyncio.wait_for(r.check(), check_timeout) for r in checkable), return_exceptions=True
        )
        report: dict[str, str] = {}
        for resource, result in zip(checkable, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, Degraded):
                    report[resource.name] = f"{DEGRADED}{result}"[:300]
                elif isinstance(result, TimeoutError):
                    report[resource.name] = f"timed out after {check_timeout:g}s"
                else:
                    report[resource.name] = f"{type(result).__name__}: {result}"[:300]
            else:
                report[resource.name] = "ok"
        return report


class FailureLog:
    """How a background loop reports a failure that repeats every round.

    The first failure is logged at once; while it goes on, one line at most every `interval`
    seconds says how many rounds failed since; the first success after it is logged once. The
    line carries the driver's message, never a statement's SQL.

    Readiness too: the loop's resource calls `check()` from its own, which says "degraded",
    with the time of the last success, once `STALLED_AFTER` rounds in a row have failed.
    """

    STALLED_AFTER = 3

    def __init__(self, logger: logging.Logger, message: str, interval: float = 60.0) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._failing_since: float | None = None
        self._logged_at = float("-inf")
        self._unlogged = 0
        self._failures_in_a_row = 0
        self.last_success: datetime | None = None

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._failures_in_a_row += 1
        if self._failing_since is None:
            self._failing_since = now
        if now - self._logged_at < self._interval:
            self._unlogged += 1
            return
        extra = {
            "error": describe_error(exc),
            "failing_for_seconds": round(now - self._failing_since),
        }
        if self._unlogged:
            extra["failures_since_last_line"] = self._unlogged
        self._logger.warning(self._message, extra=extra)
        self._logged_at, self._unlogged = now, 0

    def succeeded(self) -> None:
        if self._failing_since is not None:
            self._logger.info(
                f"{self._message}: recovered",
                extra={"failed_for_seconds": round(time.monotonic() - self._failing_since)},
            )
        self._failing_since, self._logged_at, self._unlogged = None, float("-inf"), 0
        self._failures_in_a_row = 0
        self.last_success = datetime.now(UTC)

    def check(self) -> None:
        """Raise `Degraded` while the loop is stalled: STALLED_AFTER failed rounds in a row."""
        if self._failures_in_a_row < self.STALLED_AFTER or self._failing_since is None:
            return
        failing_for = time.monotonic() - self._failing_since
        last = "never" if self.last_success is None else self.last_success.isoformat()
        raise Degraded(
            f"{self._message}: {self._failures_in_a_row} rounds failed in {failing_for:.0f} s; "
            f"last succeeded at {last}"
        )


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a resource's background task and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def resources_of(app: FastAPI) -> ResourceRegistry:
    """The app's resources: `resources_of(app).get(Database)` (tests, commands, benchmarks)."""
    resources: ResourceRegistry = app.state.resources
    return resources


def registry(request: Request) -> ResourceRegistry:
    """The app's resources, for code that has the request: `registry(request).get(Database)`
    (handlers take the typed dependencies in deps.py instead)."""
    return resources_of(request.app)
