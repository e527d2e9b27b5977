"""What a search answers: hits with the score breakdown that ranked them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_QUERY = 500
MAX_K = 50
# How a hit's score is formed from its signals (see ScoreBreakdown): the answer's contract.
WEIGHTS = {"vector": 0.6, "keyword": 0.25, "graph": 0.15}
# Without the vector search (timed out, or the index is loading): graph and keywords only.
DEGRADED_WEIGHTS = {"vector": 0.0, "keyword": 0.6, "graph": 0.4}


def _formula(weights: dict[str, float]) -> str:
    return " + ".join(f"{weight} x {name}" for name, weight in weights.items())


class ScoreBreakdown(BaseModel):
    vector: float = Field(
        description="Cosine similarity of the query and the document, 0 to 1; 0 when the "
        "document is not among the vector search's nearest, or the answer is degraded."
    )
    keyword: float = Field(
        description="Share of the query's words named by entities the document mentions, "
        "0 to 1 (a document naming both words of a two-word query: 1)."
    )
    graph: float = Field(
        description="1 / (1 + hops): 1 for a document naming an entity of the query, 0.5 one "
        "relation away, 0.33 two; 0 when the graph walk did not reach it."
    )


class Hit(BaseModel):
    document_id: int
    title: str
    snippet: str
    score: float = Field(
        description=f"The total, which orders the hits (ties by document id): "
        f"{_formula(WEIGHTS)}; when degraded, {_formula(DEGRADED_WEIGHTS)}. Rounded to 6 "
        "decimal places."
    )
    scores: ScoreBreakdown
    hops: int | None = Field(description="Relations walked from a matched entity; null: none")
    tags: list[str]
    metadata: dict[str, Any]


class SearchResult(BaseModel):
    query: str
    degraded: bool = Field(description="True: answered from the graph and keywords only")
    reason: str | None = Field(description="Why the vector search was skipped")
    hits: list[Hit]
