"""Authors by bearer token: the token is the author's name (an example, not security)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..errors import UnauthorizedError
from ..security import BearerAuth


class AuthorAuth(BearerAuth):
    async def __call__(self, request: Request) -> str:
        author = self.credential(request)
        if author is None:
            raise await self.failed(request, UnauthorizedError("a bearer token is required"))
        return author


authenticated_author = AuthorAuth(
    scheme_name="AuthorToken", description="The author's name.", bearer_format="name"
)
Author = Annotated[str, Depends(authenticated_author)]


async def caller_key(author: Author) -> str:
    return f"author:{author}"


job_owner = caller_key
