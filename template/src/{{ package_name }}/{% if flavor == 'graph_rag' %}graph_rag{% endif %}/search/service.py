"""Hybrid search: vector top-k, BM25 and the graph walk from the query's entities, fused.

`SearchEngine` is built once in the lifespan; the endpoint finds it by type in the app's
registry, so its only dependencies are authentication and the rate limit: no per-request
dependency chain on the hot path.

Scores, each in [0, 1], per hit (vector and lexical absolute, graph relative to the walk):
- vector: cosine similarity of the query and the document above the embedder's floor
  (SEARCH_VECTOR_FLOOR), rescaled to [0, 1] (below the floor: 0); computed for every
  candidate, whichever signal found it;
- lexical: BM25 over the sum of the query's IDFs, capped at 1 (lexical.py);
- graph: the graph walk's onward weight on the document (graph.py: the weight carried by
  entities the query does not name) relative to the heaviest, square-rooted (measured: the
  root ranks better than the weight itself, which falls off steeply after the first few
  documents). A named entity's own share is left out because its name is words of the query,
  which the lexical and vector scores already count: counted a second time, it ranked a
  document that merely names the query's subject (a passing mention) above the documents
  that lead on from it to the answer (bench/bench_relevance.py, 10,000 documents: multi-hop
  nDCG@10 0.796 -> 0.840, every other class unchanged). The walk alone, as a signal of its
  own, ranks by the whole weight.
The total is their weighted sum (`Weights`, from settings). When even the best hit scores
below SEARCH_MIN_SCORE the answer has no hits: a query nothing answers gets none rather than
the least bad documents.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Self

from prometheus_client import Counter

from ...db import Database
from ...errors import ServiceUnavailableError
from ...observability import Metrics
from ...settings import Settings
from ..embed import Vectors
from ..extract import Extractor
from ..graph import GraphStore, Reached
from ..lexical import LexicalIndex
from ..vectors import IndexNotReadyError, VectorIndex
from . import repository
from .schemas import Hit, ScoreBreakdown, SearchResult

logger = logging.getLogger(__name__)

# Vector candidates fetched per requested hit: the graph re-ranks a wider set than k.
OVERFETCH = 3


@dataclass(slots=True)
class _Candidate:
    vector: float = 0.0
    lexical: float = 0.0
    graph: float = 0.0
    hops: int | None = None


@dataclass(frozen=True, slots=True)
class Weights:
    vector: float
    lexical: float
    graph: float

    @classmethod
    def of(cls, settings: Settings) -> Self:
        return cls(
            settings.search_weight_vector,
            settings.search_weight_lexical,
            settings.search_weight_graph,
        )

    def without_vector(self) -> Weights:
        """The vector's weight shared by the other signals in proportion (settings make sure
        they are not both 0)."""
        rest = self.lexical + self.graph
        return Weights(0.0, self.lexical / rest, self.graph / rest)

    def total(self, candidate: _Candidate) -> float:
        return (
            self.vector * candidate.vector
            + self.lexical * candidate.lexical
            + self.graph * candidate.graph
        )


class SearchEngine:
    name = "search"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        vectors: VectorIndex,
        graph: GraphStore,
        lexical: LexicalIndex,
        extractor: Extractor,
        metrics: Metrics,
    ) -> None:
        self._database = database
        self.vectors = vectors
        self.graph = graph
        self.lexical = lexical
        self.extractor = extractor
        self.weights = Weights.of(settings)
        self.min_score = settings.search_min_score
        floor = settings.search_vector_floor
        self.vector_floor = vectors.embedder.similarity_floor if floor is None else floor
        self.timeout = settings.search_timeout
        self._slots = asyncio.Semaphore(settings.search_concurrency)
        self.queue_timeout = settings.search_queue_timeout
        self.depth = settings.search_graph_depth
        self.max_documents = settings.search_entity_max_documents
        self._degraded = Counter(
            "search_degraded_total",
            "Searches answered from the graph only, by reason.",
            ("reason",),
            registry=metrics.registry,
        )

    async def search(
        self, query: str, k: int, tag: str | None = None, depth: int | None = None
    ) -> SearchResult:
        """The k best documents for `query` (only those carrying `tag`, when given; the graph
        walked `depth` relations, by default SEARCH_GRAPH_DEPTH). Raises
        ServiceUnavailableError when the graph store or the database is down: there is no
        answer without the graph (the vector index alone degrades the answer instead).
        At most SEARCH_CONCURRENCY at once; the others wait here, before their deadline
        starts, and one that waits SEARCH_QUEUE_TIMEOUT in vain is a 503 (`search_busy`)."""
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise ServiceUnavailableError(
                "too many searches are waiting; retry later", retry_after=1, code="search_busy"
            ) from None
        try:
            async with self._database.translating():
                return await self._search(query, k, tag, self.depth if depth is None else depth)
        finally:
            self._slots.release()

    async def _search(self, query: str, k: int, tag: str | None, depth: int) -> SearchResult:
        keys = self.extractor.query_keys(query)
        deadline = asyncio.get_running_loop().time() + self.timeout
        # The graph walks from the entities the query names, and only those: seeded from the
        # vector hits' entities too, it gave documents that share nothing with the query a
        # graph score (and measured worse on every class of bench/bench_relevance.py).
        limit = k * OVERFETCH * 4
        (vector, nearest, reason), lexical, reached = await asyncio.gather(
            self._vector_search(query, k * OVERFETCH, deadline),
            self.lexical.scores(query, limit),
            self.graph_signal(keys, limit, depth),
        )
        similarities = dict(nearest)
        if vector is not None:
            # Every candidate gets its vector score, not only the vector's own top k: a
            # document the words or the graph found, just outside that cut, would otherwise
            # count as dissimilar (measured: paraphrase nDCG@10 0.953 -> 1.000 at 10k).
            others = (lexical.keys() | reached.keys()) - similarities.keys()
            scored, reason = await self._similarities(vector, others, deadline)
            similarities = {} if reason else similarities | scored

        candidates: dict[int, _Candidate] = {}
        for document_id, similarity in similarities.items():
            if similarity > self.vector_floor:
                rescaled = (similarity - self.vector_floor) / (1 - self.vector_floor)
                candidates.setdefault(document_id, _Candidate()).vector = rescaled
        for document_id, score in lexical.items():
            candidates.setdefault(document_id, _Candidate()).lexical = score
        heaviest = max((found.onward for found in reached.values()), default=0.0)
        for document_id, found in reached.items():
            candidate = candidates.setdefault(document_id, _Candidate())
            candidate.graph = math.sqrt(found.onward / heaviest) if heaviest > 0 else 0.0
            candidate.hops = found.hops

        documents: dict[int, repository.Shown] | None = None
        if tag is not None:  # among the candidates the signals found, read once for both
            documents = await self._documents(list(candidates))
            candidates = {
                i: c for i, c in candidates.items() if i in documents and tag in documents[i].tags
            }

        weights = self.weights.without_vector() if reason else self.weights
        totals = {i: weights.total(c) for i, c in candidates.items()}
        ranked = sorted(candidates.items(), key=lambda item: (-totals[item[0]], item[0]))[:k]
        if ranked and totals[ranked[0][0]] < self.min_score:
            # Not even the best candidate answers the query: no answer, rather than the least
            # bad documents. Below a good best hit, weaker ones (a graph neighbour) stay.
            ranked = []
        if documents is None:
            documents = await self._documents([document_id for document_id, _ in ranked])
        hits = [
            Hit(
                document_id=document_id,
                title=documents[document_id].title,
                snippet=documents[document_id].snippet,
                tags=documents[document_id].tags,
                metadata=documents[document_id].metadata,
                score=round(totals[document_id], 6),
                scores=ScoreBreakdown(
                    vector=round(candidate.vector, 6),
                    lexical=round(candidate.lexical, 6),
                    graph=round(candidate.graph, 6),
                ),
                hops=candidate.hops,
            )
            for document_id, candidate in ranked
            # Not a deleted document (its vector stays in the index until it is rebuilt), nor
            # one a failed write left in one store only.
            if document_id in documents
        ]
        return SearchResult(query=query, degraded=reason is not None, reason=reason, hits=hits)

    async def graph_signal(
        self, keys: list[str], limit: int, depth: int | None = None
    ) -> dict[int, Reached]:
        """The documents the graph walk reaches from the query's entities, heaviest first."""
        depth = self.depth if depth is None else depth
        return await self.graph.expand(keys, depth, limit, self.max_documents)

    async def _vector_search(
        self, query: str, k: int, deadline: float
    ) -> tuple[Vectors | None, list[tuple[int, float]], str | None]:
        """The embedded query and its k nearest documents; or why there are none (the
        answer is then degraded to words and graph)."""

        def embed_and_search() -> tuple[Vectors, list[tuple[int, float]]]:
            vector = self.vectors.embedder.embed([query])
            return vector, self.vectors.nearest_sync(vector, k)

        if not self.vectors.ready.is_set():
            return None, [], self._degrade("index_not_ready")
        try:
            async with asyncio.timeout_at(deadline):
                vector, nearest = await asyncio.to_thread(embed_and_search)
        except TimeoutError:
            return None, [], self._degrade("vector_timeout")
        except IndexNotReadyError:
            return None, [], self._degrade("index_not_ready")
        return vector, nearest, None

    async def _similarities(
        self, vector: Vectors, documents: set[int], deadline: float
    ) -> tuple[dict[int, float], str | None]:
        if not documents:
            return {}, None
        try:
            async with asyncio.timeout_at(deadline):
                scored = await asyncio.to_thread(self.vectors.similarity_sync, vector, documents)
        except TimeoutError:
            return {}, self._degrade("vector_timeout")
        except IndexNotReadyError:
            return {}, self._degrade("index_not_ready")
        return scored, None

    def _degrade(self, reason: str) -> str:
        self._degraded.labels(reason).inc()
        if reason == "vector_timeout":
            logger.warning("vector search timed out", extra={"timeout": self.timeout})
        return reason

    async def _documents(self, ids: list[int]) -> dict[int, repository.Shown]:
        if not ids:
            return {}
        async with self._database.sessions() as session:
            return await repository.shown(session, ids)
