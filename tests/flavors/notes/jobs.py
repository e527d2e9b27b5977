"""The notes job kind: counts the words of a text, submitted through /api/jobs."""

from __future__ import annotations

from pydantic import JsonValue

from ..jobs import JobContext, JobKind

WORD_COUNT = "notes.word_count"


async def word_count(ctx: JobContext) -> JsonValue:
    return {"words": len(str(ctx.arguments.get("text", "")).split())}


WORD_COUNT_KIND = JobKind(WORD_COUNT, word_count, public=True)
