"""What a search answers: hits with the score breakdown that ranked them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_QUERY = 500
MAX_K = 50


class ScoreBreakdown(BaseModel):
    vector: float
    keyword: float
    graph: float


class Hit(BaseModel):
    document_id: int
    title: str
    snippet: str
    score: float
    scores: ScoreBreakdown
    hops: int | None = Field(description="Relations walked from a matched entity; null: none")
    tags: list[str]
    metadata: dict[str, Any]


class SearchResult(BaseModel):
    query: str
    degraded: bool = Field(description="True: answered from the graph and keywords only")
    reason: str | None = Field(description="Why the vector search was skipped")
    hits: list[Hit]
