"""Delivering the outbox: report e-mails sent once each, whatever the number of senders.

A round, every MAIL_POLL_SECONDS (at once again after a full batch):

1. Messages `sending` for longer than MAIL_SENDING_TIMEOUT lost their sender (its process
   died): they are due again.
2. Up to MAIL_BATCH_SIZE due messages are claimed (pending -> sending, one conditional UPDATE;
   see repository.py), so a message is claimed by one sender at a time.
3. They go out over one connection, opened for the round and closed after it. Each is marked
   sent right after the server accepted it; a temporary refusal (4xx, the server unreachable)
   makes it due again after a backoff; a permanent one (5xx) fails it with the server's answer;
   a message with nowhere to go (the user has no address) is undeliverable.

Exactly once, but for one window: a sender that dies after the server accepted a message and
before its `sent` is committed leaves it `sending`, and it is sent again once it counts as
lost. The copy carries the same Message-ID (chosen when the row was written), by which mail
systems recognise the duplicate. The window is one UPDATE's commit per message.

It runs where jobs run: in the worker, or in `serve` when jobs run in-process (components.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
from prometheus_client import Counter, Histogram

from ...db import Database
from ...jobs.service import as_utc
from ...observability import Metrics
from ...resources import FailureLog, stop_task
from ...settings import Settings
from ..mail import Refusal, SmtpServer, refusal
from ..models import OutboxState
from . import repository
from .email import report_email
from .repository import Claimed

logger = logging.getLogger(__name__)

# What any mail server takes as a recipient: one address, no display name, no spaces.
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxDelivery:
    """The sender: a background loop, opened and closed with the process that runs it."""

    name = "outbox_delivery"

    def __init__(
        self, settings: Settings, database: Database, metrics: Metrics | None, server: SmtpServer
    ) -> None:
        self._settings = settings
        self._database = database
        self._server = server
        self._task: asyncio.Task[None] | None = None
        self._failures = FailureLog(logger, "outbox delivery round failed; retrying every round")
        self._outcomes: Counter | None = None
        self._smtp: tuple[Histogram, Histogram] | None = None
        if metrics is not None:
            outbound = metrics.outbound
            self._smtp = (outbound.labels("smtp", "ok"), outbound.labels("smtp", "error"))
            self._outcomes = Counter(
                "report_emails_total",
                "Report e-mails by outcome: sent, retried (a temporary refusal), failed "
                "(refused for good, or out of attempts) and undeliverable (no address).",
                ("outcome",),
                registry=metrics.registry,
            )
            for outcome in ("sent", "retried", "failed", "undeliverable"):
                self._outcomes.labels(outcome)

    async def open(self) -> None:
        logger.info("report e-mails are delivered", extra={"smtp": self._server.address})
        self._task = asyncio.create_task(self._deliver_forever(), name="outbox-delivery")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def check(self) -> None:
        """Readiness: degraded (still ready) while rounds keep failing (the database down)."""
        self._failures.check()

    async def _deliver_forever(self) -> None:
        while True:
            claimed = 0
            try:
                claimed = await self.deliver_round()
            except Exception as exc:
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            if claimed < self._settings.mail_batch_size:
                await asyncio.sleep(self._settings.mail_poll_seconds)

    async def deliver_round(self) -> int:
        """One round; returns how many messages it claimed."""
        settings = self._settings
        sessions = self._database.sessions
        now = utcnow()
        async with sessions.begin() as session:
            lost = await repository.requeue_lost(
                session, now, timedelta(seconds=settings.mail_sending_timeout)
            )
        if lost:
            logger.warning(
                "outbox messages whose sender was lost are due again", extra={"count": lost}
            )
        async with sessions.begin() as session:
            claimed = await repository.claim_due(session, now, settings.mail_batch_size)
        if not claimed:
            return 0
        # What this sender holds and has not handed to the server yet.
        untried = {message.id: message for message in claimed}
        try:
            await self._send(await self._prepare(untried), untried)
        finally:
            # What was never handed to the server goes back (the connection dropped, the
            # process is stopping, the database failed). One that was being sent when the
            # process stopped stays `sending`: it is sent again once it counts as lost.
            if untried:
                await asyncio.shield(self._release(list(untried.values())))
        return len(claimed)

    async def _prepare(self, untried: dict[int, Claimed]) -> list[tuple[Claimed, EmailMessage]]:
        """The e-mail of each message; the ones that cannot be sent are given up."""
        claimed = list(untried.values())
        async with self._database.sessions() as session:
            reports = await repository.reports_by_id(
                session, [m.report_id for m in claimed if m.report_id is not None]
            )
        ready: list[tuple[Claimed, EmailMessage]] = []
        for message in claimed:
            report = reports.get(message.report_id or "")
            if not _ADDRESS.fullmatch(message.recipient):
                del untried[message.id]
                await self._give_up(
                    message, OutboxState.UNDELIVERABLE, "the user has no valid e-mail address"
                )
            elif message.attempt > self._settings.mail_max_attempts:
                del untried[message.id]
                await self._give_up(
                    message,
                    OutboxState.FAILED,
                    f"gave up after {message.attempt - 1} attempts; the last sender was lost",
                )
            elif report is None or report.data is None:
                del untried[message.id]
                await self._give_up(message, OutboxState.FAILED, "the report has no figures")
            else:
                email = report_email(
                    sender=self._settings.mail_from,
                    recipient=message.recipient,
                    message_id=message.message_id,
                    report_id=report.id,
                    report=report.data,
                    completed_at=as_utc(report.completed_at) or utcnow(),
                )
                ready.append((message, email))
        return ready

    async def _send(
        self, ready: list[tuple[Claimed, EmailMessage]], untried: dict[int, Claimed]
    ) -> None:
        if not ready:
            return
        smtp = self._server.client()
        started = time.perf_counter()
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._took(started, ok=False)
            unreachable = refusal(exc)
            for message, _ in ready:
                del untried[message.id]
                await self._refused(message, unreachable)
            return
        self._took(started, ok=True)
        try:
            for message, email in ready:
                del untried[message.id]
                started = time.perf_counter()
                try:
                    await smtp.send_message(email)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    self._took(started, ok=False)
                    refused = refusal(exc)
                    await self._refused(message, refused)
                    if refused.connection_lost:
                        return  # the rest go back untried
                    continue
                self._took(started, ok=True)
                await self._sent(message)
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()

    def _took(self, started: float, *, ok: bool) -> None:
        """A call to the mail server (connecting, or sending one message) ended."""
        if self._smtp is not None:
            self._smtp[0 if ok else 1].observe(time.perf_counter() - started)

    async def _release(self, untried: list[Claimed]) -> None:
        async with self._database.sessions.begin() as session:
            await repository.release(session, untried, utcnow())

    async def _sent(self, message: Claimed) -> None:
        async with self._database.sessions.begin() as session:
            held = await repository.mark_sent(session, message, utcnow())
        self._record(message, "sent", held)

    async def _refused(self, message: Claimed, refused: Refusal) -> None:
        settings = self._settings
        if refused.temporary and message.attempt < settings.mail_max_attempts:
            delay = min(
                settings.mail_retry_backoff * 2 ** (message.attempt - 1),
                settings.mail_retry_backoff_max,
            )
            async with self._database.sessions.begin() as session:
                held = await repository.retry_later(
                    session, message, refused.reason, utcnow() + timedelta(seconds=delay)
                )
            self._record(message, "retried", held, error=refused.reason, retry_in=delay)
            return
        reason = refused.reason
        if refused.temporary:
            reason = f"gave up after {message.attempt} attempts: {reason}"
        await self._give_up(message, OutboxState.FAILED, reason)

    async def _give_up(self, message: Claimed, state: OutboxState, reason: str) -> None:
        async with self._database.sessions.begin() as session:
            held = await repository.give_up(session, message, state, reason)
        self._record(message, state.value, held, error=reason)

    def _record(self, message: Claimed, outcome: str, held: bool, **details: object) -> None:
        log = {"outbox_id": message.id, "attempt": message.attempt, **details}
        if not held:
            # It counted as lost and another sender has it now: that one's outcome stands.
            logger.warning("outbox outcome discarded: another sender holds the message", extra=log)
            return
        if self._outcomes is not None:
            self._outcomes.labels(outcome).inc()
        level = logging.INFO if outcome == "sent" else logging.WARNING
        logger.log(level, "report e-mail %s", outcome, extra=log)
