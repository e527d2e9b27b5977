"""Domain exceptions and the handlers that turn every error into JSON with the request id.

Bodies follow RFC 9457 (application/problem+json) with two extension members: `code`, stable
for clients to branch on, and `request_id`, the id in the `X-Request-ID` header and the logs.
Unexpected exceptions are answered by the request-context middleware (see middleware.py), so
no stack trace ever leaves the server.
"""

from __future__ import annotations

import logging
import sys
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from .observability import request_id_var
from .routing import allowed_methods

if TYPE_CHECKING:
    from .db import Database

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


class SchemaNotMigratedError(ServiceUnavailableError):
    """The database's schema is behind this code: tables or columns it needs do not exist."""

    code = "schema_not_migrated"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)


def is_schema_error(exc: BaseException) -> bool:
    """True for a statement that failed because a table or column does not exist (yet)."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    # PostgreSQL: undefined_table, undefined_column. SQLite has no codes, only the message.
    if getattr(exc.orig, "sqlstate", None) in {"42P01", "42703"}:
        return True
    return str(exc.orig).startswith(("no such table", "no such column"))


# SQLSTATEs that say the server cannot serve now, not that the statement is wrong: class 08
# (connection lost or refused), 53 (out of connections, memory or disk), 57P01-57P05 (shut
# down, crashed, "the database system is starting up"), 57014 (statement_timeout) and 55P03
# (lock_timeout).
_UNAVAILABLE_CLASSES = ("08", "53", "57P")
_UNAVAILABLE_STATES = frozenset({"57014", "55P03"})
# SQLite reports a statement it cannot run as an OperationalError too, like a locked or
# missing file: a bug no retry cures, so not an outage.
_SQLITE_STATEMENT_ERRORS = (
    "syntax error",
    "no such function",
    "wrong number of arguments",
    "ambiguous column name",
    "misuse of",
)


def is_unavailable(exc: BaseException) -> bool:
    """True for a database failure a retry can cure: the server is down, starting, hung or busy.

    Drivers report these many ways: asyncpg raises `OSError` subclasses and `TimeoutError`
    while connecting, SQLAlchemy wraps what fails on an open connection (a server error such as
    "the database system is starting up" arrives as a plain `DBAPIError` carrying its SQLSTATE),
    so the whole chain of causes is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.OperationalError) and any(
            error in str(current.orig) for error in _SQLITE_STATEMENT_ERRORS
        ):
            return False
        if isinstance(
            current,
            OSError
            | TimeoutError
            | sa_exc.TimeoutError
            | sa_exc.OperationalError
            | sa_exc.InterfaceError,
        ):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and (
            state.startswith(_UNAVAILABLE_CLASSES) or state in _UNAVAILABLE_STATES
        ):
            return True
        orig = current.orig if isinstance(current, sa_exc.DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def describe_error(exc: BaseException) -> str:
    """A database error for a log line: the driver's message, never the statement's SQL."""
    cause = exc.orig if isinstance(exc, sa_exc.StatementError) and exc.orig else exc
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    kind = "schema not migrated" if is_schema_error(exc) else type(cause).__name__
    return f"{kind}: {first_line}"[:300]


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


def problem_for(exc: AppError) -> Response:
    """The answer to `exc`, as the error handlers send it."""
    return problem(exc.status_code, exc.code, exc.detail, headers=exc.headers, **exc.extra)


async def _app_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return problem_for(exc)


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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI's "There was an error parsing the body", raised from what went wrong.
        detail = unparsable_body(exc.__cause__)
        return problem(
            400,
            "malformed_body",
            detail,
            errors=[{"field": "body", "message": detail, "type": "malformed_body"}],
        )
    if exc.status_code == 413:
        return problem(
            413,
            "body_too_large",
            str(exc.detail),
            headers={"Connection": "close"},  # the rest of the body is not read
            limit=getattr(exc, "limit", None),
        )
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        allowed = allowed_methods(request.app.routes, request.url.path)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem(exc.status_code, code, str(exc.detail), headers=headers)


def unparsable_body(cause: BaseException) -> str:
    """What made a JSON body unreadable, said so that a client can fix it."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "the body nests arrays or objects too deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return (
            f"an integer in the body has more than {sys.get_int_max_str_digits()} digits; "
            "send large numbers as strings"
        )
    return f"the body could not be parsed ({type(cause).__name__})"


def _database_error(database: Database) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        if not (is_unavailable(exc) or is_schema_error(exc)):
            raise exc  # a bug in a statement or the code, not the database's state: a plain 500
        if isinstance(exc, sa_exc.SQLAlchemyError):
            error = await database.translate(exc)
        else:  # a bare network error: most likely the database's, but it does not say
            error = ServiceUnavailableError(
                "a dependency is unavailable; retry later",
                retry_after=database.retry_after,
                code="dependency_unavailable",
            )
        # The cause goes to the log; the client learns what to do about it.
        logger.error("%s: %s", error.code, describe_error(exc))
        return await _app_error(request, error)

    return handler


def install_error_handlers(app: FastAPI, database: Database) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Lost connections, failed reconnects, a server starting up or hung, an exhausted pool and
    # a schema that is not migrated, wherever they surface (`Database.session()` translates
    # them where it is used; these catch code that opens `database.sessions()` itself).
    database_error = _database_error(database)
    for error in (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, TimeoutError):
        app.add_exception_handler(error, database_error)
