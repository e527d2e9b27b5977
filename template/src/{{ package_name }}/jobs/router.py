"""The jobs API: submit a job (202 at once) and follow it.

A job belongs to whoever submitted it, as the flavor's authentication names them (its
`job_owner` dependency): only they can read it, and anyone else is told it does not exist
(404, not 403, so job ids reveal nothing). Submitting is rate limited under the name "jobs".
"""

# No `from __future__ import annotations`: the routes are defined inside `jobs_router`, and
# FastAPI resolves string annotations in the module's globals, where `job_owner` is not.
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field, JsonValue

from ..db import SessionDep
from ..deps import JobsDep
from ..ratelimit import rate_limit
from ..schemas import RequestModel
from .models import Job, JobState
from .service import as_utc, estimate_completion, owned_job

JobId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")]


class JobRequest(RequestModel):
    # The schema lists the registered public kinds (see openapi.py).
    kind: str = Field(min_length=1, max_length=100)
    arguments: dict[str, JsonValue] = Field(default_factory=dict, max_length=100)


class JobStatus(BaseModel):
    id: str
    kind: str
    state: JobState
    attempts: int
    result: JsonValue = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    estimated_completion: datetime | None = Field(
        default=None, description="From recent durations of this kind; null when unknown."
    )

    @classmethod
    def of(cls, job: Job, estimate: datetime | None = None) -> "JobStatus":
        created_at = as_utc(job.created_at)
        assert created_at is not None
        return cls(
            id=job.id,
            kind=job.kind,
            state=JobState(job.state),
            attempts=job.attempts,
            result=job.result,
            error=job.error,
            created_at=created_at,
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            estimated_completion=estimate,
        )


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid credentials"},
    404: {"description": "No job with this id among yours"},
}


def jobs_router(
    job_owner: Callable[..., Awaitable[str]], caller_key: Callable[..., Awaitable[str]]
) -> APIRouter:
    """The routes, authenticated by `job_owner`, the flavor's dependency naming who owns a
    request's jobs; submitting is rate limited per `caller_key`."""
    router = APIRouter(prefix="/api/jobs", tags=["jobs"])
    owner_dependency = Depends(job_owner)

    @router.post(
        "",
        status_code=202,
        summary="Submit a job",
        description="Records the job, then enqueues it, and answers at once with its id. If "
        "the queue is down the job stays pending and is enqueued later; if the database is "
        "down, 503.",
        responses={
            401: {"description": "Missing or invalid credentials"},
            422: {"description": "Unknown job kind or invalid arguments"},
        },
        dependencies=[rate_limit("jobs", per=caller_key)],
    )
    async def submit_job(
        body: JobRequest,
        owner: Annotated[str, owner_dependency],
        session: SessionDep,
        jobs: JobsDep,
        response: Response,
    ) -> JobStatus:
        job = await jobs.submit_public(session, body.kind, body.arguments, owner=owner)
        response.headers["Location"] = f"{router.prefix}/{job.id}"
        return JobStatus.of(job)

    @router.get(
        "/{job_id}",
        summary="Get one of your jobs",
        description="State, attempts, result or error, timestamps, and an estimated completion "
        "time from recent durations of the same kind.",
        responses=_NOT_FOUND,
    )
    async def get_job(
        job_id: JobId, owner: Annotated[str, owner_dependency], session: SessionDep
    ) -> JobStatus:
        job = await owned_job(session, job_id, owner)
        return JobStatus.of(job, await estimate_completion(session, job))

    return router
