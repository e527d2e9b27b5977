"""The domain a service is built around, plugged into the core through one object.

The core (settings, database, cache, jobs, rate limits, health, middleware, the CLI) is the
same for every flavor. A flavor package's components.py builds one `Flavor` naming all it
adds, and the core's components.py imports it on one line; nothing else in the core names a
flavor. A new domain is a new package like that, and that line changed:

    FLAVOR = Flavor(
        name="notes",
        routers=lambda: [router],
        job_owner=job_owner,      # dependency: who owns the jobs a request submits
        caller_key=caller_key,    # dependency: whom a request's rate limits count
        resources=notes_resources,
        jobs=(JobKind("notes.count", count_notes, public=True),),
    )
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi import APIRouter

from .cache import Cache
from .db import Database
from .jobs import JobKind
from .jobs.service import Jobs
from .observability import Metrics
from .resources import Service
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Foundation:
    """The core's resources, which a flavor's own are built on: opened before them, closed
    after them."""

    settings: Settings
    metrics: Metrics
    database: Database
    cache: Cache
    jobs: Jobs


@dataclass(frozen=True, slots=True)
class Background:
    """What a flavor's background loops are built on where jobs run: in the worker, or in
    `serve` when jobs run in-process. `metrics` is None in the worker, which serves none."""

    settings: Settings
    metrics: Metrics | None
    database: Database


def _no_resources(foundation: Foundation) -> list[Service]:
    return []


def _no_background(background: Background) -> list[Service]:
    return []


def _no_body_limits(settings: Settings) -> list[tuple[APIRouter, int]]:
    return []


def _no_problem(settings: Settings) -> str | None:
    return None


def _no_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    # The routers, matched after the probes in the order listed.
    routers: Callable[[], list[APIRouter]]
    # FastAPI dependencies: who owns the jobs a request submits (/api/jobs shows a caller only
    # their own), and whom its rate limits count (`rate_limit(..., per=caller_key)`).
    job_owner: Callable[..., Awaitable[str]]
    caller_key: Callable[..., Awaitable[str]]
    # The job kinds it runs (components.py registers them for the API and the worker).
    jobs: Sequence[JobKind] = ()
    # Long-lived resources, opened after the core's in the order listed, and the services
    # built on them (see resources.py).
    resources: Callable[[Foundation], Sequence[Service]] = _no_resources
    # Background loops that run where jobs run, once per worker (or `serve` process): opened
    # after the worker's database and sweeper, closed before them.
    background: Callable[[Background], Sequence[Service]] = _no_background
    # Routers whose request bodies may be larger (or must be smaller) than MAX_BODY_BYTES.
    body_limits: Callable[[Settings], list[tuple[APIRouter, int]]] = _no_body_limits
    # Paths that negotiate their own Content-Encoding (bytes compressed ahead of time): the
    # compression layer hands them straight to the route.
    precompressed_paths: Sequence[str] = ()
    # What makes a configuration unsafe to serve: refused in production, a warning elsewhere.
    startup_problem: Callable[[Settings], str | None] = _no_problem
    # Adds the flavor's subcommands to the CLI (`seed`, say); each sets `handler`.
    add_commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
        _no_commands
    )
