"""The document rows a caller reads: one by id, or a page of theirs, newest first."""

from __future__ import annotations

from sqlalchemy import ColumnElement, cast, column, exists, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document


async def owned_document(session: AsyncSession, owner: str, document_id: int) -> Document | None:
    return await session.scalar(
        select(Document).where(Document.id == document_id, Document.owner == owner)
    )


async def owned_documents(
    session: AsyncSession, owner: str, before_id: int | None, tag: str | None, limit: int
) -> list[Document]:
    """Up to `limit` of the owner's documents with ids below `before_id`, newest first."""
    query = select(Document).where(Document.owner == owner)
    if before_id is not None:
        query = query.where(Document.id < before_id)
    if tag is not None:
        query = query.where(_has_tag(tag, session.get_bind().dialect.name))
    rows = await session.scalars(query.order_by(Document.id.desc()).limit(limit))
    return list(rows)


def _has_tag(tag: str, dialect: str) -> ColumnElement[bool]:
    """Whether a document carries `tag`. Tags are a JSON array: PostgreSQL tests containment
    on it as jsonb, SQLite looks through json_each; no index serves it, so it filters the
    rows the owner condition selects."""
    if dialect == "postgresql":
        return cast(Document.tags, JSONB).contains([tag])
    values = func.json_each(Document.tags).table_valued("value")
    return exists(select(1).select_from(values).where(column("value") == tag))
