"""The job table: the source of truth for every job's state, whatever the queue backend."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'running', 'succeeded', 'failed')", name="state_known"
        ),
        # The sweeper's scans and the completion estimate.
        Index("ix_jobs_state_available_at", "state", "available_at"),
        Index("ix_jobs_kind_state_finished_at", "kind", "state", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    # Who submitted it through the API ("user:7", "client:ci"); None for the service's own.
    owner: Mapped[str | None] = mapped_column(String(200))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The id of the request that submitted it: the job's log lines (and error reports) carry
    # it wherever it runs. None for jobs the service submits on its own.
    request_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When a queue may next run it: creation, or after a retry's backoff.
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
