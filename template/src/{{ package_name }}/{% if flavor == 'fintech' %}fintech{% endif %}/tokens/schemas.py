"""What the tokens API takes and shows: never a token, except once, when it is issued."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ...schemas import JSON_INTEGER, RequestModel, UtcDatetime
from ..models import ApiToken


class TokenRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="api", min_length=1, max_length=100, examples=["ci"])
    expires_in_days: Annotated[int, Field(ge=1, le=3650), JSON_INTEGER] | None = Field(
        default=None, description="Capped at AUTH_TOKEN_TTL_DAYS, which is also the default."
    )


class TokenView(BaseModel):
    id: str
    label: str
    created_at: UtcDatetime
    expires_at: UtcDatetime
    revoked_at: UtcDatetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenView:
        return cls(
            id=token.digest.hex(),
            label=token.label,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


class IssuedToken(TokenView):
    token: str = Field(description="The token itself: shown only in this answer.")
