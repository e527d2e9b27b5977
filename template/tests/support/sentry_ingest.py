"""A stand-in for Sentry's ingest endpoint on loopback: a DSN that points at it, and every
envelope the SDK posts there, parsed."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROJECT_ID = 1


class Ingest:
    """The envelopes posted to a fake Sentry, parsed into their items."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.items: list[tuple[dict[str, Any], bytes]] = []
        self._lock = threading.Lock()

    def receive(self, path: str, body: bytes) -> None:
        # An envelope: a header line, then for each item a header line and its payload.
        _, *rest = body.split(b"\n")
        items = []
        while len(rest) >= 2:
            header, payload, *rest = rest
            if header.strip():
                items.append((json.loads(header), payload))
        with self._lock:
            self.paths.append(path)
            self.items.extend(items)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for header, body in self.items if header["type"] == "event"]


@contextmanager
def fake_sentry() -> Iterator[tuple[Ingest, str]]:
    """A fake ingest server and the DSN that points at it."""
    received = Ingest()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.receive(self.path, body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test's output to the test

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll: `shutdown()` waits for the loop to see its flag (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield received, f"http://public@127.0.0.1:{server.server_port}/{PROJECT_ID}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
