"""GET /api/static-data/...: reference data that changes rarely, cacheable by clients and CDNs
for STATIC_DATA_CACHE_CONTROL (default `public, max-age=3600`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import SessionDep
from ..deps import settings_of
from ..routing import PUBLIC
from .models import Instrument

router = APIRouter(prefix="/api/static-data", tags=["reference data"])


class InstrumentInfo(BaseModel):
    symbol: str
    name: str
    asset_class: str
    currency: str


async def instruments(session: AsyncSession) -> list[InstrumentInfo]:
    rows = await session.execute(
        select(
            Instrument.symbol, Instrument.name, Instrument.asset_class, Instrument.currency
        ).order_by(Instrument.symbol)
    )
    return [InstrumentInfo.model_validate(row, from_attributes=True) for row in rows]


async def currencies(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Instrument.currency).distinct().order_by(Instrument.currency)
    )
    return list(rows)


def _cacheable(request: Request, response: Response) -> None:
    response.headers["Cache-Control"] = settings_of(request).static_data_cache_control


@router.get("/instruments", summary="Every instrument (without prices)", openapi_extra=PUBLIC)
async def list_instruments(
    session: SessionDep, request: Request, response: Response
) -> list[InstrumentInfo]:
    _cacheable(request, response)
    return await instruments(session)


@router.get("/currencies", summary="Currencies instruments are quoted in", openapi_extra=PUBLIC)
async def list_currencies(session: SessionDep, request: Request, response: Response) -> list[str]:
    _cacheable(request, response)
    return await currencies(session)
