"""What a search answers: hits with the score breakdown that ranked them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_QUERY = 500
MAX_K = 50


class ScoreBreakdown(BaseModel):
    vector: float = Field(
        description="Cosine similarity of the query and the document above the embedder's "
        "floor (SEARCH_VECTOR_FLOOR; hashing 0, semantic 0.3), rescaled to 0..1: (cosine - "
        "floor) / (1 - floor). 0 at or below the floor, when the document is not among the "
        "vector search's nearest, or when the answer is degraded."
    )
    lexical: float = Field(
        description="BM25 of the query's words (stemmed, stop words dropped) in the title "
        "and text, over the sum of their inverse document frequencies, capped at 1: about 1 "
        "for a document using every word of the query, less the more of the query's rare "
        "words it lacks. The same on SQLite and PostgreSQL."
    )
    graph: float = Field(
        description="How much of the graph walk from the query's entities reaches the "
        "document through entities the query does not name, relative to the document it "
        "reaches most, square-rooted: 1 for that document; more for documents naming rare "
        "entities close to the query's than for those reached through common ones; 0 when the "
        "walk did not reach it (the query names no known entity, or it is more than "
        "SEARCH_GRAPH_DEPTH relations away) or it names no entity but the query's own "
        "(their names are words of the query, which the lexical score counts)."
    )


class Hit(BaseModel):
    document_id: int
    title: str
    snippet: str
    score: float = Field(
        description="The total, which orders the hits (ties by document id): "
        "SEARCH_WEIGHT_VECTOR x vector + SEARCH_WEIGHT_LEXICAL x lexical + "
        "SEARCH_WEIGHT_GRAPH x graph (by default 0.25, 0.35 and 0.4). When degraded, the "
        "vector weight is shared by the other two in proportion. When the best hit scores below "
        "SEARCH_MIN_SCORE (default 0.3) there are no hits. Rounded to 6 decimal places."
    )
    scores: ScoreBreakdown
    hops: int | None = Field(description="Relations walked from a matched entity; null: none")
    tags: list[str]
    metadata: dict[str, Any]


class SearchResult(BaseModel):
    query: str
    degraded: bool = Field(description="True: answered from the lexical and graph signals only")
    reason: str | None = Field(description="Why the vector search was skipped")
    hits: list[Hit]
