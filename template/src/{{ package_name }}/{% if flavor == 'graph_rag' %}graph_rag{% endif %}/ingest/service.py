"""The ingest rules: validate, extract, store once per external id, enqueue the embedding.

Documents, their entities and relations, their lexical index and one embedding job are
stored in a single transaction; the vectors are computed by the worker. A document whose
`external_id` its owner stored before is updated in place when its content differs (same id;
its entities, relations and words replaced, its vector recomputed) and left alone when it is
the same, so a retried ingest is a no-op.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...db import Database
from ...errors import AppError
from ...jobs.service import Jobs
from ...settings import Settings
from ..documents.repository import owned_document
from ..embed_job import EMBED_JOB
from ..extract import Extraction, Extractor
from ..graph import DocumentGraph, GraphStore
from ..lexical import DocumentTerms, LexicalIndex
from . import repository
from .repository import StoredDocument
from .schemas import DocumentIn, ItemError


class PayloadTooLargeError(AppError):
    status_code = 413
    code = "payload_too_large"


class BatchInvalidError(AppError):
    status_code = 422
    code = "validation_error"


class Stored(NamedTuple):
    """What an ingest stored."""

    document_ids: list[int]  # every document's id, in order (stored now or before)
    job_id: str | None  # the embedding job; None when nothing was new or changed
    created: int  # how many were stored now
    updated: int  # how many stored before got new content


class _Extracted(NamedTuple):
    graph: Extraction
    terms: Counter[str]


class Ingestor:
    """Built once in the lifespan; the ingest endpoints find it by type in the app's registry."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        jobs: Jobs,
        graph: GraphStore,
        lexical: LexicalIndex,
        extractor: Extractor,
    ) -> None:
        self.settings = settings
        self._database = database
        self._jobs = jobs
        self._graph = graph
        self._lexical = lexical
        self._extractor = extractor
        self.max_items = settings.ingest_max_batch
        self.batch = TypeAdapter(list[DocumentIn])
        self.document = TypeAdapter(DocumentIn)

    async def store(self, documents: Sequence[DocumentIn], owner: str | None = None) -> Stored:
        """Store the documents their owner has not stored yet and update those whose content
        changed, with their graph and one embedding job, in one transaction."""
        extractions = await asyncio.to_thread(self._extract, documents)
        try:
            return await self._store(documents, extractions, owner)
        except IntegrityError:
            # A concurrent retry stored some of them first (the unique index said so): what
            # it stored is found this time.
            return await self._store(documents, extractions, owner)

    async def _store(
        self, documents: Sequence[DocumentIn], extractions: list[_Extracted], owner: str | None
    ) -> Stored:
        async with self._database.session() as session:
            keys = {d.external_id for d in documents if d.external_id is not None}
            known = await repository.stored_documents(session, keys, owner)
            id_of = {key: document.id for key, document in known.items()}
            new: list[int] = []  # positions of the documents to store now
            changed: list[tuple[int, StoredDocument]] = []  # and of those to update
            seen: set[str] = set()
            for position, document in enumerate(documents):
                key = document.external_id
                if key is not None:
                    if key in seen:
                        continue  # the same id twice in one batch: the first one counts
                    seen.add(key)
                before = None if key is None else known.get(key)
                if before is None:
                    new.append(position)
                elif not before.same_as(document):
                    changed.append((position, before))
            if not new and not changed:
                return Stored([id_of[d.external_id or ""] for d in documents], None, 0, 0)
            new_ids = await repository.insert_documents(
                session, [documents[p] for p in new], owner, datetime.now(UTC)
            )
            ids: list[int | None] = [None] * len(documents)
            for position, document_id in zip(new, new_ids, strict=True):
                ids[position] = document_id
                key = documents[position].external_id
                if key is not None:
                    id_of[key] = document_id
            changed_ids = await self._unindex(session, [before for _, before in changed])
            await repository.update_documents(
                session, [(before.id, documents[p]) for p, before in changed]
            )
            indexed = [*zip(new, new_ids, strict=True), *((p, b.id) for p, b in changed)]
            await self._graph.add(
                session, [DocumentGraph(i, extractions[p].graph) for p, i in indexed]
            )
            await self._lexical.add(
                session, [DocumentTerms(i, extractions[p].terms) for p, i in indexed]
            )
            # Commits the documents, the graph and the job together.
            job = await self._jobs.submit(
                session,
                EMBED_JOB,
                {
                    "document_ids": [*new_ids, *changed_ids],
                    "embedder": self.settings.embedder,
                    "replace": changed_ids,
                },
                owner=owner,
            )
        every = [
            id_of[d.external_id or ""] if i is None else i
            for i, d in zip(ids, documents, strict=True)
        ]
        return Stored(every, job.id, len(new), len(changed))

    async def _unindex(self, session: AsyncSession, documents: list[StoredDocument]) -> list[int]:
        """Take back what storing the documents' current content added to the graph and the
        lexical index (their rows stay); their ids."""
        if not documents:
            return []
        # The extractor is deterministic: what it finds now is what was stored.
        extractions = await asyncio.to_thread(
            lambda: [self._extractor.extract(d.title, d.text, d.tags) for d in documents]
        )
        ids = [document.id for document in documents]
        await self._graph.remove(
            session, [DocumentGraph(i, e) for i, e in zip(ids, extractions, strict=True)]
        )
        await self._lexical.remove(session, ids)
        return ids

    async def remove(self, document_id: int, owner: str) -> bool:
        """Delete one of the owner's documents, and what storing it added: its entities'
        mentions and its share of their relations, its words in the lexical index, its
        embedding. False when the owner has no such document."""
        async with self._database.session() as session:
            document = await owned_document(session, owner, document_id, lock=True)
            if document is None:
                return False
            stored = StoredDocument(
                document.id, document.title, document.text, document.meta, document.tags
            )
            await self._unindex(session, [stored])
            await repository.delete(session, document.id)
            await session.commit()
        self._lexical.removed()
        return True

    def _extract(self, documents: Sequence[DocumentIn]) -> list[_Extracted]:
        analyzer = self._lexical.analyzer
        return [
            _Extracted(
                self._extractor.extract(d.title, d.text, d.tags), analyzer.document(d.title, d.text)
            )
            for d in documents
        ]

    def validate_batch(self, body: bytes) -> tuple[list[DocumentIn], list[ItemError]]:
        """Every valid document and every invalid item's errors, from one parse of `body`.
        Raises BatchInvalidError when nothing is valid, PayloadTooLargeError over the limit."""
        try:
            documents = self.batch.validate_json(body)
        except ValidationError as exc:
            documents, errors = self._partial(body, exc)
        else:
            self._check_count(len(documents))
            errors = []
        if not documents:
            raise BatchInvalidError(
                f"no valid document in the batch ({len(errors)} errors)",
                extra={"errors": [error.model_dump() for error in errors]},
            )
        return documents, errors

    def _partial(
        self, body: bytes, exc: ValidationError
    ) -> tuple[list[DocumentIn], list[ItemError]]:
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
            self.document.validate_python(item)
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
