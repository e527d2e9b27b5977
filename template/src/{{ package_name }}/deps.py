"""Typed dependencies: what a handler needs, declared by type in its signature.

    async def handler(database: DatabaseDep, jobs: JobsDep) -> ...

Each one finds its resource by type in the app's registry (resources.py), so renaming or
removing a resource is an error mypy reports, not a missing attribute at run time. Code that
has only the request uses `resources.resource_of(request, Kind)`; a flavor declares the
dependencies of its own resources beside them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from .cache import Cache
from .db import Database
from .jobs.service import Jobs
from .ratelimit import RateLimiter
from .resources import resource_of
from .settings import Settings

R = TypeVar("R")


def resource(kind: type[R]) -> Callable[[Request], R]:
    """A dependency returning the app's resource of type `kind`."""

    def dependency(request: Request) -> R:
        return resource_of(request, kind)

    dependency.__name__ = f"get_{kind.__name__.lower()}"
    return dependency


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(settings_of)]
DatabaseDep = Annotated[Database, Depends(resource(Database))]
CacheDep = Annotated[Cache, Depends(resource(Cache))]
JobsDep = Annotated[Jobs, Depends(resource(Jobs))]
RateLimiterDep = Annotated[RateLimiter, Depends(resource(RateLimiter))]
