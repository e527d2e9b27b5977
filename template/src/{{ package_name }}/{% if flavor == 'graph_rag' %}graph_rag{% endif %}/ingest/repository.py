"""The document rows ingest writes, looks up and deletes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Document
from .schemas import DocumentIn

# Core, not the ORM entity: executemany skips the ORM's per-row bulk-insert bookkeeping.
DOCUMENTS = cast(Table, Document.__table__)


async def stored_ids(
    session: AsyncSession, external_ids: Collection[str], owner: str | None
) -> dict[str, int]:
    """external_id -> id of the owner's documents stored before, among `external_ids`."""
    if not external_ids:
        return {}
    rows = await session.execute(
        select(DOCUMENTS.c.external_id, DOCUMENTS.c.id).where(
            DOCUMENTS.c.owner == owner, DOCUMENTS.c.external_id.in_(external_ids)
        )
    )
    return {str(key): int(document_id) for key, document_id in rows}


async def insert_documents(
    session: AsyncSession, documents: Sequence[DocumentIn], owner: str | None, now: datetime
) -> list[int]:
    """Insert the documents in one batched statement; their ids, in the documents' order."""
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


async def delete(session: AsyncSession, document_id: int) -> None:
    """The row; its entity links, postings and embedding follow (ON DELETE CASCADE)."""
    await session.execute(DOCUMENTS.delete().where(DOCUMENTS.c.id == document_id))
