"""The base of every request body: values every database stores the same way, or a 422.

PostgreSQL refuses a NUL character in text and JSON (`invalid byte sequence for encoding
"UTF8": 0x00`) where SQLite stores it, and Python's JSON parser reads `NaN`, `Infinity` and
`1e999` into floats that PostgreSQL's JSON types refuse and SQLite writes as non-standard JSON.
Refusing both here, in the model, gives the same 422 naming the field on every database,
before any statement runs. Query strings and paths are checked for NUL by the request-context
middleware (see middleware.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, field_validator
from pydantic_core import PydanticCustomError

NUL = "\x00"


def check_storable(value: Any) -> Any:
    """`value` unchanged, or PydanticCustomError if it holds a NUL or a non-finite number."""
    if isinstance(value, str):
        if NUL in value:
            raise PydanticCustomError(
                "nul_character", "NUL characters (\\u0000) are not allowed in text"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "finite_number", "NaN and infinite numbers are not allowed; send a finite number"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key)
            check_storable(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            check_storable(item)
    return value


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be an integer")
    return value


# A JSON integer (5, or 5.0), never a boolean or a string: Annotated[int, JSON_INTEGER]. Bounds
# go before it, or the schema shows pydantic's names for them: Annotated[int, Field(ge=1),
# JSON_INTEGER].
JSON_INTEGER = BeforeValidator(_json_integer)


class RequestModel(BaseModel):
    """Subclass this for request bodies: every field, nested values included, is checked.

    FastAPI validates the parsed JSON in Python mode, where pydantic's lax mode takes `true`
    and `"5"` for integers: annotate integer fields with `JSON_INTEGER`, so that what passes
    is what the schema says. (Strict mode for the whole model would refuse the strings that
    amounts and dates arrive as, and the `5.0` that JSON Schema counts as an integer.)
    """

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


def _assume_utc(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; every one the service stores is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


#: A datetime an answer shows with its UTC offset, also when SQLite read it back naive.
UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]
