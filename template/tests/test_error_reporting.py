"""Error reporting to Sentry: on with SENTRY_DSN, tagged with the request id; off without it.

A loopback HTTP server stands in for Sentry's ingest endpoint: the DSN points at it, and it
keeps every envelope the SDK posts.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI

from .conftest import AppFactory, client_for

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


@pytest.fixture
def ingest() -> Iterator[tuple[Ingest, str]]:
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://public@127.0.0.1:{server.server_port}/{PROJECT_ID}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def no_global_client() -> Iterator[None]:
    """Whatever a test initialises, the next test starts without a Sentry client."""
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def add_failing_route(app: FastAPI) -> None:
    async def fail() -> None:
        raise RuntimeError("the ledger is out of balance")

    app.add_api_route("/fail", fail)


@pytest.mark.usefixtures("no_global_client")
async def test_an_unhandled_error_is_reported_with_its_request_id(
    app_with: AppFactory, ingest: tuple[Ingest, str]
) -> None:
    received, dsn = ingest
    async with app_with(sentry_dsn=dsn) as app, client_for(app) as client:
        add_failing_route(app)
        response = await client.get("/fail")
        sentry_sdk.flush(timeout=30)  # the envelope is posted and answered

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    request_id = response.json()["request_id"]
    assert request_id == response.headers["X-Request-ID"]
    assert f"/api/{PROJECT_ID}/envelope/" in received.paths
    events = received.events()
    assert len(events) == 1, events
    event = events[0]
    assert event["tags"]["request_id"] == request_id
    assert event["environment"] == "test"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "the ledger is out of balance"
    assert event["request"]["url"].endswith("/fail")
    assert {"fastapi", "starlette"} <= set(sentry_sdk.get_client().integrations)


@pytest.mark.usefixtures("no_global_client")
async def test_without_a_dsn_sentry_is_neither_imported_nor_started(
    app_with: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `import sentry_sdk` fails while the module's entry is None: the app must never try.
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    async with app_with() as app, client_for(app) as client:
        add_failing_route(app)
        response = await client.get("/fail")
    monkeypatch.undo()

    assert response.status_code == 500
    assert not sentry_sdk.get_client().is_active()
