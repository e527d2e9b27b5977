"""The documents endpoints: HTTP in and out; the work is in service.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ...db import SessionDep
from ...errors import NotFoundError
from ...ratelimit import rate_limit
from ...resources import registry
from ..auth import Owner, caller_key
from ..ingest.service import Ingestor
from .schemas import DocumentPage, DocumentView
from .service import list_documents, read_document

router = APIRouter(prefix="/documents", tags=["documents"])

MAX_ID = 2**31 - 1  # ids are 32-bit integers in every database

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key"}
}


@router.get(
    "",
    summary="Your documents, newest first, a page at a time",
    description="Only the documents stored with your API key. `tag` keeps those carrying it; "
    "`next_cursor`, passed back as `cursor`, gives the next page.",
    responses=_UNAUTHORIZED,
    dependencies=[rate_limit("documents", per=caller_key)],
)
async def get_documents(
    owner: Owner,
    session: SessionDep,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DocumentPage:
    return await list_documents(session, owner, cursor, tag, limit)


@router.get(
    "/{document_id}",
    summary="One of your documents, with its text",
    responses={**_UNAUTHORIZED, 404: {"description": "None of your documents has this id"}},
    dependencies=[rate_limit("documents", per=caller_key)],
)
async def get_document(
    document_id: Annotated[int, Path(ge=1, le=MAX_ID)], owner: Owner, session: SessionDep
) -> DocumentView:
    return await read_document(session, owner, document_id)


@router.delete(
    "/{document_id}",
    summary="Delete one of your documents",
    description="The document, and what storing it added: its entities' mentions and its share "
    "of their relations, its words in the lexical index, and its embedding. Searches stop "
    "finding it at once (a process's vector index drops it at its next rebuild; until then "
    "its vector is skipped).",
    status_code=204,
    responses={**_UNAUTHORIZED, 404: {"description": "None of your documents has this id"}},
    dependencies=[rate_limit("documents", per=caller_key)],
)
async def delete_document(
    document_id: Annotated[int, Path(ge=1, le=MAX_ID)], owner: Owner, request: Request
) -> Response:
    if not await registry(request).get(Ingestor).remove(document_id, owner):
        raise NotFoundError(f"no document with id {document_id}")
    return Response(status_code=204)
