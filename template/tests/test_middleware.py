"""Request id, timing, access log, compression and cache headers, as a client sees them."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from httpx import AsyncClient

from .conftest import AppFactory, DatabaseOutage, LogLines, client_for, json_log_lines

BIG_JSON = json.dumps([{"id": i, "name": f"item {i}", "price": "12.50"} for i in range(200)])


def add_routes(app: FastAPI) -> None:
    async def big() -> Response:
        return Response(BIG_JSON, media_type="application/json")

    async def small() -> Response:
        return Response('{"ok":true}', media_type="application/json")

    async def self_cached() -> Response:
        return Response("{}", media_type="application/json", headers={"Cache-Control": "private"})

    app.add_api_route("/static/big", big, methods=["GET", "POST"])
    app.add_api_route("/static/private/small", small)
    app.add_api_route("/static/own", self_cached)
    app.add_api_route("/api/small", small)


@pytest.fixture
def access_log() -> Iterator[LogLines]:
    with json_log_lines("access") as lines:
        yield lines


async def test_request_id_is_generated(client: AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_valid_request_id_is_honoured(client: AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["X-Request-ID"] == "trace-abc.123"


@pytest.mark.parametrize("bad", ["has spaces in it", "x" * 129, "semi;colon", "<script>"])
async def test_invalid_request_id_is_replaced(client: AsyncClient, bad: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


async def test_process_time_header(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert 0 <= float(response.headers["X-Process-Time"]) < 5


async def test_one_json_access_line_per_request(app_with: AppFactory, access_log: LogLines) -> None:
    async with app_with(access_log_probes=True) as app, client_for(app) as client:
        response = await client.get("/health/live", headers={"X-Request-ID": "req-1"})
        await client.get("/no/such/route")

    lines = access_log()
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == response.headers["X-Request-ID"] == "req-1"
    assert (first["method"], first["path"], first["route"], first["status"]) == (
        "GET",
        "/health/live",
        "/health/live",
        200,
    )
    assert first["duration_ms"] >= 0
    assert (second["status"], second["route"]) == (404, "<unmatched>")


async def test_probes_are_not_access_logged_by_default(
    client: AsyncClient, access_log: LogLines
) -> None:
    await client.get("/health/live")
    await client.get("/health/ready")
    await client.get("/health/scaling")
    await client.get("/no/such/route")

    assert [line["path"] for line in access_log()] == ["/health/scaling", "/no/such/route"]


async def test_probes_are_access_logged_when_asked(
    app_with: AppFactory, access_log: LogLines
) -> None:
    async with app_with(access_log_probes=True) as app, client_for(app) as client:
        await client.get("/health/live")
        await client.get("/health/ready")

    assert [line["path"] for line in access_log()] == ["/health/live", "/health/ready"]


async def test_a_probe_answered_5xx_is_access_logged(
    database_outage: DatabaseOutage, access_log: LogLines
) -> None:
    async with client_for(database_outage.app) as client:
        await database_outage.cut()
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")

    assert (ready.status_code, live.status_code) == (503, 200)
    lines = access_log()
    assert [(line["path"], line["status"]) for line in lines] == [("/health/ready", 503)]
    assert lines[0]["request_id"] == ready.headers["X-Request-ID"]


async def test_large_responses_are_gzipped_small_ones_are_not(app_with: AppFactory) -> None:
    async with app_with() as app:
        add_routes(app)
        async with client_for(app) as client:
            big = await client.get("/static/big", headers={"Accept-Encoding": "gzip"})
            small = await client.get("/api/small", headers={"Accept-Encoding": "gzip"})
            plain = await client.get("/static/big", headers={"Accept-Encoding": "identity"})

    assert big.headers["Content-Encoding"] == "gzip"
    assert big.text == BIG_JSON  # httpx decodes it
    assert int(big.headers["Content-Length"]) < len(BIG_JSON) / 4
    assert "Content-Encoding" not in small.headers
    assert "Content-Encoding" not in plain.headers


async def test_gzip_threshold_and_level_come_from_settings(app_with: AppFactory) -> None:
    sizes = {}
    for level in (1, 9):
        async with app_with(gzip_minimum_size=5, gzip_level=level) as app:
            add_routes(app)
            async with client_for(app) as client:
                small = await client.get("/api/small", headers={"Accept-Encoding": "gzip"})
                big = await client.get("/static/big", headers={"Accept-Encoding": "gzip"})
        assert small.headers["Content-Encoding"] == "gzip"
        sizes[level] = int(big.headers["Content-Length"])
    # Each level yields exactly what zlib produces at that level.
    expected = {level: len(gzip.compress(BIG_JSON.encode(), level)) for level in sizes}
    assert expected[1] != expected[9]
    assert sizes == expected


async def test_cache_control_by_longest_prefix(app_with: AppFactory) -> None:
    rules = {"/static": "public, max-age=3600", "/static/private": "no-store"}
    async with app_with(cache_control=rules) as app:
        add_routes(app)
        async with client_for(app) as client:
            public = await client.get("/static/big")
            private = await client.get("/static/private/small")
            own = await client.get("/static/own")
            posted = await client.post("/static/big")
            other = await client.get("/api/small")

    assert public.headers["Cache-Control"] == "public, max-age=3600"
    assert private.headers["Cache-Control"] == "no-store"
    assert own.headers["Cache-Control"] == "private"  # a route's own header wins
    assert "Cache-Control" not in posted.headers  # only GET and HEAD are cacheable
    assert "Cache-Control" not in other.headers


async def test_probes_are_never_cached(client: AsyncClient) -> None:
    assert (await client.get("/health/live")).headers["Cache-Control"] == "no-store"
