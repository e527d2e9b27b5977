"""Jobs run as asyncio tasks inside this process: zero setup, and NOT durable.

A job runs in the web process, sharing its CPU with requests, and a crash interrupts it. The
job table still records it, so the sweeper of the next start runs it again; nothing is
forgotten, but nothing runs while the process is down. Use a broker in production.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import Context
from typing import TYPE_CHECKING

from opentelemetry.context import Context as TraceContext
from opentelemetry.context import get_current as current_trace_context
from opentelemetry.trace import SpanKind

from ..db import Database
from ..observability import Metrics
from ..settings import Settings
from .service import Outcome, RetryPolicy, execute

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    pass


class InProcessQueue:
    """At most `job_concurrency` jobs at once and `job_inprocess_backlog` waiting."""

    name = "job_queue"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        reason: str,
        metrics: Metrics | None = None,
    ) -> None:
        self._database = database
        self._metrics = metrics
        self._policy = RetryPolicy.from_settings(settings)
        self._concurrency = settings.job_concurrency
        self._backlog = settings.job_inprocess_backlog
        self._shutdown_timeout = settings.graceful_shutdown_seconds
        self._reason = reason
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: The tasks running a job now; the others wait for a slot or a retry's delay.
        self._running: set[asyncio.Task[None]] = set()
        self._tracer: Tracer | None = None

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """Run each job in a span, in the trace of the request that submitted it."""
        self._tracer = tracer_provider.get_tracer(__name__)

    async def open(self) -> None:
        logger.warning(
            "jobs run in-process (%s): not durable, and they share the CPU with requests",
            self._reason,
        )
        self._slots = asyncio.Semaphore(self._concurrency)

    async def enqueue(self, job_id: str, *, delay: float = 0.0) -> None:
        if self._slots is None:
            raise RuntimeError("the in-process queue is not open")
        if len(self._tasks) >= self._backlog:
            # The job stays pending in the table; the sweeper offers it again later.
            raise QueueFullError(f"{len(self._tasks)} jobs already waiting")
        # A context of its own, not the submitting request's: the job outlives the request, and
        # finds what it needs (the request id, for its log lines) in its row, as in a worker.
        # Only the submitter's trace goes along, as its span's parent.
        trace = current_trace_context() if self._tracer is not None else None
        task = asyncio.create_task(
            self._run(self._slots, job_id, delay, trace), name=f"job-{job_id}", context=Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, slots: asyncio.Semaphore, job_id: str, delay: float, trace: TraceContext | None
    ) -> None:
        retry_in: float | None = delay
        while retry_in is not None:
            await asyncio.sleep(retry_in)
            async with slots:
                task = asyncio.current_task()
                assert task is not None
                self._running.add(task)
                try:
                    outcome = await self._execute(job_id, trace)
                except Exception:
                    logger.exception("job delivery failed; the sweeper will retry it")
                    return
                finally:
                    self._running.discard(task)
            retry_in = outcome.retry_in

    async def _execute(self, job_id: str, trace: TraceContext | None) -> Outcome:
        sessions, policy, metrics = self._database.sessions, self._policy, self._metrics
        if self._tracer is None:
            return await execute(sessions, job_id, policy, metrics)
        with self._tracer.start_as_current_span(
            "job process",
            context=trace,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "in-process", "messaging.message.id": job_id},
        ):
            return await execute(sessions, job_id, policy, metrics)

    async def close(self) -> None:
        """Let running jobs finish for a while, then cancel them (they return to pending).

        Jobs still waiting are dropped at once: they are pending in the job table, and the
        sweeper of the next start runs them. Shutting down must not work through a backlog.
        """
        self._slots = None
        waiting = self._tasks - self._running
        for task in waiting:
            task.cancel()
        unfinished: set[asyncio.Task[None]] = set()
        if self._running:
            _, unfinished = await asyncio.wait(self._running, timeout=self._shutdown_timeout)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*waiting, *unfinished, return_exceptions=True)
