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
from typing import Any

from pydantic import BaseModel, field_validator
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


class RequestModel(BaseModel):
    """Subclass this for request bodies: every field, nested values included, is checked."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)
