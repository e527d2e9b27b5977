"""Decimal amounts in the API: exact in, exact out.

In JSON, amounts are strings ("0.10"): a JSON number is a binary float to most clients. On
input, strings and integers are accepted and JSON floats are refused, so no float ever enters
the arithmetic. Every rounding goes through `round_money` (banker's rounding, to 4 places).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

from .models import MONEY_SCALE, PRICE_SCALE, QUANTITY_PRECISION, QUANTITY_SCALE

MONEY_STEP = Decimal(1).scaleb(-MONEY_SCALE)
PRICE_STEP = Decimal(1).scaleb(-PRICE_SCALE)
QUANTITY_STEP = Decimal(1).scaleb(-QUANTITY_SCALE)
ZERO = Decimal(0)


def round_money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_STEP, rounding=ROUND_HALF_EVEN)


# ASCII digits, one optional sign, at most one decimal point. Python's Decimal would also take
# "1_000", " 1", "1e3" and other scripts' digits ("١٢٣" is 123): an amount is not the place.
_PLAIN_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('send amounts as strings (e.g. "0.10"), not JSON numbers')
    if isinstance(value, bool):
        raise ValueError('send amounts as strings (e.g. "0.10"), not true or false')
    if isinstance(value, str) and not _PLAIN_AMOUNT.fullmatch(value):
        raise ValueError(
            'an amount is ASCII digits with an optional sign and decimal point (e.g. "12.50")'
        )
    return value


def as_string(value: Decimal) -> str:
    """Plain notation with the value's own digits: "0.0000000001", never "1E-10"."""
    return format(value, "f")


# Output: always a string in JSON.
DecimalString = Annotated[Decimal, PlainSerializer(as_string, return_type=str, when_used="json")]

Quantity = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(gt=0, max_digits=QUANTITY_PRECISION, decimal_places=QUANTITY_SCALE),
    PlainSerializer(as_string, return_type=str, when_used="json"),
]
Price = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(gt=0, max_digits=20, decimal_places=PRICE_SCALE),
    PlainSerializer(as_string, return_type=str, when_used="json"),
]
Fees = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(ge=0, max_digits=20, decimal_places=MONEY_SCALE),
    PlainSerializer(as_string, return_type=str, when_used="json"),
]
