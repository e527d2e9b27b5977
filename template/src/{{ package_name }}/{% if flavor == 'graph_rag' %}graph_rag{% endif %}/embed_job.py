"""The embedding job: compute the vectors of stored documents and store them.

Listed in the flavor's jobs (components.py), so the API and the worker both know it. The
embedder is named in the job's arguments (the API's EMBEDDER setting when it enqueued), so a
worker configured differently cannot mix vectors of two embedders in one index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..jobs import JobContext, JobKind
from .embed import document_text, embedder_for
from .models import Document, Embedding

EMBED_JOB = "search.embed"
# Documents embedded per round trip.
EMBED_CHUNK = 500


async def embed_job(ctx: JobContext) -> JsonValue:
    ids = [int(i) for i in ctx.arguments["document_ids"]]
    # Documents whose content changed since their vector was computed (absent from jobs
    # enqueued before updates existed).
    replace = {int(i) for i in ctx.arguments.get("replace", [])}
    stored = await embed_documents(ctx.session, ids, str(ctx.arguments["embedder"]), replace)
    return {"embedded": stored}


EMBED_JOB_KIND = JobKind(EMBED_JOB, embed_job, public=False)


async def embed_documents(
    session: AsyncSession,
    document_ids: Sequence[int],
    setting: str,
    replace: Collection[int] = (),
) -> int:
    """Embed the documents that have no vector yet, and those in `replace` again (their
    content changed); how many were stored. Writes through `session`: the caller commits (the
    job runner does, with the job's success).

    A replaced vector gets a new row, not an update of the old one: new rows are what the
    vector index of every process watches for. Whatever order this job and an earlier one of
    the same document run in, the last vector stored is computed from the current text: this
    job is enqueued when the new text commits, so it reads that text.
    """
    embedder = await asyncio.to_thread(embedder_for, setting)  # a model may load from disk
    stored = 0
    for start in range(0, len(document_ids), EMBED_CHUNK):
        chunk = document_ids[start : start + EMBED_CHUNK]
        stale = [i for i in chunk if i in replace]
        if stale:
            await session.execute(delete(Embedding).where(Embedding.document_id.in_(stale)))
        done = set(
            (
                await session.scalars(
                    select(Embedding.document_id).where(Embedding.document_id.in_(chunk))
                )
            ).all()
        )
        rows = (
            await session.execute(
                select(Document.id, Document.title, Document.text)
                .where(Document.id.in_([i for i in chunk if i not in done]))
                .order_by(Document.id)
            )
        ).all()
        if not rows:
            continue
        texts = [document_text(row.title, row.text) for row in rows]
        vectors = await asyncio.to_thread(embedder.embed, texts)
        now = datetime.now(UTC)
        # A document embedded meanwhile (by another delivery) keeps its first vector.
        statement = _insert(session)(Embedding).on_conflict_do_nothing(
            index_elements=[Embedding.document_id]
        )
        await session.execute(
            statement,
            [
                {
                    "document_id": row.id,
                    "embedder": embedder.name,
                    "vector": vector.tobytes(),
                    "created_at": now,
                }
                for row, vector in zip(rows, vectors, strict=True)
            ],
        )
        stored += len(rows)
    return stored


def _insert(session: AsyncSession) -> Any:
    """INSERT with ON CONFLICT, in the dialect of the session's database."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
