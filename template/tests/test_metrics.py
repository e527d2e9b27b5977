"""Prometheus metrics per route template."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient


async def test_requests_are_counted_per_route_template(app: FastAPI, client: AsyncClient) -> None:
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_api_route("/items/{item_id}", item)
    for item_id in (1, 2, 3):
        await client.get(f"/items/{item_id}")
    await client.get("/nowhere")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="GET",route="/items/{item_id}",status="200"} 3.0' in text
    assert 'route="/items/1"' not in text  # templates, not raw paths: bounded cardinality
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/items/{item_id}"} 3.0' in text
    # The scrape itself is in flight while the exposition is generated.
    assert "http_requests_in_flight 1.0" in text
