"""A report as the API shows it: its status and, once ready, its figures."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, JsonValue

from ..money import DecimalString
from ..valuation import Position


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
