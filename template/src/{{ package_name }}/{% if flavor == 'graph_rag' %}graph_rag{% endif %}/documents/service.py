"""Reading a caller's documents: one, or a page at a time behind an opaque cursor."""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import AppError, NotFoundError
from ..models import Document
from . import repository
from .schemas import DocumentPage, DocumentSummary, DocumentView


class InvalidCursorError(AppError):
    status_code = 422
    code = "validation_error"

    def __init__(self) -> None:
        detail = "cursor is not one this API gave out"
        error = {"field": "query.cursor", "message": detail, "type": "invalid_cursor"}
        super().__init__(detail, extra={"errors": [error]})


def encode_cursor(document_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{document_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor stands for; InvalidCursorError for anything this API did not give."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError() from None
    prefix, _, number = text.partition(":")
    if prefix != "id" or not number.isdigit() or not 0 < int(number) <= 2**63 - 1:
        raise InvalidCursorError()
    return int(number)


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
    session: AsyncSession, owner: str, cursor: str | None, tag: str | None, limit: int
) -> DocumentPage:
    before = decode_cursor(cursor) if cursor is not None else None
    rows = await repository.owned_documents(session, owner, before, tag, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return DocumentPage(
        documents=[_summary(row) for row in page],
        next_cursor=encode_cursor(page[-1].id) if more else None,
    )
