"""The tokens endpoints: HTTP in and out; the rules are in service.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from ...db import SessionDep
from ...deps import CacheDep, SettingsDep
from ...ratelimit import rate_limit
from ..auth import CurrentUser, authenticated_user, caller_key
from .schemas import IssuedToken, TokenRequest, TokenView
from .service import issue_own_token, list_own_tokens, revoke_own_token

router = APIRouter(prefix="/api/tokens", tags=["tokens"])

TokenId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The token's SHA-256 digest")]
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, unknown, expired or revoked token"}
}


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
    return await issue_own_token(session, settings, current_user, body)


@router.get(
    "",
    summary="Your tokens (never the tokens themselves)",
    responses=_UNAUTHORIZED,
    dependencies=[Depends(authenticated_user)],
)
async def list_tokens(current_user: CurrentUser, session: SessionDep) -> list[TokenView]:
    return await list_own_tokens(session, current_user)


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
    token_id: TokenId, current_user: CurrentUser, session: SessionDep, cache: CacheDep
) -> Response:
    await revoke_own_token(session, cache, current_user, token_id)
    return Response(status_code=204)
