"""Recording jobs, running them once, and estimating when they finish.

The job row's state transitions are the guard against double work: a delivery claims the job
with one conditional UPDATE, and the handler's writes commit in the same transaction as the
UPDATE that marks it succeeded, conditional on still holding the claim. A job delivered twice,
or re-run after its worker died, therefore has its effect exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import JsonValue
from sqlalchemy import Update, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..errors import AppError, NotFoundError
from ..observability import Metrics, request_id_var
from ..resources import Checkable, Degraded
from ..settings import Settings
from ..tracing import Traceable
from . import JobContext, JobQueue, job_kind, load_job_modules
from .models import FINISHED_STATES, Job, JobState

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# Durations of this many recent successes of a kind give the completion estimate.
ESTIMATE_SAMPLE = 20


class UnknownJobKindError(AppError):
    status_code = 422
    code = "unknown_job_kind"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout: float
    max_attempts: int
    backoff: float
    backoff_max: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            timeout=settings.job_timeout,
            max_attempts=settings.job_max_attempts,
            backoff=settings.job_retry_backoff,
            backoff_max=settings.job_retry_backoff_max,
        )

    def delay(self, attempt: int) -> float:
        """Exponential backoff: `backoff`, then doubling, capped at `backoff_max`."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.backoff_max))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a delivery did. `retry_in` is set when the queue should deliver it again."""

    state: JobState | None  # None: nothing to do (finished already, or claimed elsewhere)
    retry_in: float | None = None


class _Superseded(Exception):
    """The claim was lost while the handler ran (the job was re-run elsewhere)."""


async def record(
    session: AsyncSession, kind: str, arguments: dict[str, Any], owner: str | None = None
) -> Job:
    now = utcnow()
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        owner=owner,
        arguments=arguments,
        request_id=request_id_var.get(),
        state=JobState.PENDING,
        attempts=0,
        created_at=now,
        available_at=now,
    )
    session.add(job)
    await session.commit()
    return job


async def execute(
    sessions: Sessions, job_id: str, policy: RetryPolicy, metrics: Metrics | None = None
) -> Outcome:
    """Run one delivery of a job: claim it, run its handler, record the outcome (and, given
    `metrics`, the attempt's duration by kind and outcome)."""
    async with sessions.begin() as session:
        claimed = await _claim(session, job_id)
    if claimed is None:
        logger.info("job delivery skipped: not pending", extra={"job_id": job_id})
        return Outcome(None)
    # The submitting request's id, for every line logged while the job runs, in any process.
    token = request_id_var.set(claimed.request_id)
    try:
        return await _run(sessions, job_id, claimed, policy, metrics)
    finally:
        request_id_var.reset(token)


async def _run(
    sessions: Sessions,
    job_id: str,
    claimed: _Claim,
    policy: RetryPolicy,
    metrics: Metrics | None,
) -> Outcome:
    kind, arguments, attempt = claimed.kind, claimed.arguments, claimed.attempt
    registered = job_kind(kind)
    if registered is None:
        await _finish_failed(sessions, job_id, attempt, f"no handler for job kind '{kind}'")
        return Outcome(JobState.FAILED)
    if attempt > policy.max_attempts:
        # Its earlier attempts were lost with their workers: stop before it takes another down.
        error = f"gave up after {attempt - 1} attempts; the last worker was lost mid-job"
        await _finish_failed(sessions, job_id, attempt, error)
        return Outcome(JobState.FAILED)

    log = {"job_id": job_id, "kind": kind, "attempt": attempt}
    logger.info("job started", extra=log)
    started = time.perf_counter()

    def observe(outcome: str) -> None:
        if metrics is not None:
            metrics.job_duration.labels(kind, outcome).observe(time.perf_counter() - started)
            if outcome == "retried":
                metrics.jobs_retried.labels(kind).inc()

    try:
        async with sessions.begin() as session:
            context = JobContext(job_id, kind, arguments, attempt, session)
            async with asyncio.timeout(policy.timeout):
                result = await registered.handler(context)
            if not await _mark_succeeded(session, job_id, attempt, result):
                raise _Superseded
    except _Superseded:
        return _superseded(log)
    except asyncio.CancelledError:
        # Shutdown: hand the job back so the next delivery starts it afresh.
        await asyncio.shield(_release(sessions, job_id, attempt))
        logger.warning("job returned to pending: the worker is stopping", extra=log)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if attempt >= policy.max_attempts:
            if not await _finish_failed(sessions, job_id, attempt, error):
                return _superseded(log)
            logger.exception("job failed", extra=log)
            observe("failed")
            return Outcome(JobState.FAILED)
        delay = policy.delay(attempt)
        if not await _retry_later(sessions, job_id, attempt, error, delay):
            # A slow attempt failing after the sweeper re-ran the job (often because the rerun's
            # effect already exists): the rerun's outcome stands.
            return _superseded(log)
        logger.warning("job attempt failed; retrying", extra={**log, "error": error, "in": delay})
        observe("retried")
        return Outcome(JobState.PENDING, retry_in=delay)
    logger.info("job succeeded", extra=log)
    observe("succeeded")
    return Outcome(JobState.SUCCEEDED)


def _superseded(log: dict[str, Any]) -> Outcome:
    logger.warning("job result discarded: it was re-run elsewhere", extra=log)
    return Outcome(None)


@dataclass(frozen=True, slots=True)
class _Claim:
    kind: str
    arguments: dict[str, Any]
    attempt: int
    request_id: str | None


async def _claim(session: AsyncSession, job_id: str) -> _Claim | None:
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.PENDING)
            .values(
                state=JobState.RUNNING,
                attempts=Job.attempts + 1,
                started_at=utcnow(),
                finished_at=None,
            )
            .returning(Job.kind, Job.arguments, Job.attempts, Job.request_id)
        )
    ).one_or_none()
    return None if row is None else _Claim(row.kind, row.arguments, row.attempts, row.request_id)


def _holding_claim(job_id: str, attempt: int) -> Update:
    """An UPDATE that applies only while this delivery still holds the job."""
    return update(Job).where(
        Job.id == job_id, Job.state == JobState.RUNNING, Job.attempts == attempt
    )


async def _mark_succeeded(
    session: AsyncSession, job_id: str, attempt: int, result: JsonValue
) -> bool:
    done = await session.execute(
        _holding_claim(job_id, attempt).values(
            state=JobState.SUCCEEDED, result=result, error=None, finished_at=utcnow()
        )
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def _finish_failed(sessions: Sessions, job_id: str, attempt: int, error: str) -> bool:
    """Record the failure; False when this delivery no longer holds the job."""
    async with sessions.begin() as session:
        done = await session.execute(
            _holding_claim(job_id, attempt).values(
                state=JobState.FAILED, error=error, finished_at=utcnow()
            )
        )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def _retry_later(
    sessions: Sessions, job_id: str, attempt: int, error: str, delay: float
) -> bool:
    """Hand the job back for a later attempt; False when this delivery no longer holds it."""
    async with sessions.begin() as session:
        done = await session.execute(
            _holding_claim(job_id, attempt).values(
                state=JobState.PENDING,
                error=error,
                available_at=utcnow() + timedelta(seconds=delay),
            )
        )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def _release(sessions: Sessions, job_id: str, attempt: int) -> None:
    async with sessions.begin() as session:
        await session.execute(
            _holding_claim(job_id, attempt).values(
                state=JobState.PENDING, attempts=Job.attempts - 1, started_at=None
            )
        )


async def requeue_candidates(
    session: AsyncSession, *, pending_for: float, lost_after: float, limit: int = 500
) -> dict[str, str]:
    """Jobs the sweeper should hand to the queue again (id to kind), marked so the next sweep
    waits.

    Pending ones no worker has claimed for `pending_for` seconds (the broker was down at
    enqueue, or lost the message), and running ones older than `lost_after` seconds (their
    worker died: the attempt counts, so a job that kills its workers ends up failed).
    """
    now = utcnow()
    lost = await session.execute(
        update(Job)
        .where(
            Job.state == JobState.RUNNING,
            Job.started_at < now - timedelta(seconds=lost_after),
        )
        .values(state=JobState.PENDING, available_at=now, error="the worker was lost mid-job")
        .returning(Job.id, Job.kind)
    )
    found: dict[str, str] = dict(lost.all())
    stale = (
        select(Job.id, Job.kind)
        .where(
            Job.state == JobState.PENDING,
            Job.available_at < now - timedelta(seconds=pending_for),
        )
        .order_by(Job.available_at)
        .limit(limit)
    )
    stale_jobs: dict[str, str] = dict((await session.execute(stale)).all())
    if stale_jobs:
        await session.execute(
            update(Job).where(Job.id.in_(list(stale_jobs))).values(available_at=now)
        )
    return found | stale_jobs


async def queued_by_kind(session: AsyncSession) -> dict[str, int]:
    """How many jobs of each kind wait to run (pending, retries waiting out their backoff
    included)."""
    rows = await session.execute(
        select(Job.kind, func.count()).where(Job.state == JobState.PENDING).group_by(Job.kind)
    )
    return dict(rows.all())


async def purge_finished(session: AsyncSession, *, older_than: timedelta) -> int:
    purged = await session.execute(
        delete(Job).where(Job.state.in_(FINISHED_STATES), Job.finished_at < utcnow() - older_than)
    )
    return int(purged.rowcount)  # type: ignore[attr-defined]


async def owned_job(session: AsyncSession, job_id: str, owner: str) -> Job:
    """The job when `owner` submitted it. Another owner's job is the same NotFoundError as an
    id that does not exist, so job ids reveal nothing."""
    job = await session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise NotFoundError(f"no job with id '{job_id}'")
    return job


async def estimate_completion(session: AsyncSession, job: Job) -> datetime | None:
    """When an unfinished job should be done, from recent durations of its kind."""
    if job.state in FINISHED_STATES:
        return None
    recent = await session.execute(
        select(Job.started_at, Job.finished_at)
        .where(Job.kind == job.kind, Job.state == JobState.SUCCEEDED)
        .order_by(Job.finished_at.desc())
        .limit(ESTIMATE_SAMPLE)
    )
    durations = [
        (finished - started).total_seconds()
        for started, finished in recent
        if started is not None and finished is not None
    ]
    if not durations:
        return None
    typical = timedelta(seconds=sum(durations) / len(durations))
    started = as_utc(job.started_at)
    if job.state == JobState.RUNNING and started is not None:
        return started + typical
    return max(utcnow(), as_utc(job.available_at) or utcnow()) + typical


def broker_unreachable(exc: BaseException) -> Degraded:
    """A queue's readiness while its broker cannot be reached: degraded, not failed, because
    jobs are still accepted into the job table and enqueued by the sweeper once it is back."""
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Degraded(f"broker unreachable ({cause}); jobs wait in the job table until it is back")


class Jobs:
    """The app's side of the queue: record the job, then enqueue it; a resource in the lifespan."""

    name = "jobs"

    def __init__(self, settings: Settings, queue: JobQueue, metrics: Metrics) -> None:
        self._settings = settings
        self.queue = queue
        self._submitted = Counter(
            "jobs_submitted_total",
            "Jobs recorded, by kind and whether the queue took them at once.",
            ("kind", "enqueued"),
            registry=metrics.registry,
        )

    async def open(self) -> None:
        load_job_modules(self._settings.job_modules)
        await self.queue.open()

    async def close(self) -> None:
        await self.queue.close()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """The queue's hop as spans, when it has one to trace (a broker's), tracing on."""
        if isinstance(self.queue, Traceable):
            self.queue.instrument(tracer_provider)

    async def check(self) -> None:
        """The queue's own check, when it has one (a broker's reachability)."""
        if isinstance(self.queue, Checkable):
            await self.queue.check()

    async def submit_public(
        self, session: AsyncSession, kind: str, arguments: dict[str, Any], *, owner: str
    ) -> Job:
        """Submit a job a client asked for: only a kind registered public, any other is the
        same UnknownJobKindError as a kind that does not exist."""
        registered = job_kind(kind)
        if registered is None or not registered.public:
            raise UnknownJobKindError(f"unknown job kind '{kind}'")
        return await self.submit(session, kind, arguments, owner=owner)

    async def submit(
        self,
        session: AsyncSession,
        kind: str,
        arguments: dict[str, Any],
        *,
        owner: str | None = None,
    ) -> Job:
        """Record the job, then enqueue it. A queue that is down leaves it pending for the
        sweeper; a database that is down raises (the caller answers 503). `owner` (who asked
        for it through the API) is the only one who can read it there."""
        if job_kind(kind) is None:
            raise UnknownJobKindError(f"unknown job kind '{kind}'")
        job = await record(session, kind, arguments, owner)
        try:
            async with asyncio.timeout(self._settings.job_enqueue_timeout):
                await self.queue.enqueue(job.id)
        except Exception as exc:
            self._submitted.labels(kind, "false").inc()
            logger.warning(
                "job recorded but not enqueued; the sweeper will retry",
                extra={"job_id": job.id, "kind": kind, "error": f"{type(exc).__name__}: {exc}"},
            )
        else:
            self._submitted.labels(kind, "true").inc()
        return job
