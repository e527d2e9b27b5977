"""The fintech flavor's settings: part of the service's `Settings` (settings.py), read from the
same environment and documented in `.env.example` with the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
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

    # --- report e-mails (fintech/mail.py, reports/delivery.py) --------------------------------
    # The mail server, as one URL (smtp://user:password@host:587, smtps://...:465 for TLS from
    # the first byte) or as SMTP_HOST and the rest; the URL wins. Neither: report e-mails
    # wait in the outbox and the reports API says so.
    smtp_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # starttls: upgrade the connection before anything is sent (refused if the server cannot);
    # tls: TLS from the first byte (port 465, or an smtps:// URL); none: plain text, for a
    # local mail catcher only.
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    # Seconds one SMTP command may take before the attempt counts as a temporary failure.
    smtp_timeout: float = Field(default=30.0, gt=0)
    mail_from: str = Field(default="reports@example.com", pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    # Messages sent over one connection per round, and seconds between rounds when idle.
    mail_batch_size: int = Field(default=50, ge=1, le=1000)
    mail_poll_seconds: float = Field(default=2.0, gt=0)
    # Temporary refusals (4xx, the server unreachable) are retried after `backoff`, doubling up
    # to `backoff_max` seconds; the message fails after `max_attempts` attempts.
    mail_max_attempts: int = Field(default=10, ge=1)
    mail_retry_backoff: float = Field(default=30.0, gt=0)
    mail_retry_backoff_max: float = Field(default=3600.0, gt=0)
    # Seconds a message may stay `sending` before its sender counts as lost and it is sent
    # again (with the same Message-ID); longer than any one send can take.
    mail_sending_timeout: float = Field(default=300.0, gt=0)
