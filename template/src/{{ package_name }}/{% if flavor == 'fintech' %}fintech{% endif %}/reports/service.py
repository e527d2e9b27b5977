"""Portfolio analytics, computed by a background job.

A request records a report and its job in one commit and is answered at once. The job (kind
"fintech.portfolio_report", run by whichever queue the service has: Celery, arq or
in-process) reads the portfolio from the database, computes value, P&L per holding and
allocation, stores the report and writes the outbox row that delivery.py e-mails; all in
the job's transaction, so a job delivered twice stores one report and queues one e-mail.
"""

from __future__ import annotations

import decimal
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession

from ...jobs import JobContext, JobKind
from ...jobs.models import JobState
from ...jobs.service import Jobs, as_utc
from ..auth import owner_of
from ..mail import NOT_CONFIGURED
from ..models import OutboxMessage, OutboxState, Report
from ..money import ZERO
from ..valuation import realized_pnl, value_portfolio
from . import repository
from .schemas import PortfolioReport, ReportDelivery, ReportHolding, ReportStatus

REPORT_JOB = "fintech.portfolio_report"

_PERCENT = decimal.Decimal("0.01")
_NO_SHARE = decimal.Decimal("0.00")


async def portfolio_report(session: AsyncSession, user_id: int) -> PortfolioReport:
    valuation = await value_portfolio(session, user_id)
    total = valuation.total_value

    def share(amount: decimal.Decimal) -> decimal.Decimal:
        if total == ZERO:
            return _NO_SHARE
        return (amount * 100 / total).quantize(_PERCENT)

    return PortfolioReport(
        currency=valuation.currency,
        cash=valuation.cash,
        positions_value=valuation.positions_value,
        total_value=total,
        unrealized_pnl=valuation.unrealized_pnl,
        realized_pnl=await realized_pnl(session, user_id),
        allocation={"cash": share(valuation.cash)}
        | {position.symbol: share(position.market_value) for position in valuation.positions},
        holdings=[
            ReportHolding(**dict(position), allocation_percent=share(position.market_value))
            for position in valuation.positions
        ],
    )


async def build_report(ctx: JobContext) -> JsonValue:
    report_id = str(ctx.arguments["report_id"])
    report = await repository.report_by_id(ctx.session, report_id)
    if report is None:
        return {"report_id": report_id, "skipped": "the report was deleted"}
    data = (await portfolio_report(ctx.session, report.user_id)).model_dump(mode="json")
    now = datetime.now(UTC)
    await repository.mark_ready(ctx.session, report_id, data, now)
    repository.queue_email(
        ctx.session,
        report_id,
        await repository.email_of(ctx.session, report.user_id),
        {"report_id": report_id, "total_value": data["total_value"]},
        now,
    )
    return {"report_id": report_id}


# Run by whichever queue the service has; listed in the flavor's jobs (components.py).
REPORT_JOB_KIND = JobKind(REPORT_JOB, build_report, public=False)


async def create_report(session: AsyncSession, jobs: Jobs, user_id: int) -> Report:
    """Record a pending report and the job that computes it, in one commit; then enqueue."""
    report = Report(
        id=uuid.uuid4().hex, user_id=user_id, state="pending", created_at=datetime.now(UTC)
    )
    repository.add_report(session, report)
    # `submit` commits the report together with its job record, then enqueues.
    recorded = await jobs.submit(
        session, REPORT_JOB, {"report_id": report.id}, owner=owner_of(user_id)
    )
    report.job_id = recorded.id
    await session.commit()
    return report


async def report_status(
    session: AsyncSession, report: Report, *, mail_configured: bool
) -> ReportStatus:
    """Where the report is: pending, ready (with its figures and where its e-mail is) or
    failed (its job failed)."""
    job_state = None
    delivery = None
    if report.state != "ready" and report.job_id is not None:
        job_state = await repository.job_state(session, report.job_id)
    if report.state == "ready":
        message = await repository.delivery_of(session, report.id)
        if message is not None:
            delivery = delivery_of(message, mail_configured=mail_configured)
    return status_of(report, job_state, delivery)


def delivery_of(message: OutboxMessage, *, mail_configured: bool) -> ReportDelivery:
    detail = message.error
    if message.state == OutboxState.PENDING and not mail_configured:
        detail = NOT_CONFIGURED
    elif message.state == OutboxState.PENDING and message.error is not None:
        detail = f"retrying after: {message.error}"
    return ReportDelivery(
        state=OutboxState(message.state).value,
        detail=detail,
        attempts=message.attempts,
        sent_at=as_utc(message.sent_at),
    )


def status_of(
    report: Report, job_state: str | None, delivery: ReportDelivery | None = None
) -> ReportStatus:
    created = as_utc(report.created_at)
    assert created is not None
    state: Literal["pending", "ready", "failed"] = "ready" if report.state == "ready" else "pending"
    if state == "pending" and job_state == JobState.FAILED:
        state = "failed"
    return ReportStatus(
        id=report.id,
        user_id=report.user_id,
        state=state,
        job_id=report.job_id,
        created_at=created,
        completed_at=as_utc(report.completed_at),
        report=report.data,
        delivery=delivery,
    )
