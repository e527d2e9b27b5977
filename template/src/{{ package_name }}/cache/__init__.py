"""Cache-aside for domain code: `await cache.get_or_load(key, loader, Model)`, or
`get_or_load_json` for a route that answers with the value's JSON as it is.

Domain code reads the same whichever backend the template generated (Redis, in-process memory,
or none) and whichever one the settings select at run time. What `Cache` adds to a backend:

- values are the pydantic model's JSON (Decimal stays an exact string) and are validated on
  the way back; an entry that does not validate is a miss, never a 500. `get_or_load_json`
  skips that step on a hit and returns the stored JSON itself: parsing it into the model only
  to serialize it again was a fifth of a cached read's CPU. The entry was the model's JSON
  when this code wrote it, and its fingerprint (below) says the model has not changed since;
  one that is not an entry at all is still a miss;
- single flight: concurrent misses for one key in this process run the loader once; a backend
  that is shared between processes (Redis) also holds a short lock so other processes wait
  for the first one's value instead of loading it again;
- keys live under `<namespace>:<version>:`; each entry also carries a fingerprint of its
  model's JSON schema, so a deploy that changes a response shape never reads old entries;
- fail open: a backend error, timeout or garbage is counted, logged at most once per
  interval, and the value comes from the loader. The next call tries the backend again, so
  caching resumes by itself when the backend comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import orjson
from fastapi import Request
from limits.aio.storage import Storage
from prometheus_client import Counter
from pydantic import TypeAdapter
from pydantic.errors import PydanticUserError

from ..observability import Metrics
from ..resources import Degraded, registry
from ..tracing import Traceable

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The first segment of a key ("portfolio" in "portfolio:42") labels the metrics: a bounded set.
PREFIX_SEPARATOR = ":"


class CacheBackend(Protocol):
    """Byte storage with per-entry TTL. Errors propagate: `Cache` decides to fail open."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, keys: list[str]) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def acquire(self, key: str) -> bool:
        """Take the fill lock for `key`; False when another process holds it."""
        ...

    async def release(self, key: str) -> None: ...

    def rate_limit_storage(self) -> Storage:
        """Where the rate limiter keeps its counters: next to the cache."""
        ...


class Outage:
    """Fail-open bookkeeping for a backend: throttled warnings and a short back-off.

    After `FAILURES_BEFORE_BACKOFF` failures in a row the backend is skipped for
    `retry_after` seconds, so a dead or black-holed server costs a few timeouts per interval
    instead of several per request, while one slow call under a burst does not switch the
    cache off. The first call after the back-off tries again: that is how service resumes
    without a restart.
    """

    FAILURES_BEFORE_BACKOFF = 3

    def __init__(self, message: str, *, retry_after: float, warning_interval: float) -> None:
        self.message = message
        self.retry_after = retry_after
        self.warning_interval = warning_interval
        self._failures = 0
        self._retry_at = 0.0
        self._warned_at = -warning_interval

    @property
    def backing_off(self) -> bool:
        return self._failures >= self.FAILURES_BEFORE_BACKOFF and time.monotonic() < self._retry_at

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        self._retry_at = now + self.retry_after
        if now - self._warned_at >= self.warning_interval:
            self._warned_at = now
            logger.warning(self.message, extra={"error": f"{type(exc).__name__}: {exc}"})


class _PrefixCounters(NamedTuple):
    hits: Counter
    misses: Counter
    errors: Counter
    coalesced: Counter


class _Counters:
    def __init__(self, metrics: Metrics) -> None:
        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ("prefix",), registry=metrics.registry)

        self._families = _PrefixCounters(
            counter("cache_hits_total", "Reads answered from the cache, by key prefix."),
            counter("cache_misses_total", "Reads that went to the source, by key prefix."),
            counter(
                "cache_errors_total",
                "Backend errors, timeouts and unreadable entries, by key prefix.",
            ),
            counter(
                "cache_coalesced_total",
                "Misses served by a load already in flight (single flight), by key prefix.",
            ),
        )
        self._children: dict[str, _PrefixCounters] = {}

    def __call__(self, prefix: str) -> _PrefixCounters:
        # Labelled children are cached: `labels()` validates and locks on every call.
        children = self._children.get(prefix)
        if children is None:
            children = self._children[prefix] = _PrefixCounters(
                *(family.labels(prefix) for family in self._families)
            )
        return children


class _Codec:
    """A type's JSON codec and schema fingerprint, built once per type.

    An entry is b"<fingerprint>|<json>": a different fingerprint is an entry written for
    another shape of the model (another deploy), so it is a miss and gets overwritten.
    """

    def __init__(self, model: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(model)
        try:
            schema = orjson.dumps(
                self.adapter.json_schema(mode="serialization"), option=orjson.OPT_SORT_KEYS
            )
        except PydanticUserError:  # no JSON schema for this type: its name has to do
            schema = repr(model).encode()
        self.fingerprint = hashlib.blake2b(schema, digest_size=6).hexdigest().encode()
        self._head = self.fingerprint + b"|"

    def encode(self, value: Any) -> bytes:
        return self._head + self.adapter.dump_json(value)

    def decode(self, raw: bytes) -> Any:
        """The value, `_MISS` for another shape's entry, ValueError for garbage."""
        json = self.json_of(raw)
        return json if json is _MISS else self.adapter.validate_json(json)

    def json_of(self, raw: bytes) -> Any:
        """The entry's JSON as stored, `_MISS` for another shape's entry, ValueError for an
        entry this code did not write."""
        if raw.startswith(self._head):
            return raw[len(self._head) :]
        if raw[len(self.fingerprint) : len(self._head)] == b"|":
            return _MISS
        raise ValueError(f"not a cache entry: {raw[:40]!r}")


_MISS = object()


class Cache:
    """The cache-aside helper, and the resource that owns the backend."""

    name = "cache"

    def __init__(
        self,
        backend: CacheBackend,
        metrics: Metrics,
        *,
        default_ttl: float = 300.0,
        namespace: str = "",
        version: str = "",
        warning_interval: float = 60.0,
        retry_after: float = 1.0,
        lock_wait: float = 0.0,
    ) -> None:
        self.backend = backend
        self.default_ttl = default_ttl
        self._root = f"{namespace}:{version}:" if namespace or version else ""
        self._counters = _Counters(metrics)
        self.outage = Outage(
            "cache unavailable; serving from the source",
            retry_after=retry_after,
            warning_interval=warning_interval,
        )
        self._codecs: dict[Any, _Codec] = {}
        self._flights: dict[str, asyncio.Task[Any]] = {}
        # Loads that began before a write invalidated their key: their value is not stored.
        self._outdated: set[asyncio.Task[Any]] = set()
        # How long a miss waits for another process's load before loading itself.
        self._lock_wait = lock_wait

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    def instrument(self, tracer_provider: TracerProvider) -> None:
        """The backend's calls as spans, when it has a client to trace (Redis)."""
        if isinstance(self.backend, Traceable):
            self.backend.instrument(tracer_provider)

    async def check(self) -> None:
        # The service fails open, so an unreachable cache degrades it but keeps it ready.
        try:
            await self.backend.check()
        except Exception as exc:
            raise Degraded(f"{type(exc).__name__}: {exc}; serving from the source") from exc

    def key(self, key: str) -> str:
        """The backend key for a domain key."""
        return self._root + key

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        model: type[T] | Any,
        *,
        ttl: float | None = None,
    ) -> T:
        """The cached value for `key`, or the loader's, stored for `ttl` seconds.

        `model` is the value's type (a pydantic model, `list[Model]`, ...), used to serialize
        it and to validate what comes back.
        """
        codec = self._codec(model)
        prefix, full_key = key.partition(PREFIX_SEPARATOR)[0], self._root + key
        value = await self._hit(full_key, codec, prefix, codec.decode)
        if value is _MISS:
            value = await self._load(full_key, loader, codec, ttl, prefix)
        return value  # type: ignore[no-any-return]

    async def get_or_load_json(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        model: Any,
        *,
        ttl: float | None = None,
    ) -> bytes:
        """`get_or_load`, answered as the value's JSON (as `model` serializes it): on a hit
        the stored bytes themselves, for a route to send as its body unchanged."""
        codec = self._codec(model)
        prefix, full_key = key.partition(PREFIX_SEPARATOR)[0], self._root + key
        json = await self._hit(full_key, codec, prefix, codec.json_of)
        if json is _MISS:
            json = codec.adapter.dump_json(await self._load(full_key, loader, codec, ttl, prefix))
        return json  # type: ignore[no-any-return]

    async def _hit(
        self, full_key: str, codec: _Codec, prefix: str, decode: Callable[[bytes], Any]
    ) -> Any:
        """The entry as `decode` reads it, counted as a hit; `_MISS` for none."""
        value = await self._read(full_key, codec, prefix, decode)
        if value is not _MISS:
            self._counters(prefix).hits.inc()
        return value

    def _codec(self, model: Any) -> _Codec:
        codec = self._codecs.get(model)
        if codec is None:
            codec = self._codecs[model] = _Codec(model)
        return codec

    async def _load(
        self,
        full_key: str,
        loader: Callable[[], Awaitable[Any]],
        codec: _Codec,
        ttl: float | None,
        prefix: str,
    ) -> Any:
        """A miss: the value from this process's load in flight for the key, or a new one."""
        counters = self._counters(prefix)
        counters.misses.inc()
        flight = self._flights.get(full_key)
        if flight is None:
            ttl = self.default_ttl if ttl is None else ttl
            flight = asyncio.create_task(self._fill(full_key, loader, codec, ttl, prefix))
            self._flights[full_key] = flight
            flight.add_done_callback(partial(self._landed, full_key))
        else:
            counters.coalesced.inc()
        # Shielded: a caller that disconnects does not cancel the load the others wait for.
        return await asyncio.shield(flight)

    # Invalidations try the backend even while backing off: a missed one serves stale data
    # until the entry's TTL runs out, and writes are rare.

    async def invalidate(self, *keys: str) -> None:
        """Drop entries after a write; the next read loads the new value."""
        full_keys = [self._root + key for key in keys]
        self._outdate(lambda key: key in full_keys)
        if full_keys:
            await self._safely(lambda: self.backend.delete(full_keys), keys[0], always=True)

    async def invalidate_prefix(self, prefix: str) -> None:
        """Drop every entry whose key starts with `prefix` (e.g. "portfolio:42:")."""
        full_prefix = self._root + prefix
        self._outdate(lambda key: key.startswith(full_prefix))
        await self._safely(lambda: self.backend.delete_prefix(full_prefix), prefix, always=True)

    def _outdate(self, matches: Callable[[str], bool]) -> None:
        # A load in flight may have read the source before the write: later readers must not
        # join it, and its value must not be stored.
        for key in [key for key in self._flights if matches(key)]:
            self._outdated.add(self._flights.pop(key))

    def _landed(self, key: str, flight: asyncio.Task[Any]) -> None:
        self._outdated.discard(flight)
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone away

    async def _fill(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        codec: _Codec,
        ttl: float,
        prefix: str,
    ) -> Any:
        leading = await self._safely(lambda: self.backend.acquire(key), prefix, fallback=True)
        if not leading:
            value = await self._wait_for_other_process(key, codec, prefix)
            if value is not _MISS:
                self._counters(prefix).coalesced.inc()
                return value
        try:
            value = await loader()
            if asyncio.current_task() not in self._outdated:
                entry = codec.encode(value)
                await self._safely(lambda: self.backend.set(key, entry, ttl), prefix)
            return value
        finally:
            if leading:
                await self._safely(lambda: self.backend.release(key), prefix)

    async def _wait_for_other_process(self, key: str, codec: _Codec, prefix: str) -> Any:
        deadline = time.monotonic() + self._lock_wait
        pause = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            value = await self._read(key, codec, prefix, codec.decode)
            if value is not _MISS:
                return value
            pause = min(pause * 2, 0.05)
        return _MISS

    async def _read(
        self, key: str, codec: _Codec, prefix: str, decode: Callable[[bytes], Any]
    ) -> Any:
        """The entry as `decode` reads it (the value, or its JSON); `_MISS` for none."""
        raw = await self._safely(lambda: self.backend.get(key), prefix)
        if raw is None:
            return _MISS
        try:
            return decode(raw)
        except ValueError as exc:  # garbage, or JSON the model rejects (ValidationError)
            self._counters(prefix).errors.inc()
            logger.warning("unreadable cache entry", extra={"key": key, "error": str(exc)[:200]})
            return _MISS

    async def _safely(
        self,
        operation: Callable[[], Awaitable[Any]],
        prefix: str,
        *,
        fallback: Any = None,
        always: bool = False,
    ) -> Any:
        """The backend operation's result, or `fallback` when it fails or is backing off."""
        if self.outage.backing_off and not always:
            return fallback
        try:
            result = await operation()
        except Exception as exc:
            self._counters(prefix).errors.inc()
            self.outage.failed(exc)
            return fallback
        self.outage.succeeded()
        return result


def cache_of(request: Request) -> Cache:
    """The cache, for code that has the request: `await cache_of(request).get_or_load(...)`."""
    return registry(request).get(Cache)
