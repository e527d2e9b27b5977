"""Reading a caller's documents: one, or a page at a time.

A page's cursor is the id of its last document: the next page holds the documents stored
before it. Unlike an offset, it neither skips nor repeats a document when others are stored
or deleted between two pages.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import NotFoundError
from ..models import Document
from . import repository
from .schemas import DocumentPage, DocumentSummary, DocumentView


def _summary(document: Document) -> DocumentSummary:
    return DocumentSummary(
        id=document.id,
        title=document.title,
        tags=document.tags,
        metadata=document.meta,
        external_id=document.external_id,
        created_at=document.created_at,
    )


async def read_document(session: AsyncSession, owner: str, document_id: int) -> DocumentView:
    """One of the owner's documents; NotFoundError for another owner's too (same answer)."""
    document = await repository.owned_document(session, owner, document_id)
    if document is None:
        raise NotFoundError(f"no document with id {document_id}")
    return DocumentView(**_summary(document).model_dump(), text=document.text)


async def list_documents(
    session: AsyncSession, owner: str, cursor: int | None, tag: str | None, limit: int
) -> DocumentPage:
    rows = await repository.owned_documents(session, owner, cursor, tag, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return DocumentPage(
        documents=[_summary(row) for row in page],
        next_cursor=page[-1].id if more else None,
    )
