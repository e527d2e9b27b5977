"""Bearer API keys: one dependency, no chain.

API_KEY_DIGESTS maps the SHA-256 hex digest of each key to a client id; only digests are
configured, never keys. A request with a known key is its client's (rate limits count per
client). With no digests configured the API is open (and rate limits count per client address):
allowed in development, with a warning at start-up; in production the service refuses to start.

    python -c "import hashlib, secrets; k = secrets.token_urlsafe(32); \
print(k, hashlib.sha256(k.encode()).hexdigest())"
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from ..deps import settings_of
from ..errors import UnauthorizedError
from ..ratelimit import client_address
from ..security import BearerAuth
from ..settings import Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


class ApiKeyAuth(BearerAuth):
    async def __call__(self, request: Request) -> str | None:
        """The client id of the request's API key; None while the API is open (no
        API_KEY_DIGESTS, refused in production)."""
        settings = settings_of(request)
        if not settings.api_key_digests:
            return None
        key = self.credential(request)
        if key is None:
            raise await self.failed(
                request,
                UnauthorizedError(
                    "an API key is required: Authorization: Bearer <key>", headers=CHALLENGE
                ),
            )
        client = settings.api_key_digests.get(hashlib.sha256(key.encode()).hexdigest())
        if client is None:
            raise await self.failed(
                request, UnauthorizedError("unknown API key", headers=CHALLENGE)
            )
        return client


authenticate = ApiKeyAuth(
    scheme_name="ApiKey",
    description="An API key whose SHA-256 digest is in API_KEY_DIGESTS.",
    bearer_format="API key",
)


Client = Annotated[str | None, Depends(authenticate)]


async def job_owner(client: Client) -> str:
    """Who owns the jobs a request submits: its client, or "anonymous" while the API is open
    (then every caller is the same anonymous owner)."""
    return "anonymous" if client is None else f"client:{client}"


async def caller_key(client: Client, request: Request) -> str:
    """Who a request comes from, as rate limits count it (`rate_limit(..., per=caller_key)`):
    its client, or its address while the API is open."""
    return client_address(request) if client is None else f"client:{client}"


Owner = Annotated[str, Depends(job_owner)]


def open_api_problem(settings: Settings) -> str | None:
    if settings.api_key_digests:
        return None
    return (
        "API_KEY_DIGESTS is empty, so anyone can ingest and search: set it to the SHA-256 "
        "digests of your API keys (see .env.example)"
    )
