"""Ingest: one document, or a batch validated from the raw body in one pass.

Both store the documents, their entities and relations and one embedding job in a single
transaction, then answer 202 with the job id: the vectors are computed by the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import from_json
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database
from ..errors import AppError
from ..jobs.service import Jobs
from ..ratelimit import rate_limit
from ..resources import registry
from ..schemas import RequestModel
from ..settings import Settings
from .auth import Owner, caller_key
from .embed_job import EMBED_JOB
from .extract import Extractor
from .graph import DocumentGraph, GraphStore
from .models import Document

# Core, not the ORM entity: executemany skips the ORM's per-row bulk-insert bookkeeping.
DOCUMENTS = cast(Table, Document.__table__)

MAX_TITLE = 500
MAX_TEXT = 100_000
MAX_TAGS = 32
MAX_TAG = 64
MAX_METADATA_KEYS = 32

Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]
MetadataValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None


class DocumentIn(RequestModel):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    metadata: dict[Annotated[str, StringConstraints(max_length=100)], MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description="Trimmed of surrounding whitespace; a tag that is only whitespace is dropped.",
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your own id for the document. Storing one you stored before (a retry "
        "after a lost answer) stores nothing and answers the stored document's id.",
    )

    @field_validator("tags")
    @classmethod
    def _trimmed(cls, tags: list[str]) -> list[str]:
        # After validation, not before: what the schema allows is accepted, then normalised.
        return [tag.strip() for tag in tags if tag.strip()]


class Accepted(BaseModel):
    document_id: int
    job_id: str | None = Field(description="The embedding job; null when nothing was stored.")
    created: bool = Field(description="False when this external_id was stored before.")


class ItemError(BaseModel):
    index: int
    field: str
    message: str
    type: str


class BatchAccepted(BaseModel):
    accepted: int
    document_ids: list[int] = Field(description="In the order of the valid items.")
    job_id: str | None = Field(
        description="One embedding job for the documents stored now; null when there were none."
    )
    created: int = Field(description="Documents stored now; the others had been stored before.")
    errors: list[ItemError] = Field(description="Every invalid item, by index and field.")


class PayloadTooLargeError(AppError):
    status_code = 413
    code = "payload_too_large"


class BatchInvalidError(AppError):
    status_code = 422
    code = "validation_error"


class Ingestor:
    """Built once in the lifespan; the ingest endpoints find it by type in the app's registry."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        jobs: Jobs,
        graph: GraphStore,
        extractor: Extractor,
    ) -> None:
        self.settings = settings
        self._database = database
        self._jobs = jobs
        self._graph = graph
        self._extractor = extractor
        self.max_items = settings.ingest_max_batch
        self.batch = TypeAdapter(list[DocumentIn])
        self.document = TypeAdapter(DocumentIn)

    async def store(
        self, documents: Sequence[DocumentIn], owner: str | None = None
    ) -> tuple[list[int], str | None, int]:
        """Store the documents their owner has not stored yet, with their graph and one
        embedding job, in one transaction. Returns every document's id (in order), the job's id
        (None when nothing was new) and how many were new. A document whose `external_id` the
        owner stored before is not stored again: a retried ingest is a no-op."""
        extractions = await asyncio.to_thread(self._extract, documents)
        try:
            return await self._store(documents, extractions, owner)
        except IntegrityError:
            # A concurrent retry stored some of them first (the unique index said so): what
            # it stored is found this time.
            return await self._store(documents, extractions, owner)

    async def _store(
        self, documents: Sequence[DocumentIn], extractions: list[Any], owner: str | None
    ) -> tuple[list[int], str | None, int]:
        now = datetime.now(UTC)
        async with self._database.session() as session:
            known = await self._stored_ids(session, documents, owner)
            new: list[int] = []  # positions of the documents to store now
            for position, document in enumerate(documents):
                key = document.external_id
                if key is None or key not in known:
                    new.append(position)
                    if key is not None:
                        known[key] = -1  # the same id twice in one batch: stored once
            if not new:
                return [known[d.external_id or ""] for d in documents], None, 0
            # PostgreSQL returns the ids in parameter order from batched statements. SQLite
            # would need one INSERT per row for that; batched, it gives each new row the
            # largest rowid so far plus one (sqlite.org/autoinc.html), so the ids come in
            # parameter order once sorted.
            postgres = session.get_bind().dialect.name == "postgresql"
            result = await session.execute(
                insert(DOCUMENTS).returning(DOCUMENTS.c.id, sort_by_parameter_order=postgres),
                [
                    {
                        "title": documents[p].title,
                        "text": documents[p].text,
                        "metadata": documents[p].metadata,
                        "tags": documents[p].tags,
                        "created_at": now,
                        "owner": owner,
                        "external_id": documents[p].external_id,
                    }
                    for p in new
                ],
            )
            new_ids = [int(i) for i in result.scalars()]
            if not postgres:
                new_ids.sort()
            ids: list[int | None] = [None] * len(documents)
            for position, document_id in zip(new, new_ids, strict=True):
                ids[position] = document_id
                key = documents[position].external_id
                if key is not None:
                    known[key] = document_id
            await self._graph.add(
                session,
                [DocumentGraph(i, extractions[p]) for p, i in zip(new, new_ids, strict=True)],
            )
            # Commits the documents, the graph and the job together.
            job = await self._jobs.submit(
                session,
                EMBED_JOB,
                {"document_ids": new_ids, "embedder": self.settings.embedder},
                owner=owner,
            )
        every = [
            known[d.external_id or ""] if i is None else i
            for i, d in zip(ids, documents, strict=True)
        ]
        return every, job.id, len(new)

    @staticmethod
    async def _stored_ids(
        session: AsyncSession, documents: Sequence[DocumentIn], owner: str | None
    ) -> dict[str, int]:
        """external_id -> id of the owner's documents stored before, among these."""
        keys = {d.external_id for d in documents if d.external_id is not None}
        if not keys:
            return {}
        rows = await session.execute(
            select(DOCUMENTS.c.external_id, DOCUMENTS.c.id).where(
                DOCUMENTS.c.owner == owner, DOCUMENTS.c.external_id.in_(keys)
            )
        )
        return {str(key): int(document_id) for key, document_id in rows}

    def _extract(self, documents: Sequence[DocumentIn]) -> list[Any]:
        return [self._extractor.extract(d.title, d.text, d.tags) for d in documents]

    def validate_batch(self, body: bytes) -> tuple[list[tuple[int, DocumentIn]], list[ItemError]]:
        """(index, document) for every valid item and every error, from one parse of `body`."""
        try:
            documents = self.batch.validate_json(body)
        except ValidationError as exc:
            return self._partial(body, exc)
        self._check_count(len(documents))
        return list(enumerate(documents)), []

    def _partial(
        self, body: bytes, exc: ValidationError
    ) -> tuple[list[tuple[int, DocumentIn]], list[ItemError]]:
        errors: list[ItemError] = []
        bad: set[int] = set()
        for error in exc.errors(include_url=False):
            location = error["loc"]
            if not location or not isinstance(location[0], int):
                # Not a list, or not JSON at all: nothing to salvage.
                raise BatchInvalidError(
                    f"the body must be a JSON array of documents: {error['msg']}",
                    extra={
                        "errors": [
                            {"field": "body", "message": error["msg"], "type": error["type"]}
                        ]
                    },
                ) from exc
            bad.add(location[0])
            errors.append(
                ItemError(
                    index=location[0],
                    field=".".join(str(part) for part in location[1:]) or "item",
                    message=error["msg"],
                    type=error["type"],
                )
            )
        # The body parsed as a list: validate only the good items again. The same parser as
        # `validate_json` (orjson refuses the NaN that made an item invalid).
        items: list[Any] = from_json(body)
        self._check_count(len(items))
        valid = [
            (index, self.document.validate_python(item))
            for index, item in enumerate(items)
            if index not in bad
        ]
        return valid, errors

    def _check_count(self, count: int) -> None:
        if count > self.max_items:
            raise PayloadTooLargeError(
                f"at most {self.max_items} documents per batch (INGEST_MAX_BATCH), got {count}"
            )
        if count == 0:
            raise BatchInvalidError("the batch is empty")


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
        "`/api/jobs/{job_id}`). The document is searchable by graph and keywords at once, and "
        "by vector within VECTOR_REFRESH_INTERVAL seconds of the job finishing."
    ),
    response_model=Accepted,
    dependencies=[rate_limit("ingest", per=caller_key)],
    responses={401: {"description": "Missing or unknown API key"}},
)
async def create_document(
    document: DocumentIn, owner: Owner, request: Request, response: Response
) -> Accepted:
    (document_id,), job_id, created = await _ingestor(request).store([document], owner)
    if job_id is not None:
        response.headers["Location"] = f"/api/jobs/{job_id}"
    return Accepted(document_id=document_id, job_id=job_id, created=created == 1)


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
    body = await request.body()
    valid, errors = ingestor.validate_batch(body)
    if not valid:
        raise BatchInvalidError(
            f"no valid document in the batch ({len(errors)} errors)",
            extra={"errors": [error.model_dump() for error in errors]},
        )
    ids, job_id, created = await ingestor.store([document for _, document in valid], owner)
    if errors:
        response.status_code = 207
    if job_id is not None:
        response.headers["Location"] = f"/api/jobs/{job_id}"
    return BatchAccepted(
        accepted=len(ids), document_ids=ids, job_id=job_id, created=created, errors=errors
    )
