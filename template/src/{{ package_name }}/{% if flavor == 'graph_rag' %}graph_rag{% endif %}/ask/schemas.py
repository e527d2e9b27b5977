"""What /ask takes and answers: the question and its options; the answer, its citations, the
graph facts it was given, token counts and timings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..generate import Reason

MAX_QUESTION = 1000
MAX_K = 20
MAX_TOKENS = 4096
MAX_CONTEXT_TOKENS = 32_000


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    k: int = Field(default=5, ge=1, le=MAX_K, description="Documents the search retrieves")
    depth: int | None = Field(
        default=None, ge=0, le=5, description="Graph relations walked; unset: SEARCH_GRAPH_DEPTH"
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="The answer's tokens; unset: ASK_MAX_TOKENS"
    )
    context_tokens: int | None = Field(
        default=None,
        ge=50,
        le=MAX_CONTEXT_TOKENS,
        description="Tokens of passages and facts in the prompt; unset: ASK_CONTEXT_TOKENS",
    )

    @field_validator("k", "depth", "max_tokens", "context_tokens", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # An integer as JSON Schema means it: 7 and 7.0, never `false` or "7" (which
        # pydantic's lax mode reads as 0 and 7).
        if isinstance(value, bool | str):
            raise ValueError("must be a number")
        return value


class Citation(BaseModel):
    number: int = Field(description="The passage's number in the prompt: [n] in the answer")
    document_id: int
    title: str
    start: int = Field(description="Where the passage starts in the document's text")
    end: int = Field(description="Where it ends (exclusive): text == document.text[start:end]")
    text: str


class GraphFact(BaseModel):
    subject: str
    object: str
    document_ids: list[int] = Field(description="The passages' documents naming both")


class Tokens(BaseModel):
    prompt: int = Field(description="The prompt sent to the generator")
    completion: int = Field(description="The answer")
    counted_by: Literal["generator", "estimate"] = Field(
        description=(
            "Who counted prompt and completion: `generator`, the generator's server (its "
            "`usage`); `estimate`, words and punctuation marks (the extractive generator, a "
            "server that sends no usage, a degraded answer)"
        )
    )
    context_budget: int = Field(description="What passages and facts could take")
    passages_dropped: int = Field(description="Passages left out to stay within the budget")


class Timings(BaseModel):
    search_ms: float
    generate_ms: float
    first_token_ms: float | None = Field(description="From the request to the answer's first text")
    total_ms: float


class Answer(BaseModel):
    question: str
    answer: str = Field(description="Empty when degraded or when no document answers")
    degraded: bool = Field(
        description="True: the generator gave no complete answer; the passages are the answer"
    )
    reason: Reason | None
    generator: str
    search_degraded: bool = Field(description="The search ran without its vector signal")
    citations: list[Citation] = Field(
        description="The passages the answer cites; when degraded, every passage retrieved"
    )
    facts: list[GraphFact]
    tokens: Tokens
    timings: Timings
