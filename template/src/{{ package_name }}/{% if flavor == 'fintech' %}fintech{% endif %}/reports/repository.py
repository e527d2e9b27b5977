"""The rows a report lives in: the report, its job's state and the e-mail outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...jobs.models import Job
from ..models import OutboxMessage, Report, User


async def report_by_id(session: AsyncSession, report_id: str) -> Report | None:
    return await session.get(Report, report_id)


async def email_of(session: AsyncSession, user_id: int) -> str:
    user = await session.get(User, user_id)
    return user.email if user is not None else ""


async def job_state(session: AsyncSession, job_id: str) -> str | None:
    return await session.scalar(select(Job.state).where(Job.id == job_id))


def add_report(session: AsyncSession, report: Report) -> None:
    session.add(report)


async def mark_ready(
    session: AsyncSession, report_id: str, data: dict[str, Any], completed_at: datetime
) -> None:
    await session.execute(
        update(Report)
        .where(Report.id == report_id)
        .values(state="ready", data=data, completed_at=completed_at)
    )


def queue_email(
    session: AsyncSession, recipient: str, payload: dict[str, Any], created_at: datetime
) -> None:
    """An outbox row a delivery step turns into an e-mail, written with the transaction."""
    session.add(
        OutboxMessage(
            kind="report.email", recipient=recipient, payload=payload, created_at=created_at
        )
    )
