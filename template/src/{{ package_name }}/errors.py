"""Domain exceptions and the handlers that turn every error into JSON with the request id.

Bodies follow RFC 9457 (application/problem+json) with two extension members: `code`, stable
for clients to branch on, and `request_id`, the id in the `X-Request-ID` header and the logs.
Unexpected exceptions are answered by the request-context middleware (see middleware.py), so
no stack trace ever leaves the server.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from .observability import request_id_var

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """Base of every error the service raises on purpose."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"


class UnauthorizedError(AppError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(AppError):
    status_code = 403
    code = "forbidden"


class ServiceUnavailableError(AppError):
    """A dependency is down; the client should retry after `retry_after` seconds."""

    status_code = 503
    code = "service_unavailable"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
        if code is not None:
            self.code = code


class DatabaseUnavailableError(ServiceUnavailableError):
    code = "database_unavailable"

    def __init__(self, retry_after: int) -> None:
        super().__init__("the database is unavailable; retry later", retry_after=retry_after)


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
        **extra,
    }
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


async def _app_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return problem(exc.status_code, exc.code, exc.detail, headers=exc.headers, **exc.extra)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    fields = ", ".join(error["field"] for error in errors)
    return problem(422, "validation_error", f"invalid request: {fields}", errors=errors)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, code, str(exc.detail), headers=headers)


def _database_unavailable(retry_after: int) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        # The cause goes to the log; the client learns only that it should retry.
        logger.error("database unavailable: %s", type(exc).__name__, exc_info=exc)
        return await _app_error(request, DatabaseUnavailableError(retry_after))

    return handler


def install_error_handlers(app: FastAPI, *, db_retry_after: int) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Lost connections, failed reconnects and an exhausted pool, wherever they surface.
    database_down = _database_unavailable(db_retry_after)
    for error in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        app.add_exception_handler(error, database_down)
