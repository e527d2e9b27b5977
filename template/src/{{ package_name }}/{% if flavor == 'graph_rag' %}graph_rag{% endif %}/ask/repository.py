"""The texts passages are cut from."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document


async def texts(session: AsyncSession, ids: Collection[int]) -> dict[int, tuple[str, str]]:
    """document id -> (title, text), for those that exist."""
    if not ids:
        return {}
    result = await session.execute(
        select(Document.id, Document.title, Document.text).where(Document.id.in_(ids))
    )
    return {int(i): (title, text) for i, title, text in result.all()}
