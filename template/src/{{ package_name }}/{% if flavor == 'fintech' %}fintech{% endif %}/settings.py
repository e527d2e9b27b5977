"""The fintech flavor's settings: part of the service's `Settings` (settings.py), read from the
same environment and documented in `.env.example` with the rest."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class FintechSettings(BaseSettings):
    # Seconds a portfolio stays cached; a trade by its owner or a price update refreshes it.
    portfolio_cache_ttl: float = Field(default=300.0, gt=0)
    # Seconds a valid API token's user stays cached: how long a revoked or expired token may
    # still work in a process other than the one that revoked it (with a shared Redis cache,
    # revoking takes effect everywhere at once).
    auth_token_cache_ttl: float = Field(default=60.0, gt=0)
    # Days an API token lasts from when it is issued (seeded or POST /api/tokens).
    auth_token_ttl_days: int = Field(default=90, ge=1, le=3650)
    # Seconds between checks for new prices: the longest an API process serves old ones.
    market_data_refresh_seconds: float = Field(default=1.0, gt=0)
    # Compressed once per price update, so the smallest output is worth the highest level.
    market_data_gzip_level: int = Field(default=9, ge=1, le=9)
    static_data_cache_control: str = "public, max-age=3600"
