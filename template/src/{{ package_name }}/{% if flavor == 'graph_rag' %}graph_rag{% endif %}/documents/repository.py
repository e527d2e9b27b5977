"""The document rows a caller reads: one by id, or a page of theirs, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, cast, column, exists, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document


async def owned_document(
    session: AsyncSession, owner: str, document_id: int, *, lock: bool = False
) -> Document | None:
    """One of the owner's documents; with `lock`, locked until the transaction ends."""
    query = select(Document).where(Document.id == document_id, Document.owner == owner)
    if lock:
        query = await locking(session, query)
    return await session.scalar(query)


async def locking(session: AsyncSession, query: Select[Any]) -> Select[Any]:
    """`query` made to lock what it reads until the transaction ends, so that two writers of
    one document (two deletes, two updates) take turns and the second sees what the first
    left: PostgreSQL locks the rows it returns (`FOR UPDATE`); SQLite takes its one write lock
    before the read (`BEGIN IMMEDIATE`, so it must come first in the transaction).
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))
        return query
    return query.with_for_update()


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
