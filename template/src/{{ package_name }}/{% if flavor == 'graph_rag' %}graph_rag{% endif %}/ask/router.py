"""The answer endpoint: HTTP in and out, as JSON or as server-sent events; the rules are in
service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ...ratelimit import rate_limit
from ...resources import registry
from ..auth import caller_key
from .schemas import MAX_CONTEXT_TOKENS, MAX_K, MAX_QUESTION, MAX_TOKENS, Answer, AskRequest
from .service import Asker

EVENT_STREAM = "text/event-stream"

router = APIRouter(tags=["ask"])

ASK_DESCRIPTION = f"""\
Answers a question from the stored documents. The hybrid search (as `GET /search`) retrieves
the `k` best documents (the graph walked `depth` relations); each gives one passage, its
sentences sharing the most words with the question. The prompt holds the passages and the
graph facts relating their entities, within `context_tokens` (ASK_CONTEXT_TOKENS, default 2000;
tokens are estimated as words and punctuation marks). The generator (GENERATOR: `extractive`,
no model, or an OpenAI-compatible server) writes at most `max_tokens` (ASK_MAX_TOKENS, default
512). The answer cites passages as [n]; `citations` gives each cited passage's document and
character span (`text == document.text[start:end]`), with the facts used, token counts (the
generator's server's own when it sends them, else estimated: `tokens.counted_by`) and timings.

Limits: `question` at most {MAX_QUESTION} characters, `k` at most {MAX_K}, `max_tokens` at most
{MAX_TOKENS}, `context_tokens` 50 to {MAX_CONTEXT_TOKENS}.

Streaming: with `Accept: {EVENT_STREAM}` the answer comes as server-sent events: `token`
events as the generator writes (data: a JSON object whose `text` is the next piece), then one
`done` event carrying the whole answer as JSON (citations, facts, tokens, timings).

Fallback: when the generator times out, fails, is cut off or its circuit breaker is open, the
answer is the retrieved passages with `"degraded": true` and the reason (in a stream: the
`done` event says so after the text sent so far). When the graph store or the database is down
the answer is 503 with Retry-After."""


def sse(event: str, data: Any) -> bytes:
    """One server-sent event. The data is one line of JSON: JSON escapes every line break."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.post(
    "/ask",
    summary="Answer a question from the documents, with citations",
    description=ASK_DESCRIPTION,
    response_model=Answer,
    dependencies=[rate_limit("ask", per=caller_key)],
    responses={
        200: {"content": {EVENT_STREAM: {}}, "description": "The answer (JSON or events)"},
        401: {"description": "Missing or unknown API key"},
        503: {"description": "The graph store or the database is unavailable"},
    },
)
async def ask(request: Request, question: AskRequest) -> Response:
    # By type from the registry, like /search: no per-request dependency chain.
    asker = registry(request).get(Asker)
    # Before any byte is sent, so an outage is still a 503 when the client asked for events.
    prepared = await asker.prepare(question)
    if EVENT_STREAM not in request.headers.get("accept", ""):
        answer = await asker.answer(prepared)
        return Response(answer.model_dump_json(), media_type="application/json")

    async def events() -> AsyncIterator[bytes]:
        # Closed with the response, a client gone midway included: the generator's request too.
        async with aclosing(asker.run(prepared)) as items:
            async for item in items:
                if isinstance(item, Answer):
                    yield sse("done", item.model_dump(mode="json"))
                else:
                    yield sse("token", {"text": item})

    return StreamingResponse(
        events(),
        media_type=EVENT_STREAM,
        # Proxies must pass each event on as it comes (nginx buffers unless told not to).
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
