"""The notes job kind: counts the words of a text, submitted through /api/jobs."""

from __future__ import annotations

from pydantic import JsonValue

from ..jobs import JobContext, job

WORD_COUNT = "notes.word_count"


@job(WORD_COUNT, public=True)
async def word_count(ctx: JobContext) -> JsonValue:
    return {"words": len(str(ctx.arguments.get("text", "")).split())}
