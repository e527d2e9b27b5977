"""Health probes: liveness, readiness per resource, and the autoscaling signal.

Liveness says only that the process answers. Readiness checks every resource and names the
one that failed. The scaling endpoint reports CPU and memory sampled in the background, so a
probe never blocks the event loop (a probe calling `psutil.cpu_percent(interval=1)` stalls
every request on the worker for a full second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
import psutil
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from .deps import settings_of
from .observability import Metrics, request_id_var
from .resources import DEGRADED, registry, stop_task
from .routing import PUBLIC
from .settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])

_LIVE_BODY = b'{"status":"alive"}'
# What orchestrators and load balancers call every few seconds (ACCESS_LOG_PROBES).
PROBE_PATHS = ("/health/live", "/health/ready")
_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class UsageSample:
    cpu_percent: float
    memory_percent: float
    source: Literal["cgroup", "process"]
    sampled_at: float


class _UsageReader:
    """Reads CPU and memory use, preferring the container's cgroup (v2) over the process.

    In a container the cgroup covers every worker process and its limits are the capacity an
    autoscaler compares against; outside one, this process against the machine is the signal.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cgroup = (_CGROUP / "cpu.stat").is_file() and (_CGROUP / "memory.current").is_file()
        self._last_cpu_usec, self._last_wall = self._cpu_usage_usec(), time.monotonic()
        self._process.cpu_percent(None)  # primes the delta for the first real reading

    def read(self) -> UsageSample:
        if self._cgroup:
            cpu = self._cgroup_cpu_percent()
            memory = self._cgroup_memory_percent()
            if memory is not None:
                return UsageSample(cpu, memory, "cgroup", time.time())
        cpu = self._process.cpu_percent(None) / _cpu_capacity()
        memory = self._process.memory_info().rss / psutil.virtual_memory().total * 100
        return UsageSample(round(cpu, 2), round(memory, 2), "process", time.time())

    def _cpu_usage_usec(self) -> int:
        if not self._cgroup:
            return 0
        for line in (_CGROUP / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value)
        return 0

    def _cgroup_cpu_percent(self) -> float:
        usage, wall = self._cpu_usage_usec(), time.monotonic()
        elapsed_usec = (wall - self._last_wall) * 1_000_000
        percent = (usage - self._last_cpu_usec) / elapsed_usec / _cpu_capacity() * 100
        self._last_cpu_usec, self._last_wall = usage, wall
        return round(max(percent, 0.0), 2)

    @staticmethod
    def _cgroup_memory_percent() -> float | None:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int((_CGROUP / "memory.current").read_text())
        return round(current / int(limit) * 100, 2)


def _cpu_capacity() -> float:
    """CPUs this process may use: the cgroup quota if one is set, else its affinity mask."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (_CGROUP / "cpu.max").read_text().split()
        if quota != "max":
            return max(int(quota) / int(period), 0.01)
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 1)


class ScalingMonitor:
    """Samples usage every `scaling_sample_interval` seconds in a background task."""

    name = "scaling"

    def __init__(self, settings: Settings) -> None:
        self.interval = settings.scaling_sample_interval
        self.cpu_target = settings.scaling_cpu_target
        self.memory_target = settings.scaling_memory_target
        self._reader: _UsageReader | None = None
        self._task: asyncio.Task[None] | None = None
        self.latest: UsageSample | None = None

    async def open(self) -> None:
        self._reader = await asyncio.to_thread(_UsageReader)
        self.latest = await asyncio.to_thread(self._reader.read)
        self._task = asyncio.create_task(self._sample_forever(self._reader), name="scaling-sampler")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _sample_forever(self, reader: _UsageReader) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.latest = await asyncio.to_thread(reader.read)
            except Exception:
                logger.exception("usage sampling failed; keeping the previous sample")


class ScalingTargets(BaseModel):
    cpu_percent: int
    memory_percent: int


class ScalingReport(BaseModel):
    cpu_percent: float
    memory_percent: float
    source: Literal["cgroup", "process"]
    sampled_at: float
    targets: ScalingTargets
    load_ratio: float
    recommendation: Literal["scale_out", "hold", "scale_in"]


def recommend(sample: UsageSample, cpu_target: int, memory_target: int) -> ScalingReport:
    """The autoscaler's rule: over either target, add capacity; well under both, remove some.

    `load_ratio` is what a HorizontalPodAutoscaler multiplies the replica count by.
    """
    ratio = max(sample.cpu_percent / cpu_target, sample.memory_percent / memory_target)
    if ratio > 1:
        recommendation: Literal["scale_out", "hold", "scale_in"] = "scale_out"
    elif ratio < 0.5:
        recommendation = "scale_in"
    else:
        recommendation = "hold"
    return ScalingReport(
        cpu_percent=sample.cpu_percent,
        memory_percent=sample.memory_percent,
        source=sample.source,
        sampled_at=sample.sampled_at,
        targets=ScalingTargets(cpu_percent=cpu_target, memory_percent=memory_target),
        load_ratio=round(ratio, 3),
        recommendation=recommendation,
    )


@router.get(
    "/live",
    openapi_extra=PUBLIC,
    summary="Liveness: the process answers",
    description="Never touches a dependency, so a database outage does not restart the pod.",
    responses={200: {"content": {"application/json": {"example": {"status": "alive"}}}}},
)
async def live() -> Response:
    return Response(_LIVE_BODY, media_type="application/json")


@router.get(
    "/ready",
    openapi_extra=PUBLIC,
    summary="Readiness: every resource answers",
    description=(
        "Checks each resource concurrently (timeout `READINESS_TIMEOUT`). "
        "503 names the resources that failed. A resource the service works around when it is "
        "down (a cache) is reported as `degraded: ...` and does not fail readiness. Where "
        "internals are hidden (EXPOSE_INTERNALS, off in production) each check says only "
        "`ok`, `degraded` or `failed`; the reasons are logged under the request id."
    ),
    responses={503: {"description": "At least one resource failed its check"}},
)
async def ready(request: Request) -> Response:
    settings = settings_of(request)
    checks = await registry(request).check(settings.readiness_timeout)
    metrics: Metrics = request.app.state.metrics
    metrics.dependencies(checks)
    failed = sorted(
        name
        for name, result in checks.items()
        if result != "ok" and not result.startswith(DEGRADED)
    )
    if any(result != "ok" for result in checks.values()):
        # The reasons, under this request's id, for whoever reads the log.
        logger.warning("readiness check", extra={"checks": checks})
        if not settings.shows_internals:
            # Error text names hosts, drivers and versions: not for whoever can reach the API.
            checks = {name: _outcome(result) for name, result in checks.items()}
    if not failed:
        return Response(
            orjson.dumps({"status": "ready", "checks": checks}), media_type="application/json"
        )
    body = {
        "status": "unavailable",
        "detail": f"not ready: {', '.join(failed)}",
        "failed": failed,
        "checks": checks,
        "request_id": request_id_var.get(),
    }
    return Response(orjson.dumps(body), status_code=503, media_type="application/json")


def _outcome(result: str) -> str:
    if result == "ok":
        return "ok"
    return "degraded" if result.startswith(DEGRADED) else "failed"


@router.get(
    "/scaling",
    openapi_extra=PUBLIC,
    summary="Autoscaling signal: CPU, memory and a recommendation",
    description=(
        "Usage sampled in the background every `SCALING_SAMPLE_INTERVAL` seconds against the "
        "targets `SCALING_CPU_TARGET` and `SCALING_MEMORY_TARGET`, the same numbers as the "
        "autoscaler manifests. Not served where internals are hidden (EXPOSE_INTERNALS, off "
        "in production)."
    ),
    response_model=ScalingReport,
)
async def scaling(request: Request) -> ScalingReport:
    monitor = registry(request).get(ScalingMonitor)
    if monitor.latest is None:  # only before start-up completes
        monitor.latest = UsageSample(0.0, 0.0, "process", time.time())
    return recommend(monitor.latest, monitor.cpu_target, monitor.memory_target)
