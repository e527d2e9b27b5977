"""The search endpoint: HTTP in and out; the ranking is in service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ...ratelimit import rate_limit
from ...resources import registry
from ..auth import caller_key
from .schemas import MAX_K, MAX_QUERY, SearchResult
from .service import SearchEngine

DEGRADED_HEADER = "X-Search-Degraded"

router = APIRouter(tags=["search"])

SEARCH_DESCRIPTION = f"""\
Hybrid search over three signals, each 0 to 1: the vector top-k (FAISS over the stored
embeddings), BM25 over titles and texts, and the graph walk from the entities the query names
(up to SEARCH_GRAPH_DEPTH relations away, default 2, skipping entities mentioned by more than
SEARCH_ENTITY_MAX_DOCUMENTS documents, default 200). A hit's score is their weighted sum
(SEARCH_WEIGHT_VECTOR, SEARCH_WEIGHT_LEXICAL, SEARCH_WEIGHT_GRAPH). When even the best hit
scores below SEARCH_MIN_SCORE there are no hits: a query the documents do not answer gets
none. Each hit carries its score breakdown.

Limits: `q` at most {MAX_QUERY} characters, `k` at most {MAX_K}. `tag` keeps the documents
carrying it, among those the signals found (so fewer than `k` may come back). Each hit shows
its document's tags and metadata.

Fallback: when the vector search takes longer than SEARCH_TIMEOUT seconds (default 0.2) or the
index is still loading, the answer comes from the lexical and graph signals only, with
`"degraded": true`, the reason, and the header `{DEGRADED_HEADER}: <reason>`. When the graph
store is down the answer is 503 with Retry-After."""


@router.get(
    "/search",
    summary="Hybrid graph + vector search",
    description=SEARCH_DESCRIPTION,
    response_model=SearchResult,
    dependencies=[rate_limit("search", per=caller_key)],
    responses={
        401: {"description": "Missing or unknown API key"},
        503: {"description": "The graph store or the database is unavailable"},
    },
)
async def search(
    request: Request,
    response: Response,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY, description="The query")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="Hits to return")] = 10,
    tag: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="Only documents carrying this tag"),
    ] = None,
) -> SearchResult:
    # By type from the registry, not a dependency: this is the flavor's hottest route.
    engine = registry(request).get(SearchEngine)
    result = await engine.search(q, k, tag)
    if result.reason is not None:
        response.headers[DEGRADED_HEADER] = result.reason
    return result
