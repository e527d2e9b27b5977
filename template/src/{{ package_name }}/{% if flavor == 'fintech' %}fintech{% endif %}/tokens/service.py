"""A user's own API tokens: issue, list, revoke.

Rotating a token is issuing a new one, moving the clients to it, then revoking the old one.
A token is shown once, when it is issued; the service keeps only its SHA-256 digest, which is
also the token's id here (it reveals nothing about the token).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from ...cache import Cache
from ...errors import NotFoundError
from ...settings import Settings
from ..auth import digest, issue_token, token_cache_key
from . import repository
from .schemas import IssuedToken, TokenRequest, TokenView


async def issue_own_token(
    session: AsyncSession, settings: Settings, user_id: int, request: TokenRequest
) -> IssuedToken:
    """A new token for the user, expiring after the days asked for, at most
    AUTH_TOKEN_TTL_DAYS."""
    ttl = settings.auth_token_ttl_days
    days = min(request.expires_in_days or ttl, ttl)
    token = await issue_token(session, user_id, request.label, timedelta(days=days))
    await session.commit()
    issued = await repository.token_by_digest(session, digest(token))
    assert issued is not None
    return IssuedToken(**TokenView.of(issued).model_dump(), token=token)


async def list_own_tokens(session: AsyncSession, user_id: int) -> list[TokenView]:
    return [TokenView.of(token) for token in await repository.tokens_of(session, user_id)]


async def revoke_own_token(
    session: AsyncSession, cache: Cache, user_id: int, token_id: str
) -> None:
    """Revoke one of the user's tokens (again: no change) and drop it from the cache, so it
    is refused from now on. NotFoundError when the user has no token with this id."""
    token = await repository.token_by_digest(session, bytes.fromhex(token_id))
    if token is None or token.user_id != user_id:
        raise NotFoundError(f"none of your tokens has the id '{token_id}'")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        await session.commit()
    await cache.invalidate(token_cache_key(token.digest))
