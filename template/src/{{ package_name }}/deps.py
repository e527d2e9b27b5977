"""Typed dependencies: what a handler needs, declared by type in its signature.

    async def handler(database: DatabaseDep, jobs: JobsDep) -> ...

Each finds its resource by type in the app's registry (resources.py), so renaming or removing
a resource is an error mypy reports, not a missing attribute at run time. Code that has only
the request uses `registry(request).get(Kind)`; a flavor declares the dependencies of its own
resources beside them the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .cache import Cache
from .db import Database
from .jobs.service import Jobs
from .ratelimit import RateLimiter
from .resources import registry
from .settings import Settings


def settings_of(request: Request) -> Settings:
    """The app's settings, for code that has the request (handlers take `SettingsDep`)."""
    settings: Settings = request.app.state.settings
    return settings


# Each dependency is `async def` though it awaits nothing: FastAPI runs a plain `def`
# dependency in a worker thread, which measured 90 us a request for three of them.
async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_database(request: Request) -> Database:
    return registry(request).get(Database)


async def get_cache(request: Request) -> Cache:
    return registry(request).get(Cache)


async def get_jobs(request: Request) -> Jobs:
    return registry(request).get(Jobs)


async def get_rate_limiter(request: Request) -> RateLimiter:
    return registry(request).get(RateLimiter)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
CacheDep = Annotated[Cache, Depends(get_cache)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
