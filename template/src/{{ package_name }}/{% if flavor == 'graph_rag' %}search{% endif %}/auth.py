"""Bearer API keys: one dependency, no chain.

API_KEY_DIGESTS maps the SHA-256 hex digest of each key to a client id; only digests are
configured, never keys. A request with a known key gets `request.state.user_id` = its client
id (the per-user rate limit counts on it). With no digests configured the API is open and the
rate limit counts per client address.

    python -c "import hashlib, secrets; k = secrets.token_urlsafe(32); \
print(k, hashlib.sha256(k.encode()).hexdigest())"
"""

from __future__ import annotations

import hashlib

from fastapi import Request

from ..errors import UnauthorizedError
from ..settings import Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


async def authenticate(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if not settings.api_key_digests:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise UnauthorizedError(
            "an API key is required: Authorization: Bearer <key>", headers=CHALLENGE
        )
    client = settings.api_key_digests.get(hashlib.sha256(key.strip().encode()).hexdigest())
    if client is None:
        raise UnauthorizedError("unknown API key", headers=CHALLENGE)
    request.state.user_id = client
