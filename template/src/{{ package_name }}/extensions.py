"""This project's own routers and resources: the template creates this module once.

`copier update` never changes this file (copier.yml lists it in `_skip_if_exists`), so what
the service gains beyond the template goes here rather than into components.py, which a
template release may rewrite:

- `routers()`: your APIRouters, matched after the template's, in the order listed.
- `resources(settings)`: your long-lived resources (see resources.py), opened after the
  template's and closed before them. A handler reaches one by its type:
  `registry(request).get(YourResource)`, or a dependency declared like those in deps.py.
"""

from __future__ import annotations

from fastapi import APIRouter

from .resources import Resource
from .settings import Settings


def routers() -> list[APIRouter]:
    return []


def resources(settings: Settings) -> list[Resource]:
    return []
