"""The base of each flavor's authentication: a dependency that is also an OpenAPI scheme.

FastAPI documents a dependency as a security scheme when it is a `SecurityBase`: the schema
gets `components.securitySchemes` and a `security` requirement on every operation that
depends on it, so /docs has an Authorize button and a client generator knows which calls need
a credential. A subclass implements `__call__(request)`, still one dependency per request.
"""

from __future__ import annotations

from fastapi.openapi.models import HTTPBearer
from fastapi.security.base import SecurityBase


class BearerAuth(SecurityBase):
    """`Authorization: Bearer <credential>`, documented under `scheme_name`."""

    def __init__(self, *, scheme_name: str, description: str, bearer_format: str) -> None:
        self.model = HTTPBearer(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name
