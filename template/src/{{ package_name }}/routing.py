"""Walking the app's routes, included routers and all, and marking the public ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

# `openapi_extra=PUBLIC` declares an operation that anyone may call, on purpose. Every other
# operation must depend on an authentication scheme: tests/test_security.py fails for one that
# does neither, so a route cannot ship open by accident.
PUBLIC: dict[str, Any] = {"x-public": True}


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, in matching order."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI 0.16x keeps an included router as one entry pointing at the original router.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """The methods some route answers at `path`, for a 405's Allow header (Starlette's names
    only the first route that matched the path, not the others)."""
    methods: set[str] = set()
    for route in api_routes(routes):
        if route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)
