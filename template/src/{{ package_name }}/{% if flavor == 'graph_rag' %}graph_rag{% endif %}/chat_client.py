"""The generator on an OpenAI-compatible chat-completions server (GENERATOR=openai).

One `httpx.AsyncClient`, its connection pool opened in the lifespan and closed on shutdown,
serves every answer. Each answer is asked for as a stream (`"stream": true`), so
GENERATOR_READ_TIMEOUT bounds the wait between two chunks, not the whole answer;
GENERATOR_TIMEOUT bounds the whole answer, its retries and its wait for a slot included.
The stream is asked to end with the tokens the server counted (`stream_options.include_usage`,
unless GENERATOR_STREAM_USAGE is off for a server that refuses it); a server that sends no
`usage` leaves the answer with estimated counts. A server that answers
a stream request with the whole completion as JSON is read whole, its `usage` included.

- Retries: a 408, a 429, a 5xx or a failed connection is tried again, up to GENERATOR_RETRIES
  times, after the server's Retry-After (seconds or an HTTP date, up to
  GENERATOR_RETRY_AFTER_MAX) or else GENERATOR_BACKOFF x 2^n seconds with jitter. Only before
  the answer's first chunk: an answer cut off midway is not asked again (its first part may
  already be on its way to the client). A wait that would end past the deadline is not
  waited: the answer fails at once.
- Circuit breaker: GENERATOR_BREAKER_FAILURES failed answers in a row open it; while open
  the server is not called and answers fail at once (degraded), and readiness says so (still
  ready: /ask answers with the passages). After GENERATOR_BREAKER_COOLDOWN seconds one trial
  answer goes through; its success closes the breaker, its failure opens it again. Timeouts,
  refused connections, 408, 429 and 5xx count as failures; so do 401 and 403 (a bad key, see
  `REFUSED_KEY`). Any other 4xx (400, 404, 422, ...) is the request's fault, not the
  server's: that answer is degraded too, but the breaker does not count it.
- Concurrency: at most GENERATOR_CONCURRENCY answers at once (the pool's size too); the rest
  wait for a slot, within their deadline.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from prometheus_client import Counter

from ..observability import Metrics
from ..resources import Degraded
from ..settings import Settings
from .generate import GeneratorError, Prompt, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger(__name__)

DONE = "[DONE]"
# Where a line of the event stream ends (the three ways server-sent events allow).
LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Statuses tried again: the server's own timeout, too many requests (and every 5xx).
RETRIED = frozenset({408, 429})
# A missing, wrong or unauthorised key. Unlike other 4xx these count as the server's failures
# for the circuit breaker: every call fails alike until someone fixes GENERATOR_API_KEY, so
# opening the breaker makes readiness show the generator degraded (where operators look),
# spares each answer a round trip, and stops a stream of unauthorised calls that providers
# may answer with a lockout. Not retried: a retry would be refused the same way.
REFUSED_KEY = frozenset({401, 403})


class CircuitBreaker:
    """Closed, open for `cooldown` seconds after `failures` failures in a row, then half-open:
    one trial call at a time until one succeeds (closed) or fails (open again). `clock` is
    where it reads the time (seconds, only ever compared): `time.monotonic` unless a test
    moves time on by hand."""

    def __init__(
        self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._cooled_down() else "open"

    def _cooled_down(self) -> bool:
        return self._opened_at is not None and self.clock() - self._opened_at >= self.cooldown

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open, only the one trial call)."""
        if self._opened_at is None:
            return True
        if not self._cooled_down() or self._trial:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        if self._opened_at is not None:
            logger.info("generator circuit breaker closed: the trial answer succeeded")
        self._in_a_row, self._opened_at, self._trial = 0, None, False

    def failed(self) -> None:
        self._in_a_row += 1
        if self._trial or (self._opened_at is None and self._in_a_row >= self.failures):
            logger.warning(
                "generator circuit breaker opened",
                extra={"failures_in_a_row": self._in_a_row, "cooldown_seconds": self.cooldown},
            )
            self._opened_at = self.clock()
        self._trial = False

    def undecided(self) -> None:
        """The call ended without a verdict on the server: its caller went away, or the server
        refused the request itself (a 400: the next request may well succeed). Neither a
        success nor a failure in a row; a half-open breaker lets its next trial through."""
        self._trial = False

    def seconds_left(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self._opened_at))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date; None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RequestRejected(GeneratorError):
    """The server refused this request as the request's fault (a 4xx other than 401, 403, 408
    and 429): the answer is degraded, the circuit breaker does not count it."""


class _Retryable(Exception):
    def __init__(self, detail: str, wait: float | None = None) -> None:
        super().__init__(detail)
        self.wait = wait


class OpenAIGenerator:
    name = "generator"
    kind = "openai"

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        assert settings.generator_url is not None  # settings refuse GENERATOR=openai without it
        self.url = settings.generator_url.rstrip("/") + "/chat/completions"
        self.model = settings.generator_model
        self._api_key = settings.generator_api_key
        self._timeouts = httpx.Timeout(
            connect=settings.generator_connect_timeout,
            read=settings.generator_read_timeout,
            write=settings.generator_read_timeout,
            # The wait for a pooled connection is bounded by the slots and the deadline.
            pool=None,
        )
        self._limits = httpx.Limits(
            max_connections=settings.generator_concurrency,
            max_keepalive_connections=settings.generator_concurrency,
        )
        self.timeout = settings.generator_timeout
        self.retries = settings.generator_retries
        self.backoff = settings.generator_backoff
        self.retry_after_max = settings.generator_retry_after_max
        self.breaker = CircuitBreaker(
            settings.generator_breaker_failures, settings.generator_breaker_cooldown
        )
        self._slots = asyncio.Semaphore(settings.generator_concurrency)
        self._stream_usage = settings.generator_stream_usage
        self._client: httpx.AsyncClient | None = None
        self._calls = Counter(
            "generator_requests_total",
            "Answers asked of the generator's server by outcome: ok, failed, timeout, "
            "rejected (a 4xx the request caused), breaker_open (not asked), abandoned (the "
            "client went away); and retried requests.",
            ("outcome",),
            registry=metrics.registry,
        )
        self._answered = metrics.outbound.labels("llm", "ok")
        self._failed = metrics.outbound.labels("llm", "error")

    async def open(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=self._timeouts, limits=self._limits
        )
        logger.info("answers come from the generator", extra={"url": self.url})

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """A client span per call to the generator, carrying the trace to it (traceparent),
        when tracing is on (tracing.py)."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        if self._client is not None:
            HTTPXClientInstrumentor.instrument_client(self._client, tracer_provider=tracer_provider)

    async def check(self) -> None:
        """Readiness: degraded (still ready) while the breaker keeps the server uncalled."""
        if self.breaker.state == "open":
            raise Degraded(
                f"generator circuit breaker open for {self.breaker.seconds_left():.0f} s more "
                "after failed answers; /ask answers with the passages meanwhile"
            )

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str | Usage]:
        if not self.breaker.allow():
            self._calls.labels("breaker_open").inc()
            raise GeneratorError(
                "generator_unavailable",
                f"the circuit breaker is open ({self.breaker.seconds_left():.1f} s left)",
            )
        started = asyncio.get_running_loop().time()
        deadline = started + self.timeout
        outcome = "abandoned"  # the caller stopped reading (its client went away)
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
            try:
                async for piece in self._answer(prompt, max_tokens, deadline):
                    yield piece
                outcome = "ok"
            finally:
                self._slots.release()
        except (TimeoutError, httpx.TimeoutException) as exc:
            outcome = "timeout"
            raise GeneratorError(
                "generator_timeout", f"no complete answer in time ({_describe(exc)})"
            ) from exc
        except httpx.HTTPError as exc:
            outcome = "failed"
            raise GeneratorError("generator_failed", _describe(exc)) from exc
        except RequestRejected:
            outcome = "rejected"
            raise
        except GeneratorError:
            outcome = "failed"
            raise
        finally:
            self._calls.labels(outcome).inc()
            took = asyncio.get_running_loop().time() - started
            if outcome == "ok":
                self._answered.observe(took)
                self.breaker.succeeded()
            elif outcome == "abandoned":
                self.breaker.undecided()
            else:
                self._failed.observe(took)
                if outcome == "rejected":
                    self.breaker.undecided()
                else:
                    self.breaker.failed()

    async def _answer(
        self, prompt: Prompt, max_tokens: int, deadline: float
    ) -> AsyncGenerator[str | Usage]:
        client = self._client
        if client is None:
            raise GeneratorError("generator_failed", "the generator is not open")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages(),
            "max_tokens": max_tokens,
            "stream": True,
        }
        if self._stream_usage:
            # A last chunk with the tokens counted; most servers that do not know it ignore it.
            body["stream_options"] = {"include_usage": True}
        loop = asyncio.get_running_loop()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async for piece in self._attempt(client, body, deadline):
                    yield piece
                return
            except _Retryable as exc:
                if last:
                    raise GeneratorError("generator_failed", str(exc)) from exc
                wait = exc.wait
                if wait is None:
                    wait = self.backoff * 2**attempt * (0.5 + random.random() / 2)
                wait = min(wait, self.retry_after_max)
                if loop.time() + wait >= deadline:
                    raise GeneratorError(
                        "generator_failed", f"{exc}; a retry in {wait:g} s would be too late"
                    ) from exc
                self._calls.labels("retried").inc()
                logger.info(
                    "generator request retried",
                    extra={"error": str(exc), "attempt": attempt + 1, "wait_seconds": wait},
                )
                await asyncio.sleep(wait)

    async def _attempt(
        self, client: httpx.AsyncClient, body: dict[str, object], deadline: float
    ) -> AsyncGenerator[str | Usage]:
        """One request. Raises `_Retryable` for what a retry may cure before any text came."""
        try:
            async with asyncio.timeout_at(deadline):
                request = client.build_request("POST", self.url, content=orjson.dumps(body))
                request.headers["Content-Type"] = "application/json"
                response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retryable(_describe(exc)) from exc
        try:
            status = response.status_code
            if status in RETRIED or status >= 500:
                await response.aclose()
                raise _Retryable(
                    f"the server answered {status}",
                    retry_after(response.headers.get("Retry-After")),
                )
            if status != 200:
                await response.aread()
                detail = f"the server answered {status}: {response.text[:200]}"
                if 400 <= status < 500 and status not in REFUSED_KEY:
                    raise RequestRejected("generator_failed", detail)
                raise GeneratorError("generator_failed", detail)
            if response.headers.get("content-type", "").startswith("application/json"):
                # Not streamed after all: the whole completion at once.
                async with asyncio.timeout_at(deadline):
                    whole = await response.aread()
                text, usage = _completion(whole)
                if text:
                    yield text
                if usage is not None:
                    yield usage
                return
            # Read as it arrives; every chunk a read brought is passed on as one piece. Under
            # load, when the event loop comes back to a stream after several chunks arrived,
            # that is one server-sent event and one write to the client instead of several.
            reads = response.aiter_text()
            usage = None
            partial = ""
            while True:
                async with asyncio.timeout_at(deadline):
                    read = await anext(reads, None)
                if read is None:
                    raise GeneratorError("generator_failed", "the answer ended before [DONE]")
                *lines, partial = LINE_BREAK.split(partial + read)
                pieces: list[str] = []
                for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == DONE:
                        if pieces:
                            yield "".join(pieces)
                        if usage is not None:
                            yield usage
                        return
                    piece, counted = _chunk(data)
                    # The last count wins: some servers send a running count in every chunk.
                    usage = counted or usage
                    if piece:
                        pieces.append(piece)
                if pieces:
                    yield "".join(pieces)
        finally:
            await response.aclose()


def _chunk(data: str) -> tuple[str, Usage | None]:
    """The text of one streamed chunk (`choices[0].delta.content`) and its `usage`, if any."""
    try:
        chunk = orjson.loads(data)
        content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
        usage = _usage(chunk.get("usage"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GeneratorError("generator_failed", f"an unreadable chunk: {data[:200]}") from exc
    return (content if isinstance(content, str) else ""), usage


def _completion(data: bytes) -> tuple[str, Usage | None]:
    """The text of a whole completion (`choices[0].message.content`) and its `usage`."""
    try:
        completion = orjson.loads(data)
        content = completion["choices"][0]["message"].get("content")
        usage = _usage(completion.get("usage"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GeneratorError("generator_failed", f"an unreadable answer: {data[:200]!r}") from exc
    return (content if isinstance(content, str) else ""), usage


def _usage(value: object) -> Usage | None:
    """`usage`'s prompt_tokens and completion_tokens; None unless both are counts."""
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if type(prompt) is int and type(completion) is int and prompt >= 0 and completion >= 0:
        return Usage(prompt, completion)
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
