"""The rows a search answer shows: each hit's title and the start of its text."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document

SNIPPET = 240


async def titles_and_snippets(
    session: AsyncSession, ids: Collection[int]
) -> dict[int, tuple[str, str]]:
    """document id -> (title, the first SNIPPET characters of its text), for those that exist."""
    if not ids:
        return {}
    result = await session.execute(
        select(Document.id, Document.title, func.substr(Document.text, 1, SNIPPET)).where(
            Document.id.in_(ids)
        )
    )
    return {int(i): (title, snippet) for i, title, snippet in result.all()}
