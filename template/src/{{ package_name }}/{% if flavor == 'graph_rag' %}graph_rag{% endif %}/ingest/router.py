"""The ingest endpoints: HTTP in and out; the rules are in service.py."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...ratelimit import rate_limit
from ...resources import registry
from ..auth import Owner, caller_key
from .schemas import (
    MAX_METADATA_KEYS,
    MAX_TAG,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TITLE,
    Accepted,
    BatchAccepted,
    DocumentIn,
)
from .service import Ingestor

router = APIRouter(tags=["ingest"])

BATCH_DESCRIPTION = """\
A JSON array of documents (the `DocumentIn` schema), at most INGEST_MAX_BATCH items (default
1000) and INGEST_MAX_BODY_BYTES bytes (default 20 MiB).

The body is validated in one pass from its raw bytes. Valid items are stored in one transaction
with one embedding job for the batch; every invalid item is reported by index and field:

- 202: every item was valid;
- 207: some items were invalid (`errors`), the valid ones were stored;
- 422: no item was valid, or the body is not a JSON array.
"""


def _ingestor(request: Request) -> Ingestor:
    return registry(request).get(Ingestor)


@router.post(
    "/documents",
    status_code=202,
    summary="Store one document and enqueue its embedding",
    description=(
        f"Title up to {MAX_TITLE} characters, text up to {MAX_TEXT}, up to {MAX_TAGS} tags of "
        f"{MAX_TAG} characters and {MAX_METADATA_KEYS} metadata keys. Entities and relations "
        "are extracted at once; the embedding is computed by a job (follow it at "
        "`/api/jobs/{job_id}`). The document is searchable by its words and entities at once, and "
        "by vector within VECTOR_REFRESH_INTERVAL seconds of the job finishing."
    ),
    response_model=Accepted,
    dependencies=[rate_limit("ingest", per=caller_key)],
    responses={401: {"description": "Missing or unknown API key"}},
)
async def create_document(
    document: DocumentIn, owner: Owner, request: Request, response: Response
) -> Accepted:
    stored = await _ingestor(request).store([document], owner)
    if stored.job_id is not None:
        response.headers["Location"] = f"/api/jobs/{stored.job_id}"
    (document_id,) = stored.document_ids
    return Accepted(
        document_id=document_id,
        job_id=stored.job_id,
        created=stored.created == 1,
        updated=stored.updated == 1,
    )


@router.post(
    "/ingest/batch",
    status_code=202,
    summary="Store a batch of documents",
    description=BATCH_DESCRIPTION,
    response_model=BatchAccepted,
    dependencies=[rate_limit("ingest", per=caller_key)],
    responses={
        207: {"model": BatchAccepted, "description": "Some items were invalid"},
        401: {"description": "Missing or unknown API key"},
        413: {"description": "Body or item count over the limit"},
        422: {"description": "No valid item"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/DocumentIn"},
                        "minItems": 1,
                    }
                }
            },
        }
    },
)
async def ingest_batch(owner: Owner, request: Request, response: Response) -> BatchAccepted:
    ingestor = _ingestor(request)
    # The size is capped by the router (INGEST_MAX_BODY_BYTES): 413 before it is all read.
    documents, errors = ingestor.validate_batch(await request.body())
    stored = await ingestor.store(documents, owner)
    if errors:
        response.status_code = 207
    if stored.job_id is not None:
        response.headers["Location"] = f"/api/jobs/{stored.job_id}"
    return BatchAccepted(
        accepted=len(stored.document_ids),
        document_ids=stored.document_ids,
        job_id=stored.job_id,
        created=stored.created,
        updated=stored.updated,
        errors=errors,
    )
