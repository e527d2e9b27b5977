"""A report as the API shows it: its status and, once ready, its figures."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, JsonValue

from ..money import DecimalString
from ..valuation import Position


class ReportDelivery(BaseModel):
    """Where the report's e-mail is. `detail` says why it waits (no mail server configured, a
    temporary refusal it will be retried after) or why it was given up."""

    state: Literal["pending", "sending", "sent", "failed", "undeliverable"]
    detail: str | None = None
    attempts: int
    sent_at: datetime | None = None


class ReportStatus(BaseModel):
    id: str
    user_id: int
    state: Literal["pending", "ready", "failed"]
    job_id: str | None
    created_at: datetime
    completed_at: datetime | None = None
    report: JsonValue = None
    # Once the report is ready: its e-mail.
    delivery: ReportDelivery | None = None


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
