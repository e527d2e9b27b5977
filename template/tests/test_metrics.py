"""Prometheus metrics per route template."""

from __future__ import annotations

import pytest
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


def test_latency_buckets_count_each_duration_at_or_below_their_bound(app: FastAPI) -> None:
    metrics = app.state.metrics
    for seconds in (0.005, 0.0051, 0.3, 11.0):
        metrics.started()
        metrics.observe("GET", "/buckets", 200, seconds)

    def sample(name: str, **labels: str) -> float | None:
        value: float | None = metrics.registry.get_sample_value(name, labels)
        return value

    route = {"method": "GET", "route": "/buckets"}
    buckets = [
        sample("http_request_duration_seconds_bucket", le=le, **route)
        for le in ("0.005", "0.01", "0.5", "10.0", "+Inf")
    ]
    assert buckets == [1, 2, 3, 3, 4]
    assert sample("http_request_duration_seconds_count", **route) == 4
    assert sample("http_request_duration_seconds_sum", **route) == pytest.approx(11.3101)
    assert sample("http_requests_total", status="200", **route) == 4
    assert sample("http_requests_in_flight") == 0
