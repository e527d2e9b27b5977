"""/api/tokens: a user issues, lists and revokes their own API tokens.

Rotating a token is issuing a new one, moving the clients to it, then revoking the old one.
A token is shown once, in the answer that issues it; the service keeps only its SHA-256 digest,
which is also the token's id here (it reveals nothing about the token).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ..cache import cache_of
from ..db import SessionDep
from ..deps import SettingsDep
from ..errors import NotFoundError
from ..ratelimit import rate_limit
from ..schemas import JSON_INTEGER, RequestModel
from .auth import (
    CurrentUser,
    authenticated_user,
    caller_key,
    digest,
    issue_token,
    token_cache_key,
)
from .models import ApiToken

router = APIRouter(prefix="/api/tokens", tags=["tokens"])

TokenId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The token's SHA-256 digest")]
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, unknown, expired or revoked token"}
}


class TokenRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="api", min_length=1, max_length=100, examples=["ci"])
    expires_in_days: Annotated[int, Field(ge=1, le=3650), JSON_INTEGER] | None = Field(
        default=None, description="Capped at AUTH_TOKEN_TTL_DAYS, which is also the default."
    )


class TokenView(BaseModel):
    id: str
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenView:
        return cls(
            id=token.digest.hex(),
            label=token.label,
            created_at=_utc(token.created_at),
            expires_at=_utc(token.expires_at),
            revoked_at=None if token.revoked_at is None else _utc(token.revoked_at),
        )


class IssuedToken(TokenView):
    token: str = Field(description="The token itself: shown only in this answer.")


def _utc(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; every one stored here is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.post(
    "",
    status_code=201,
    summary="Issue a new token for yourself",
    responses=_UNAUTHORIZED,
    dependencies=[rate_limit("tokens", per=caller_key)],
)
async def create_token(
    body: TokenRequest, current_user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> IssuedToken:
    days = min(body.expires_in_days or settings.auth_token_ttl_days, settings.auth_token_ttl_days)
    token = await issue_token(session, current_user, body.label, timedelta(days=days))
    await session.commit()
    issued = await session.get(ApiToken, digest(token))
    assert issued is not None
    return IssuedToken(**TokenView.of(issued).model_dump(), token=token)


@router.get(
    "",
    summary="Your tokens (never the tokens themselves)",
    responses=_UNAUTHORIZED,
    dependencies=[Depends(authenticated_user)],
)
async def list_tokens(current_user: CurrentUser, session: SessionDep) -> list[TokenView]:
    tokens = await session.scalars(
        select(ApiToken).where(ApiToken.user_id == current_user).order_by(ApiToken.created_at)
    )
    return [TokenView.of(token) for token in tokens]


@router.delete(
    "/{token_id}",
    status_code=204,
    summary="Revoke one of your tokens",
    description="The token is refused from now on (within AUTH_TOKEN_CACHE_TTL seconds in "
    "processes that do not share a Redis cache). Revoking a revoked token changes nothing.",
    responses={**_UNAUTHORIZED, 404: {"description": "None of your tokens has this id"}},
    dependencies=[Depends(authenticated_user)],
)
async def revoke_token(
    token_id: TokenId, current_user: CurrentUser, session: SessionDep, request: Request
) -> Response:
    token = await session.get(ApiToken, bytes.fromhex(token_id))
    if token is None or token.user_id != current_user:
        raise NotFoundError(f"none of your tokens has the id '{token_id}'")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        await session.commit()
    await cache_of(request).invalidate(token_cache_key(token.digest))
    return Response(status_code=204)
