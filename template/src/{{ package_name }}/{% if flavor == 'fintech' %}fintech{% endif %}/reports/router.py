"""The reports endpoints: HTTP in and out; the work is in service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from ...db import SessionDep
from ...deps import JobsDep
from ...errors import ForbiddenError, NotFoundError
from ...ratelimit import rate_limit
from ..auth import CurrentUser, authenticated_user, caller_key
from ..mail import MailServerDep
from ..models import Report
from . import repository
from .schemas import ReportStatus
from .service import create_report, report_status, status_of

router = APIRouter(prefix="/api/reports", tags=["reports"])

ReportId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")]


async def own_report(report_id: ReportId, current_user: CurrentUser, session: SessionDep) -> Report:
    """The path's report when it is the authenticated user's: 404 when there is none, 403
    when it is another user's."""
    report = await repository.report_by_id(session, report_id)
    if report is None:
        raise NotFoundError(f"no report with id '{report_id}'")
    if report.user_id != current_user:
        raise ForbiddenError("this resource belongs to another user")
    return report


OwnReport = Annotated[Report, Depends(own_report)]


@router.post(
    "",
    status_code=202,
    summary="Request a portfolio report",
    description="Answers at once with the report id; the report is computed in the background "
    "and e-mailed to the user's address. Follow both with GET /api/reports/{id}.",
    responses={401: {"description": "Missing or invalid bearer token"}},
    dependencies=[rate_limit("reports", per=caller_key)],
)
async def request_report(
    current_user: CurrentUser, session: SessionDep, jobs: JobsDep, response: Response
) -> ReportStatus:
    report = await create_report(session, jobs, current_user)
    response.headers["Location"] = f"{router.prefix}/{report.id}"
    return status_of(report, None)


@router.get(
    "/{report_id}",
    summary="A report's state and, when ready, its figures and where its e-mail is",
    responses={
        401: {"description": "Missing or invalid bearer token"},
        403: {"description": "Another user's report"},
        404: {"description": "No report with this id"},
    },
    dependencies=[Depends(authenticated_user)],
)
async def get_report(
    report: OwnReport, session: SessionDep, mail_server: MailServerDep
) -> ReportStatus:
    return await report_status(session, report, mail_configured=mail_server.configured)
