"""A stored document as the API shows it, and a page of them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ...schemas import UtcDatetime


class DocumentSummary(BaseModel):
    id: int
    title: str
    tags: list[str]
    metadata: dict[str, Any]
    external_id: str | None
    created_at: UtcDatetime


class DocumentView(DocumentSummary):
    text: str


class DocumentPage(BaseModel):
    documents: list[DocumentSummary] = Field(description="Newest first.")
    next_cursor: int | None = Field(
        description="Pass it as `cursor` for the next page; null on the last page."
    )
