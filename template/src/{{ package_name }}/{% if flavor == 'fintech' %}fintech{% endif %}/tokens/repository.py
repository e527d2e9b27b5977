"""The token rows a user manages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import ApiToken


async def token_by_digest(session: AsyncSession, digest: bytes) -> ApiToken | None:
    return await session.get(ApiToken, digest)


async def tokens_of(session: AsyncSession, user_id: int) -> Sequence[ApiToken]:
    """The user's tokens, oldest first (revoked and expired ones too)."""
    tokens = await session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at)
    )
    return tokens.all()
