"""The rows a search answer shows: title, the start of the text, tags and metadata."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document

SNIPPET = 240


@dataclass(frozen=True, slots=True)
class Shown:
    title: str
    snippet: str
    tags: list[str]
    metadata: dict[str, Any]


async def shown(session: AsyncSession, ids: Collection[int]) -> dict[int, Shown]:
    """document id -> what its hit shows (the first SNIPPET characters of its text), for
    those that exist."""
    if not ids:
        return {}
    result = await session.execute(
        select(
            Document.id,
            Document.title,
            func.substr(Document.text, 1, SNIPPET),
            Document.tags,
            Document.meta,
        ).where(Document.id.in_(ids))
    )
    return {
        int(i): Shown(title, snippet, list(tags or []), dict(meta or {}))
        for i, title, snippet, tags, meta in result.all()
    }
