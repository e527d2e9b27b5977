"""Calling an ASGI app in-process, without sockets: what the benchmarks time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


def get_scope(
    path: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: str = "127.0.0.1",
) -> dict[str, Any]:
    """An HTTP scope (a GET unless told) from `client`; pass a copy per call, as a server
    would."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), *(headers or [])],
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def receiver(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A `receive` callable that delivers `body` in one message."""
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive_body() -> dict[str, Any]:
        return dict(message)

    return receive_body


async def expect_200(message: dict[str, Any]) -> None:
    """The `send` callable: drops the response, fails the run on any status but 200."""
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"status {message['status']}")


async def expect_success(message: dict[str, Any]) -> None:
    """The `send` callable: drops the response, fails the run on any status but 2xx."""
    if message["type"] == "http.response.start" and not 200 <= message["status"] < 300:
        raise RuntimeError(f"status {message['status']}")
