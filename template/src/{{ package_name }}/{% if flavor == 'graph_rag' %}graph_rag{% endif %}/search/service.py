"""Hybrid search: vector top-k, expanded through the graph, merged and re-ranked.

`SearchEngine` is built once in the lifespan; the endpoint finds it by type in the app's
registry, so its only dependencies are authentication and the rate limit: no per-request
dependency chain on the hot path.

Scores, each in [0, 1], per hit:
- vector: cosine similarity of the query and the document;
- keyword: share of the query's words the entities the document mentions cover (capped at 1);
- graph: 1 / (1 + hops) from the entities the query names.
The total weighs them by `schemas.WEIGHTS` (`DEGRADED_WEIGHTS` when the answer is degraded).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import Counter

from ...db import Database
from ...observability import Metrics
from ...settings import Settings
from ..extract import Extractor
from ..graph import GraphStore
from ..vectors import IndexNotReadyError, VectorIndex
from . import repository
from .schemas import DEGRADED_WEIGHTS, WEIGHTS, Hit, ScoreBreakdown, SearchResult

logger = logging.getLogger(__name__)

# Vector candidates fetched per requested hit: the graph re-ranks a wider set than k.
OVERFETCH = 3


@dataclass(slots=True)
class _Candidate:
    vector: float = 0.0
    keyword: float = 0.0
    graph: float = 0.0
    hops: int | None = None


class SearchEngine:
    name = "search"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        vectors: VectorIndex,
        graph: GraphStore,
        extractor: Extractor,
        metrics: Metrics,
    ) -> None:
        self._database = database
        self.vectors = vectors
        self.graph = graph
        self.extractor = extractor
        self.timeout = settings.search_timeout
        self.depth = settings.search_graph_depth
        self.max_documents = settings.search_entity_max_documents
        self._degraded = Counter(
            "search_degraded_total",
            "Searches answered from the graph only, by reason.",
            ("reason",),
            registry=metrics.registry,
        )

    async def search(self, query: str, k: int, tag: str | None = None) -> SearchResult:
        """The k best documents for `query` (only those carrying `tag`, when given). Raises
        ServiceUnavailableError when the graph store or the database is down: there is no
        answer without the graph (the vector index alone degrades the answer instead)."""
        async with self._database.translating():
            return await self._search(query, k, tag)

    async def _search(self, query: str, k: int, tag: str | None) -> SearchResult:
        keys = self.extractor.query_keys(query)
        vector_hits, reason = await self._vector_search(query, k * OVERFETCH)
        # The graph walks from the entities the query names, and only those: seeded from the
        # vector hits' entities too, it gave documents that share nothing with the query a
        # graph score (and measured worse on every class of bench/bench_relevance.py).
        limit = k * OVERFETCH * 4
        keyword, reached = await asyncio.gather(
            self.keyword_signal(keys, limit), self.graph_signal(keys, limit)
        )

        candidates: dict[int, _Candidate] = {}
        for document_id, similarity in vector_hits:
            if similarity > 0:
                candidates.setdefault(document_id, _Candidate()).vector = similarity
        for document_id, share in keyword.items():
            candidates.setdefault(document_id, _Candidate()).keyword = share
        for document_id, hops in reached.items():
            candidate = candidates.setdefault(document_id, _Candidate())
            candidate.graph, candidate.hops = 1.0 / (1 + hops), hops

        documents: dict[int, repository.Shown] | None = None
        if tag is not None:  # among the candidates the signals found, read once for both
            documents = await self._documents(list(candidates))
            candidates = {
                i: c for i, c in candidates.items() if i in documents and tag in documents[i].tags
            }

        weights = DEGRADED_WEIGHTS if reason else WEIGHTS
        ranked = sorted(
            candidates.items(),
            key=lambda item: (-self._total(item[1], weights), item[0]),
        )[:k]
        if documents is None:
            documents = await self._documents([document_id for document_id, _ in ranked])
        hits = [
            Hit(
                document_id=document_id,
                title=documents[document_id].title,
                snippet=documents[document_id].snippet,
                tags=documents[document_id].tags,
                metadata=documents[document_id].metadata,
                score=round(self._total(candidate, weights), 6),
                scores=ScoreBreakdown(
                    vector=round(candidate.vector, 6),
                    keyword=round(candidate.keyword, 6),
                    graph=round(candidate.graph, 6),
                ),
                hops=candidate.hops,
            )
            for document_id, candidate in ranked
            if document_id in documents  # stores may briefly disagree after a failed write
        ]
        return SearchResult(query=query, degraded=reason is not None, reason=reason, hits=hits)

    async def keyword_signal(self, keys: list[str], limit: int) -> dict[int, float]:
        """Documents naming the query's entities -> the share of the query's words those
        entities cover. A document naming the whole query as one entity ("Grace Hopper")
        covers every word, as much as one naming each word apart; overlapping keys cannot
        push it past 1."""
        words = sum(1 for key in keys if " " not in key) or 1
        matched = await self.graph.mentions(keys, limit)
        return {document_id: min(1.0, count / words) for document_id, count in matched.items()}

    async def graph_signal(self, keys: list[str], limit: int) -> dict[int, int]:
        """Documents the graph walk reaches from the query's entities -> hops."""
        return await self.graph.expand(keys, [], self.depth, limit, self.max_documents)

    async def _vector_search(
        self, query: str, k: int
    ) -> tuple[list[tuple[int, float]], str | None]:
        if not self.vectors.ready.is_set():
            self._degraded.labels("index_not_ready").inc()
            return [], "index_not_ready"
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(self.vectors.search_sync, query, k), None
        except TimeoutError:
            self._degraded.labels("vector_timeout").inc()
            logger.warning("vector search timed out", extra={"timeout": self.timeout})
            return [], "vector_timeout"
        except IndexNotReadyError:
            self._degraded.labels("index_not_ready").inc()
            return [], "index_not_ready"

    @staticmethod
    def _total(candidate: _Candidate, weights: dict[str, float]) -> float:
        return (
            weights["vector"] * candidate.vector
            + weights["keyword"] * candidate.keyword
            + weights["graph"] * candidate.graph
        )

    async def _documents(self, ids: list[int]) -> dict[int, repository.Shown]:
        if not ids:
            return {}
        async with self._database.sessions() as session:
            return await repository.shown(session, ids)
