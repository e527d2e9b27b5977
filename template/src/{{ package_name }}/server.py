"""How `serve` runs uvicorn: its options from the settings, and limits on request heads.

uvicorn's httptools protocol (the fast one, used when httptools is installed) reads a request
line and headers of any size and number: a 30 MB header took 8.8 s to arrive and was accepted.
uvicorn has no option for that (`h11_max_incomplete_event_size` covers only the slower h11
protocol), so `HeadLimitedProtocol` counts the head's bytes as they arrive and its headers as
they are parsed, and answers 431 as soon as either passes HTTP_MAX_HEADER_BYTES or
HTTP_MAX_HEADERS, without waiting for the rest.
"""

from __future__ import annotations

import functools
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .settings import Settings


class HeadTooLargeError(Exception):
    pass


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request head capped in bytes and in headers."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        *,
        max_head_bytes: int,
        max_headers: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, server_state, app_state, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.in_head = True
        self.head_bytes = 0
        self.tail = b""
        self.head_too_large: str | None = None

    def data_received(self, data: bytes) -> None:
        # Counted before parsing: httptools buffers a header until it is complete, so a
        # header that never ends would otherwise grow without a bound.
        if self.in_head:
            end = (self.tail + data).find(b"\r\n\r\n")
            self.head_bytes += len(data) if end == -1 else max(end + 4 - len(self.tail), 0)
            self.tail = data[-3:]
            if self.head_bytes > self.max_head_bytes:
                self.head_too_large = f"request line and headers over {self.max_head_bytes} bytes"
                self.send_400_response(self.head_too_large)
                return
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_headers:
            self.head_too_large = f"more than {self.max_headers} headers"
            raise HeadTooLargeError(self.head_too_large)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes, self.tail = True, 0, b""

    def send_400_response(self, msg: str) -> None:
        # The parser turns an exception raised in a callback into its own error, which
        # uvicorn answers 400: answer what it was instead (431, as the head was too large).
        if self.head_too_large is None:
            super().send_400_response(msg)
            return
        body = f"431 Request Header Fields Too Large: {self.head_too_large}".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `serve` passes to uvicorn besides the app, the address and the worker count."""
    return {
        "http": functools.partial(
            HeadLimitedProtocol,
            max_head_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
        ),
        # The same caps for the h11 protocol, should it be chosen.
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "log_config": None,  # our JSON logging, configured in create_app
        "access_log": False,  # the request-context middleware writes one line per request
        "server_header": False,  # names the server software to anyone who asks
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
    }
