"""What the trades API takes and answers: amounts are exact decimals, sent as strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...schemas import RequestModel
from ..money import ZERO, DecimalString, Fees, Price, Quantity


class TradeRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=16, examples=["ACME"])
    side: Literal["buy", "sell"]
    quantity: Quantity = Field(examples=["1.5"])
    price: Price | None = Field(
        default=None, description="Execution price; the instrument's current price when absent."
    )
    fees: Fees = Field(default=ZERO, examples=["0.20"])


class TradeView(BaseModel):
    id: int
    user_id: int
    symbol: str
    side: Literal["buy", "sell"]
    quantity: DecimalString
    price: DecimalString
    fees: DecimalString
    notional: DecimalString
    realized_pnl: DecimalString
    cash_after: DecimalString
    executed_at: datetime
