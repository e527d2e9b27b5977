"""Pure ASGI middleware, kept lean: it runs on every request.

`BaseHTTPMiddleware` and `@app.middleware("http")` cost 2.5x throughput here (they wrap every
body in a stream and a task); a pure ASGI middleware that edits the raw header list costs about
a microsecond. Starlette's `MutableHeaders` cost ~8 us per request in the same place, so the
headers are edited as the raw ASGI list of (lowercase name, value) byte pairs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute, APIRouter
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipResponder
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .observability import Metrics, request_id_var

access_logger = logging.getLogger("access")
logger = logging.getLogger(__name__)

# Ids from clients and proxies are honoured when they are safe to log and to echo back.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_UNMATCHED_ROUTE = "<unmatched>"
# HTTP versions whose request bodies are framed by Content-Length or Transfer-Encoding only
# (an HTTP/2 request may send a body with neither).
_LENGTH_FRAMED = frozenset(["1.0", "1.1"])
_random_bits = random.getrandbits


# Sent with every response. JSON needs no script, style or frame, so the policy allows none;
# the interactive docs pages load Swagger UI and ReDoc, and are exempt.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
CONTENT_SECURITY_POLICY = (
    b"content-security-policy",
    b"default-src 'none'; frame-ancestors 'none'",
)

# Where a dependency leaves headers for its request's response (in the request state, which
# the middleware and the handler share).
_RESPONSE_HEADERS = "response_headers"


def add_response_headers(request: Request, headers: Mapping[str, str]) -> None:
    """Send `headers` with this request's response, whichever response the handler returns:
    FastAPI merges a dependency's `Response` headers only into responses it builds itself.
    RequestContextMiddleware writes them; a header the response already has wins."""
    if headers:
        pending: dict[bytes, bytes] = request.scope.setdefault("state", {}).setdefault(
            _RESPONSE_HEADERS, {}
        )
        for name, value in headers.items():
            pending[name.lower().encode("latin-1")] = value.encode("latin-1")


def _pending_headers(
    state: Mapping[str, Any], present: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    pending: dict[bytes, bytes] | None = state.get(_RESPONSE_HEADERS)
    if not pending:
        return []
    names = {name.lower() for name, _ in present}
    return [(name, value) for name, value in pending.items() if name not in names]


class RequestContextMiddleware:
    """Request id, timing, security and cache headers, metrics, one access-log line, the
    last-resort 500.

    It is the outermost middleware, so it sees the final status of every response and can
    answer an unhandled exception with a problem body that carries the request id (Starlette's
    ServerErrorMiddleware sits outside user middleware and knows nothing of the id).

    Every layer costs each request a call, a closure and a hop per message sent, so what
    edits the response head is done here, in one pass over the headers: `Cache-Control` by
    path prefix (`cache_control`) included.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        header: str = "X-Request-ID",
        access_log: bool = True,
        quiet_paths: Iterable[str] = (),
        hsts_seconds: int = 0,
        docs_paths: Iterable[str] = (),
        cache_control: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.requests = metrics.requests if metrics is not None else None
        self._header_key = header.lower().encode("latin-1")
        self.access_log = access_log
        # Paths whose access line is written only for a 5xx (the probes, unless
        # ACCESS_LOG_PROBES): metrics count them all the same.
        self._quiet_paths = frozenset(quiet_paths)
        hsts = [(b"strict-transport-security", b"max-age=%d" % hsts_seconds)]
        self._docs_headers = [*SECURITY_HEADERS, *(hsts if hsts_seconds else [])]
        self._headers = [*self._docs_headers, CONTENT_SECURITY_POLICY]
        self._docs_paths = frozenset(docs_paths)
        self._cache_control = CacheControlRules(cache_control or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = self._request_id(scope)
        token = request_id_var.set(request_id)
        path: str = scope["path"]
        id_header = (self._header_key, request_id.encode("latin-1"))
        extra = self._docs_headers if path in self._docs_paths else self._headers
        cache_control = self._cache_control.value(scope["method"], path)
        status = 500
        response_started = False
        # Created here so the handler's `request.state` is this same dict.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                elapsed = b"%.6f" % (time.perf_counter() - started)
                headers = list(message.get("headers", ()))
                if _RESPONSE_HEADERS in state:
                    headers += _pending_headers(state, headers)
                if cache_control is not None and 200 <= status < 400:
                    _add_cache_control(headers, cache_control)
                headers.append(id_header)
                headers.append((b"x-process-time", elapsed))
                headers += extra
                message["headers"] = headers
            await send(message)

        requests = self.requests
        if requests is not None:
            requests.started()
        try:
            if b"%00" in scope["query_string"] or b"%00" in (scope.get("raw_path") or b""):
                await _refuse_nul(scope, send_with_context, request_id)
            else:
                await self.app(scope, receive, send_with_context)
        except Exception:
            logger.exception("unhandled error", extra={"path": scope["path"]})
            if response_started:
                raise  # Too late for a clean answer; the server closes the connection.
            await self._internal_error(send_with_context, request_id)
        except asyncio.CancelledError:
            # The server cancels what still runs when its shutdown's drain window
            # (GRACEFUL_SHUTDOWN_SECONDS) ends. This is the request's outermost layer, and its
            # task ends here either way: answer a 503 to retry elsewhere, not uvicorn's 500.
            if response_started:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logger.warning("request cut short by shutdown", extra={"path": scope["path"]})
            await self._shutting_down(send_with_context, request_id)
        finally:
            duration = time.perf_counter() - started
            # FastAPI puts the matched route in the scope; its path template keeps label
            # cardinality bounded (/items/{id}, not /items/1, /items/2, ...).
            route = getattr(scope.get("route"), "path", _UNMATCHED_ROUTE)
            if requests is not None:
                requests.observe(scope["method"], route, status, duration)
            if self.access_log and (status >= 500 or path not in self._quiet_paths):
                access_logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(duration * 1000, 3),
                        "client": scope["client"][0] if scope.get("client") else None,
                    },
                )
            request_id_var.reset(token)

    def _request_id(self, scope: Scope) -> str:
        for key, value in scope["headers"]:
            if key == self._header_key:
                if _VALID_REQUEST_ID.fullmatch(value):
                    return str(value.decode("latin-1"))
                break
        # 128 random bits, as unique as uuid4().hex, from the process's Mersenne Twister (seeded
        # from os.urandom, and again in every forked child): no system call per request. An id
        # names a request in the logs; it guards nothing, so it needs no unpredictability.
        return _random_bits(128).to_bytes(16).hex()

    @staticmethod
    async def _internal_error(send: Send, request_id: str) -> None:
        await _send_problem(
            send,
            status=500,
            title="Internal Server Error",
            detail="an unexpected error occurred; quote the request_id when reporting it",
            code="internal_error",
            request_id=request_id,
        )

    @staticmethod
    async def _shutting_down(send: Send, request_id: str) -> None:
        await _send_problem(
            send,
            status=503,
            title="Service Unavailable",
            detail="the server is shutting down; retry the request",
            code="shutting_down",
            request_id=request_id,
            headers=[(b"retry-after", b"1"), (b"connection", b"close")],
        )


async def _refuse_nul(scope: Scope, send: Send, request_id: str) -> None:
    """422 for a NUL character in the path or a query parameter, which PostgreSQL cannot store
    or compare: the same answer on every database, before any route runs."""
    query = urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    fields = [f"query.{name}" for name, value in query if "\x00" in name or "\x00" in value]
    fields = fields or ["path"]
    await _send_problem(
        send,
        status=422,
        title=HTTPStatus(422).phrase,
        detail=f"invalid request: {', '.join(fields)}",
        code="validation_error",
        request_id=request_id,
        errors=[
            {
                "field": field,
                "message": "NUL characters (%00) are not allowed",
                "type": "nul_character",
            }
            for field in fields
        ],
    )


class CacheControlRules:
    """`Cache-Control` values by path prefix, for successful GET/HEAD responses (the longest
    prefix wins; a response that sets its own keeps it)."""

    def __init__(self, rules: Mapping[str, str]) -> None:
        # Longest prefix first, so "/api/static" beats "/api".
        self.rules = sorted(
            ((prefix, value.encode("latin-1")) for prefix, value in rules.items()),
            key=lambda rule: len(rule[0]),
            reverse=True,
        )

    def value(self, method: str, path: str) -> bytes | None:
        """The value for a request, if its response is to carry one (when it succeeds)."""
        if method == "GET" or method == "HEAD":
            for prefix, value in self.rules:
                if path.startswith(prefix):
                    return value
        return None


def _add_cache_control(headers: list[tuple[bytes, bytes]], value: bytes) -> None:
    # ASGI response header names are lowercase (the spec requires it; Starlette's responses
    # lowercase what a handler passes), so no per-header `.lower()`.
    for name, _ in headers:
        if name == b"cache-control":
            return
    headers.append((b"cache-control", value))


class BodyTooLargeError(HTTPException):
    """Raised from `receive` once a body passes its limit; answered 413 by errors.py."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds this operation's limit of {limit} bytes")
        self.limit = limit


class BodyMiddleware:
    """Bodies, both ways: caps what a request sends, gzips what a response sends back.

    The request body's cap is MAX_BODY_BYTES, or the limit its route or router declares
    (`APIRouter(max_body_size=...)`, as bulk ingest does). A declared Content-Length over the
    limit is answered 413 before a byte of the body is read; a body that streams past it
    (chunked, or longer than declared) stops the read with the same 413. Routes with a limit
    of their own are few, so finding one is a short scan.

    Responses to clients that accept gzip go through Starlette's `GZipResponder` (bodies of
    at least `gzip_minimum_size` bytes, at `gzip_level`); others are left untouched
    (Starlette's `GZipMiddleware` wraps them too, only to add `Vary`: ~15 us per request
    here), as are requests to `precompressed` paths, whose routes send bytes compressed ahead
    of time (the responder would only let them through, after its per-request set-up and
    header checks).

    One layer for both, with one pass over the request headers: each layer costs every
    request a call and an await of its own.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        routes: Sequence[tuple[APIRoute, int]] = (),
        gzip_minimum_size: int,
        gzip_level: int,
        precompressed: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.default = max_body
        self.routes = [(route, limit) for route, limit in routes if limit != max_body]
        self.minimum_size = gzip_minimum_size
        self.level = gzip_level
        self.precompressed = frozenset(precompressed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        seen_length = chunked = gzip = False
        for name, value in scope["headers"]:
            if name == b"content-length" and not seen_length:
                seen_length = True
                declared = int(value) if value.isdigit() else None
            elif name == b"accept-encoding" and b"gzip" in value:
                gzip = True
            elif name == b"transfer-encoding":
                chunked = True
        app = self.app
        if gzip and scope["path"] not in self.precompressed:
            app = GZipResponder(
                app,
                self.minimum_size,
                compresslevel=self.level,
                exclude_content_types=DEFAULT_EXCLUDED_CONTENT_TYPES,
            )
        # The limit is looked up only for a request that has a body: most have none.
        limit = -1
        if declared is not None and declared > (limit := self._limit(scope)):
            await _send_problem(
                send,
                status=413,
                title="Content Too Large",
                detail=BodyTooLargeError(limit).detail,
                code="body_too_large",
                request_id=request_id_var.get() or "",
                headers=[(b"connection", b"close")],
                limit=limit,
            )
            return
        if not (seen_length or chunked) and scope.get("http_version") in _LENGTH_FRAMED:
            # HTTP/1.x: without Content-Length or Transfer-Encoding a request has no body.
            await app(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received, limit
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if limit < 0:
                    limit = self._limit(scope)
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        await app(scope, receive_within_limit, send)

    def _limit(self, scope: Scope) -> int:
        for route, limit in self.routes:
            if scope["method"] in (route.methods or ()) and route.path_regex.match(scope["path"]):
                return limit
        return self.default


def body_limits(
    routes: Iterable[BaseRoute], default: int, routers: Sequence[tuple[APIRouter, int]] = ()
) -> Iterator[tuple[APIRoute, int]]:
    """Every API route with its body limit: its own (`max_body_size`), else its router's (from
    `routers`, or the router's `max_body_size`), else `default`."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route, route.max_body_size if route.max_body_size is not None else default
        included = getattr(route, "original_router", None)
        if included is not None:
            own = next((n for r, n in routers if r is included), included.max_body_size)
            yield from body_limits(included.routes, own if own is not None else default, routers)


async def _send_problem(
    send: Send,
    *,
    status: int,
    title: str,
    detail: str,
    code: str,
    request_id: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> None:
    """An application/problem+json answer, sent straight over ASGI (no response started yet)."""
    body = orjson.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": request_id,
            **extra,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
