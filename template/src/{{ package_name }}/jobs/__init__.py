"""Background jobs: the handler registry and the queue interface every backend implements.

A job is recorded in the database before it is handed to a queue, so a broker outage delays
it (the sweeper re-enqueues it) instead of losing it. The flavor lists its job kinds
(`Flavor.jobs`), registered by components.py, which the app and the worker both import; more
handlers register with `@job("kind")` in modules listed in the JOB_MODULES setting.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler receives. Writes made through `session` commit in the same transaction
    that marks the job succeeded, so a job delivered twice has its effect once."""

    job_id: str
    kind: str
    arguments: dict[str, Any]
    attempt: int
    session: AsyncSession


Handler = Callable[[JobContext], Awaitable[JsonValue]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    handler: Handler
    # Public kinds may be submitted through POST /api/jobs; the others only from code.
    public: bool


_KINDS: dict[str, JobKind] = {}


def register(*kinds: JobKind) -> None:
    """Run jobs of each kind with its handler; a kind has one handler."""
    for kind in kinds:
        registered = _KINDS.get(kind.name)
        if registered is not None and registered.handler is not kind.handler:
            raise ValueError(f"job kind '{kind.name}' is already registered")
        _KINDS[kind.name] = kind


def job(kind: str, *, public: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated handler for jobs of `kind` (in a JOB_MODULES module)."""

    def decorate(handler: Handler) -> Handler:
        register(JobKind(kind, handler, public))
        return handler

    return decorate


def job_kind(kind: str) -> JobKind | None:
    return _KINDS.get(kind)


def public_kinds() -> list[str]:
    """The kinds clients may submit through POST /api/jobs, sorted."""
    return sorted(name for name, kind in _KINDS.items() if kind.public)


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the modules that register handlers (the JOB_MODULES setting)."""
    for module in modules:
        importlib.import_module(module)


class JobQueue(Protocol):
    """Hands recorded jobs to whatever runs them. A resource: opened and closed by its owner."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(self, job_id: str, *, delay: float = 0.0) -> None:
        """Deliver the job after `delay` seconds; raise if the queue cannot take it now."""
        ...
