"""The sweeper: re-enqueues jobs the queue never ran, purges old finished ones, and counts
the jobs waiting (the `jobs_queued` metric, where it runs with metrics).

It runs wherever jobs run: in the worker, or in `serve` when jobs run in-process. Several
sweepers at once are harmless: a job delivered twice still runs once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from ..db import Database
from ..observability import Metrics
from ..resources import FailureLog, stop_task
from ..settings import Settings
from . import JobQueue
from .service import purge_finished, queued_by_kind, requeue_candidates

logger = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0


class Sweeper:
    name = "job_sweeper"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        queue: JobQueue,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._database = database
        self._queue = queue
        self._task: asyncio.Task[None] | None = None
        self._last_purge = float("-inf")
        self._seen_kinds: set[str] = set()
        self._failures = FailureLog(logger, "job sweep failed; retrying every round")

    async def open(self) -> None:
        self._task = asyncio.create_task(self._sweep_forever(), name="job-sweeper")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def check(self) -> None:
        """Readiness: degraded (still ready) while sweeps keep failing."""
        self._failures.check()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                # The database or the broker is down, or not migrated: try again next round.
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            await asyncio.sleep(self._settings.job_sweep_interval)

    def _record_queued(self, metrics: Metrics, queued: dict[str, int]) -> None:
        gauge = metrics.jobs_queued
        # A kind with nothing left waiting reads 0, not its last count.
        for kind in self._seen_kinds - queued.keys():
            gauge.labels(kind).set(0)
        for kind, count in queued.items():
            gauge.labels(kind).set(count)
        self._seen_kinds |= queued.keys()

    async def sweep(self) -> int:
        """One round; returns how many jobs were handed to the queue again."""
        settings = self._settings
        async with self._database.sessions.begin() as session:
            candidates = await requeue_candidates(
                session,
                pending_for=settings.job_pending_timeout,
                # A live attempt ends at job_timeout; past that plus a grace period, its
                # worker is gone.
                lost_after=settings.job_timeout + settings.job_pending_timeout,
            )
            queued = await queued_by_kind(session) if self._metrics is not None else {}
        requeued = 0
        for job_id, kind in candidates.items():
            try:
                async with asyncio.timeout(settings.job_enqueue_timeout):
                    await self._queue.enqueue(job_id)
            except Exception as exc:
                logger.warning("sweeper could not enqueue; will retry", extra={"error": repr(exc)})
                break
            requeued += 1
            if self._metrics is not None:
                self._metrics.jobs_swept.labels(kind).inc()
        if self._metrics is not None:
            self._record_queued(self._metrics, queued)
        if requeued:
            logger.info("sweeper re-enqueued jobs", extra={"count": requeued})
        if time.monotonic() - self._last_purge >= PURGE_INTERVAL_SECONDS:
            self._last_purge = time.monotonic()
            async with self._database.sessions.begin() as session:
                purged = await purge_finished(
                    session, older_than=timedelta(days=settings.job_retention_days)
                )
            if purged:
                logger.info("purged finished jobs", extra={"count": purged})
        return requeued
