"""The rows a report lives in: the report, its job's state and the e-mail outbox.

Outbox rows move like jobs: a sender claims due rows with one conditional UPDATE (pending ->
sending), and every later change applies only while it still holds the claim (the row is
`sending` at the attempt it claimed), so two senders never both send a message.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...jobs.models import Job
from ..models import OutboxMessage, OutboxState, Report, User


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
    session: AsyncSession,
    report_id: str,
    recipient: str,
    payload: dict[str, Any],
    created_at: datetime,
) -> None:
    """An outbox row a sender turns into an e-mail, written with the transaction. Its
    Message-ID is chosen now, so every attempt at sending it carries the same one."""
    session.add(
        OutboxMessage(
            kind="report.email",
            recipient=recipient,
            payload=payload,
            report_id=report_id,
            message_id=uuid.uuid4().hex,
            state=OutboxState.PENDING,
            attempts=0,
            available_at=created_at,
            created_at=created_at,
        )
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """An outbox row a sender holds: at `attempt`, until it records the outcome."""

    id: int
    recipient: str
    message_id: str
    report_id: str | None
    attempt: int


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Claimed]:
    """Claim up to `limit` messages that are due, oldest first. A row another sender claimed
    first fails the UPDATE's condition (PostgreSQL re-checks it once that sender commits)."""
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.state == OutboxState.PENDING, OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.available_at, OutboxMessage.id)
        .limit(limit)
    )
    ids = list(await session.scalars(due))
    if not ids:
        return []
    claimed = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.state == OutboxState.PENDING)
        .values(state=OutboxState.SENDING, attempts=OutboxMessage.attempts + 1, claimed_at=now)
        .returning(
            OutboxMessage.id,
            OutboxMessage.recipient,
            OutboxMessage.message_id,
            OutboxMessage.report_id,
            OutboxMessage.attempts,
        )
    )
    rows = [Claimed(r.id, r.recipient, r.message_id, r.report_id, r.attempts) for r in claimed]
    return sorted(rows, key=lambda message: message.id)


def _holding(message: Claimed) -> Update:
    """An UPDATE that applies only while this sender still holds the message."""
    return update(OutboxMessage).where(
        OutboxMessage.id == message.id,
        OutboxMessage.state == OutboxState.SENDING,
        OutboxMessage.attempts == message.attempt,
    )


async def mark_sent(session: AsyncSession, message: Claimed, now: datetime) -> bool:
    done = await session.execute(
        _holding(message).values(state=OutboxState.SENT, sent_at=now, error=None)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def retry_later(
    session: AsyncSession, message: Claimed, error: str, available_at: datetime
) -> bool:
    done = await session.execute(
        _holding(message).values(state=OutboxState.PENDING, error=error, available_at=available_at)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def give_up(session: AsyncSession, message: Claimed, state: OutboxState, error: str) -> bool:
    done = await session.execute(_holding(message).values(state=state, error=error))
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, messages: Sequence[Claimed], now: datetime) -> None:
    """Hand back messages this sender claimed but never tried: the attempt does not count."""
    for message in messages:
        await session.execute(
            _holding(message).values(
                state=OutboxState.PENDING, attempts=OutboxMessage.attempts - 1, available_at=now
            )
        )


async def requeue_lost(session: AsyncSession, now: datetime, lost_after: timedelta) -> int:
    """Messages `sending` for longer than any send takes: their sender died. They are due
    again; whether the server got them is unknown, so they may arrive twice (same Message-ID)."""
    lost = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.state == OutboxState.SENDING,
            OutboxMessage.claimed_at < now - lost_after,
        )
        .values(
            state=OutboxState.PENDING,
            available_at=now,
            error="the sender was lost while sending; sent again with the same Message-ID",
        )
    )
    return int(lost.rowcount)  # type: ignore[attr-defined]


async def reports_by_id(session: AsyncSession, report_ids: Sequence[str]) -> dict[str, Report]:
    found = await session.scalars(select(Report).where(Report.id.in_(report_ids)))
    return {report.id: report for report in found}


async def delivery_of(session: AsyncSession, report_id: str) -> OutboxMessage | None:
    """The report's e-mail, once the report is ready."""
    return await session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.report_id == report_id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
