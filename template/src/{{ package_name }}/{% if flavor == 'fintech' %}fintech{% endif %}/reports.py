"""POST /api/reports: portfolio analytics computed by a background job.

The request records a report and its job in one commit and answers 202 with the report id at
once. The job (kind "fintech.portfolio_report", run by whichever queue the service has:
Celery, arq or in-process) reads the portfolio from the database, computes value, P&L per
holding and allocation, stores the report and writes an outbox row that a delivery step
would e-mail; all in the job's transaction, so a job delivered twice stores one report and
queues one e-mail.
"""

from __future__ import annotations

import decimal
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, JsonValue
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import SessionDep
from ..deps import JobsDep
from ..errors import ForbiddenError, NotFoundError
from ..jobs import JobContext, JobKind
from ..jobs.models import Job, JobState
from ..jobs.service import Jobs, as_utc
from ..ratelimit import rate_limit
from .auth import CurrentUser, authenticated_user, caller_key, owner_of
from .models import OutboxMessage, Report, User
from .money import ZERO, DecimalString
from .valuation import Position, realized_pnl, value_portfolio

REPORT_JOB = "fintech.portfolio_report"

router = APIRouter(prefix="/api/reports", tags=["reports"])

ReportId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")]
_PERCENT = decimal.Decimal("0.01")
_NO_SHARE = decimal.Decimal("0.00")


class ReportStatus(BaseModel):
    id: str
    user_id: int
    state: Literal["pending", "ready", "failed"]
    job_id: str | None
    created_at: datetime
    completed_at: datetime | None = None
    report: JsonValue = None


class ReportHolding(Position):
    allocation_percent: DecimalString


class PortfolioReport(BaseModel):
    """The figures a report stores: the valuation, realised P&L and allocation in percent."""

    currency: str
    cash: DecimalString
    positions_value: DecimalString
    total_value: DecimalString
    unrealized_pnl: DecimalString
    realized_pnl: DecimalString
    allocation: dict[str, DecimalString]
    holdings: list[ReportHolding]


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
    report = await ctx.session.get(Report, report_id)
    if report is None:
        return {"report_id": report_id, "skipped": "the report was deleted"}
    user = await ctx.session.get(User, report.user_id)
    data = (await portfolio_report(ctx.session, report.user_id)).model_dump(mode="json")
    now = datetime.now(UTC)
    await ctx.session.execute(
        update(Report)
        .where(Report.id == report_id)
        .values(state="ready", data=data, completed_at=now)
    )
    ctx.session.add(
        OutboxMessage(
            kind="report.email",
            recipient=user.email if user is not None else "",
            payload={"report_id": report_id, "total_value": data["total_value"]},
            created_at=now,
        )
    )
    return {"report_id": report_id}


# Run by whichever queue the service has; listed in the flavor's jobs (components.py).
REPORT_JOB_KIND = JobKind(REPORT_JOB, build_report, public=False)


async def create_report(session: AsyncSession, jobs: Jobs, user_id: int) -> Report:
    """Record a pending report and the job that computes it, in one commit; then enqueue."""
    report = Report(
        id=uuid.uuid4().hex, user_id=user_id, state="pending", created_at=datetime.now(UTC)
    )
    session.add(report)
    # `submit` commits the report together with its job record, then enqueues.
    recorded = await jobs.submit(
        session, REPORT_JOB, {"report_id": report.id}, owner=owner_of(user_id)
    )
    report.job_id = recorded.id
    await session.commit()
    return report


async def own_report(report_id: ReportId, current_user: CurrentUser, session: SessionDep) -> Report:
    """The path's report when it is the authenticated user's: 404 when there is none, 403
    when it is another user's."""
    report = await session.get(Report, report_id)
    if report is None:
        raise NotFoundError(f"no report with id '{report_id}'")
    if report.user_id != current_user:
        raise ForbiddenError("this resource belongs to another user")
    return report


OwnReport = Annotated[Report, Depends(own_report)]


def _status(report: Report, job_state: str | None) -> ReportStatus:
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
    )


@router.post(
    "",
    status_code=202,
    summary="Request a portfolio report",
    description="Answers at once with the report id; the report is computed in the background "
    "and e-mailed (an outbox row). Follow it with GET /api/reports/{id}.",
    responses={401: {"description": "Missing or invalid bearer token"}},
    dependencies=[rate_limit("reports", per=caller_key)],
)
async def request_report(
    current_user: CurrentUser, session: SessionDep, jobs: JobsDep, response: Response
) -> ReportStatus:
    report = await create_report(session, jobs, current_user)
    response.headers["Location"] = f"{router.prefix}/{report.id}"
    return _status(report, None)


@router.get(
    "/{report_id}",
    summary="A report's state and, when ready, its figures",
    responses={
        401: {"description": "Missing or invalid bearer token"},
        403: {"description": "Another user's report"},
        404: {"description": "No report with this id"},
    },
    dependencies=[Depends(authenticated_user)],
)
async def get_report(report: OwnReport, session: SessionDep) -> ReportStatus:
    job_state = None
    if report.state != "ready" and report.job_id is not None:
        job_state = await session.scalar(select(Job.state).where(Job.id == report.job_id))
    return _status(report, job_state)
