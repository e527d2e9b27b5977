"""The document rows ingest writes, looks up, updates and deletes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..documents.repository import locking
from ..models import Document
from .schemas import DocumentIn

# Core, not the ORM entity: executemany skips the ORM's per-row bulk-insert bookkeeping.
DOCUMENTS = cast(Table, Document.__table__)


class StoredDocument(NamedTuple):
    id: int
    title: str
    text: str
    metadata: dict[str, Any]
    tags: list[str]

    def same_as(self, document: DocumentIn) -> bool:
        return (self.title, self.text, self.metadata, self.tags) == (
            document.title,
            document.text,
            document.metadata,
            document.tags,
        )


async def stored_documents(
    session: AsyncSession, external_ids: Collection[str], owner: str | None
) -> dict[str, StoredDocument]:
    """external_id -> the owner's document stored before, among `external_ids`; locked until
    the transaction ends, so that two ingests updating one document take turns."""
    if not external_ids:
        return {}
    query = (
        select(
            DOCUMENTS.c.external_id,
            DOCUMENTS.c.id,
            DOCUMENTS.c.title,
            DOCUMENTS.c.text,
            DOCUMENTS.c.metadata,
            DOCUMENTS.c.tags,
        )
        .where(DOCUMENTS.c.owner == owner, DOCUMENTS.c.external_id.in_(external_ids))
        .order_by(DOCUMENTS.c.id)  # locked in one order: two batches never deadlock
    )
    rows = await session.execute(await locking(session, query))
    return {str(row.external_id): StoredDocument(*row[1:]) for row in rows}


async def insert_documents(
    session: AsyncSession, documents: Sequence[DocumentIn], owner: str | None, now: datetime
) -> list[int]:
    """Insert the documents in one batched statement; their ids, in the documents' order."""
    if not documents:
        return []
    # PostgreSQL returns the ids in parameter order from batched statements. SQLite would
    # need one INSERT per row for that; batched, it gives each new row the largest rowid so
    # far plus one (sqlite.org/autoinc.html), so the ids come in parameter order once sorted.
    postgres = session.get_bind().dialect.name == "postgresql"
    result = await session.execute(
        insert(DOCUMENTS).returning(DOCUMENTS.c.id, sort_by_parameter_order=postgres),
        [
            {
                "title": document.title,
                "text": document.text,
                "metadata": document.metadata,
                "tags": document.tags,
                "created_at": now,
                "owner": owner,
                "external_id": document.external_id,
            }
            for document in documents
        ],
    )
    ids = [int(i) for i in result.scalars()]
    return ids if postgres else sorted(ids)


async def update_documents(
    session: AsyncSession, documents: Sequence[tuple[int, DocumentIn]]
) -> None:
    """Give stored documents (by id) new content; their id, owner, external id and creation
    time stay."""
    if not documents:
        return
    await session.execute(
        DOCUMENTS.update()
        .where(DOCUMENTS.c.id == bindparam("document_id"))
        .values(
            title=bindparam("new_title"),
            text=bindparam("new_text"),
            metadata=bindparam("new_metadata"),
            tags=bindparam("new_tags"),
        ),
        [
            {
                "document_id": document_id,
                "new_title": document.title,
                "new_text": document.text,
                "new_metadata": document.metadata,
                "new_tags": document.tags,
            }
            for document_id, document in documents
        ],
    )


async def delete(session: AsyncSession, document_id: int) -> None:
    """The row; its entity links, postings and embedding follow (ON DELETE CASCADE)."""
    await session.execute(DOCUMENTS.delete().where(DOCUMENTS.c.id == document_id))
