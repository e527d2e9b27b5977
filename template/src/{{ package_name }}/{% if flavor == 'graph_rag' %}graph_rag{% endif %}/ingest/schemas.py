"""What the ingest API takes and answers, with the limits it enforces."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from ...schemas import RequestModel

MAX_TITLE = 500
MAX_TEXT = 100_000
MAX_TAGS = 32
MAX_TAG = 64
MAX_METADATA_KEYS = 32

Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]
MetadataValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None


class DocumentIn(RequestModel):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    metadata: dict[Annotated[str, StringConstraints(max_length=100)], MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description="Trimmed of surrounding whitespace; a tag that is only whitespace is dropped.",
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your own id for the document. Storing one you stored before updates "
        "that document in place (same id; its entities, words and vector follow the new "
        "content) or, when the content is the same (a retry after a lost answer), changes "
        "nothing.",
    )

    @field_validator("tags")
    @classmethod
    def _trimmed(cls, tags: list[str]) -> list[str]:
        # After validation, not before: what the schema allows is accepted, then normalised.
        return [tag.strip() for tag in tags if tag.strip()]


class Accepted(BaseModel):
    document_id: int
    job_id: str | None = Field(
        description="The embedding job; null when nothing was stored or changed."
    )
    created: bool = Field(description="False when this external_id was stored before.")
    updated: bool = Field(
        description="True when this external_id was stored before with other content."
    )


class ItemError(BaseModel):
    index: int
    field: str
    message: str
    type: str


class BatchAccepted(BaseModel):
    accepted: int
    document_ids: list[int] = Field(description="In the order of the valid items.")
    job_id: str | None = Field(
        description="One embedding job for the documents stored or updated now; null when "
        "there were none."
    )
    created: int = Field(description="Documents stored now; the others had been stored before.")
    updated: int = Field(description="Documents stored before that got new content now.")
    errors: list[ItemError] = Field(description="Every invalid item, by index and field.")
