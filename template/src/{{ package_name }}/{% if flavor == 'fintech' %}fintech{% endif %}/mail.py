"""The mail server: where report e-mails go, how to reach it, and what its answers mean.

There is no pool: a sender opens one connection for a round of messages and closes it (see
reports/delivery.py), so nothing stays connected between rounds. Readiness connects too, when a
server is configured, and calls a server that cannot be reached degraded, not failed: e-mails
wait in the outbox meanwhile, and everything else works.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib
from fastapi import Depends, Request

from ..resources import Degraded, registry
from ..settings import Settings

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "no mail server configured"


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where e-mails go, from SMTP_URL or SMTP_HOST and the rest (the URL wins)."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    security: Literal["starttls", "tls", "none"]
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpServer | None:
        """None when no server is configured: e-mails then wait in the outbox."""
        if settings.smtp_url is not None:
            url = urlsplit(settings.smtp_url.get_secret_value())
            if url.scheme not in {"smtp", "smtps"} or not url.hostname:
                # Not the URL itself in the message: it may hold a password.
                raise ValueError("SMTP_URL must look like smtp://user:password@host:587")
            implicit_tls = url.scheme == "smtps"
            return cls(
                hostname=url.hostname,
                port=url.port or (465 if implicit_tls else settings.smtp_port),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                security="tls" if implicit_tls else settings.smtp_security,
                timeout=settings.smtp_timeout,
            )
        if settings.smtp_host is None:
            return None
        password = settings.smtp_password
        return cls(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            security=settings.smtp_security,
            timeout=settings.smtp_timeout,
        )

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    def client(self, *, timeout: float | None = None) -> aiosmtplib.SMTP:
        """A client for one connection: `async with server.client() as smtp: ...`."""
        return aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            timeout=timeout or self.timeout,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was not sent. Temporary: worth another attempt later (a 4xx answer, or
    the server not reachable); otherwise the server refused it for good (5xx)."""

    temporary: bool
    reason: str
    # The server dropped or never opened the connection: the rest of the round cannot be sent.
    connection_lost: bool = False


def refusal(exc: Exception) -> Refusal:
    """What an exception raised while sending says about the message."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return _answer(refused.code, refused.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        answer = _answer(exc.code, exc.message)
        if isinstance(exc, aiosmtplib.SMTPConnectError) or exc.code == 421:
            # 421: the server is closing the connection (RFC 5321, 3.8).
            return Refusal(answer.temporary, answer.reason, connection_lost=True)
        return answer
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Refusal(True, f"mail server unreachable ({reason})", connection_lost=True)
    raise exc


def _answer(code: int, message: str) -> Refusal:
    return Refusal(400 <= code < 500, f"{code} {message}".strip()[:2000])


class MailServerStatus:
    """Whether a mail server is configured; readiness checks it only when one is."""

    name = "mail_server"
    configured: bool = False


class MailServer(MailServerStatus):
    """Readiness's view of the configured mail server: degraded while it cannot be reached."""

    configured = True

    def __init__(self, settings: Settings, server: SmtpServer) -> None:
        self._server = server
        self._timeout = settings.readiness_timeout / 2

    async def open(self) -> None:
        logger.info("report e-mails go to the mail server", extra={"smtp": self._server.address})

    async def close(self) -> None:
        pass

    async def check(self) -> None:
        try:
            # Within readiness's own limit: a hung server is degraded too, not a failed check.
            async with asyncio.timeout(self._timeout):
                async with self._server.client(timeout=self._timeout) as smtp:
                    await smtp.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise Degraded(
                f"mail server unreachable ({cause}); report e-mails wait in the outbox"
            ) from exc


class NoMailServer(MailServerStatus):
    """No mail server configured: the service runs, and report e-mails wait in the outbox."""

    async def open(self) -> None:
        logger.warning(
            "%s (SMTP_URL or SMTP_HOST): report e-mails wait in the outbox until one is",
            NOT_CONFIGURED,
        )

    async def close(self) -> None:
        pass


def mail_server(settings: Settings) -> MailServerStatus:
    server = SmtpServer.from_settings(settings)
    return NoMailServer() if server is None else MailServer(settings, server)


async def get_mail_server(request: Request) -> MailServerStatus:
    return registry(request).get(MailServerStatus)


MailServerDep = Annotated[MailServerStatus, Depends(get_mail_server)]
