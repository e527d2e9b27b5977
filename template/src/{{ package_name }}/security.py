"""The base of each flavor's authentication: a dependency that is also an OpenAPI scheme, and
failed attempts limited per client address.

FastAPI documents a dependency as a security scheme when it is a `SecurityBase`: the schema
gets `components.securitySchemes` and a `security` requirement on every operation that
depends on it, so /docs has an Authorize button and a client generator knows which calls need
a credential. A subclass implements `__call__(request)`, still one dependency per request.

Every failed authentication counts against RATE_LIMIT_AUTH_FAILURES for the client's address;
past it the answer is 429, and a subclass that looks credentials up in the database asks
`exhausted` first, so guessing costs the guesser, not the database.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.openapi.models import HTTPBearer
from fastapi.security.base import SecurityBase

from .errors import AppError, UnauthorizedError
from .ratelimit import RateLimiter, client_address
from .resources import registry


class BearerAuth(SecurityBase):
    """`Authorization: Bearer <credential>`, documented under `scheme_name`."""

    def __init__(self, *, scheme_name: str, description: str, bearer_format: str) -> None:
        self.model = HTTPBearer(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name

    @staticmethod
    def credential(request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        value = value.strip()
        return value if scheme.lower() == "bearer" and value else None

    @staticmethod
    async def exhausted(request: Request) -> None:
        """Raise the 429 if this client address has failed too often; counts nothing."""
        limiter = registry(request).get(RateLimiter)
        refusal = await limiter.failures_exhausted(client_address(request))
        if refusal is not None:
            raise refusal

    @staticmethod
    async def failed(request: Request, error: UnauthorizedError) -> AppError:
        """What to raise for a failed authentication: `error`, counted against the client's
        address, or the 429 once the address is over its limit."""
        limiter = registry(request).get(RateLimiter)
        refusal = await limiter.count_failure(client_address(request))
        return error if refusal is None else refusal
