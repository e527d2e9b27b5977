"""Run in a generated project whose components.py plugs in the notes flavor:

    PYTHONPATH=src python check_notes.py <package>

Exits non-zero (an AssertionError) unless the service serves the notes domain: its routes
with authentication, ownership and the rate limit, its resource in readiness, its job kind
through /api/jobs, its CLI command and its own setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import os
import sys
from typing import Any

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

PATIENCE = 30.0


def check_cli(package: str) -> None:
    cli: Any = importlib.import_module(f"{package}.cli")
    assert cli.main(["migrate"]) == 0
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert cli.main(["notes-limits"]) == 0
    assert "at most 40 characters" in output.getvalue(), output.getvalue()


async def check_service(package: str) -> None:
    app_module: Any = importlib.import_module(f"{package}.app")
    settings_module: Any = importlib.import_module(f"{package}.settings")
    settings = settings_module.Settings(rate_limit_routes={"notes": "3/minute"})
    app = app_module.create_app(settings, configure_logs=False)
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client,
    ):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["notes"] == "ok", ready.text

        created = await client.post("/api/notes", json={"text": "buy milk"}, headers=alice)
        assert created.status_code == 201, created.text
        assert created.headers["X-RateLimit-Remaining"] == "2"
        note = created.json()
        assert (await client.get(f"/api/notes/{note['id']}", headers=alice)).json() == note
        assert (await client.get(f"/api/notes/{note['id']}", headers=bob)).status_code == 404
        assert (await client.get(f"/api/notes/{note['id']}")).status_code == 401

        too_long = await client.post("/api/notes", json={"text": "x" * 41}, headers=alice)
        assert too_long.status_code == 422, too_long.text
        assert too_long.json()["errors"][0]["field"] == "body.text"
        # The limit counts per author: Alice's fourth note this minute is refused, Bob's not.
        assert (await client.post("/api/notes", json={"text": "a"}, headers=alice)).is_success
        refused = await client.post("/api/notes", json={"text": "b"}, headers=alice)
        assert refused.status_code == 429, refused.text
        assert (await client.post("/api/notes", json={"text": "c"}, headers=bob)).is_success

        job = {"kind": "notes.word_count", "arguments": {"text": "one two three"}}
        submitted = await client.post("/api/jobs", json=job, headers=alice)
        assert submitted.status_code == 202, submitted.text
        url = f"/api/jobs/{submitted.json()['id']}"
        assert (await client.get(url, headers=bob)).status_code == 404
        async with asyncio.timeout(PATIENCE):
            while (status := (await client.get(url, headers=alice)).json())["state"] != (
                "succeeded"
            ):
                assert status["state"] in ("pending", "running"), status
                await asyncio.sleep(0.05)
        assert status["result"] == {"words": 3}

        schema = (await client.get("/openapi.json")).json()
        assert "AuthorToken" in schema["components"]["securitySchemes"]
        assert "/api/notes" in schema["paths"]


if __name__ == "__main__":
    os.environ["NOTES_MAX_LENGTH"] = "40"
    check_cli(sys.argv[1])
    asyncio.run(check_service(sys.argv[1]))
    print("the notes flavor works")
