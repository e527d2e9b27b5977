"""Benchmark the cache and the rate limiter: the same read uncached, cached (a hit), and
cached behind the rate limiter, in the same run, for each cache backend available.

The app is called in-process (no sockets, no load generator), two ways: one caller at a
time, CPU time per request (steady; the figure for the rate limiter's overhead); and C
concurrent callers, each request timed on the wall clock: requests/s, p50 and p99. Rounds are
interleaved and medians reported; compare ratios within one run. The Redis backend is
measured when REDIS_URL is set.

The limit is the shipped RATE_LIMIT_DEFAULT: requests come from a succession of client
addresses, each sending half its limit, so every check counts into a window of the size a
real client keeps and none is refused. Requests served unchecked because the limiter's
storage failed (`rate_limit_fail_open_total`) are reported: a figure with any is not a
measure of the limiter.

    uv run python bench/bench_cache.py [--rounds 5] [--requests 3000] [--concurrency 16]
    uv run python bench/bench_cache.py --instructions [--calls 300]
    uv run python bench/bench_cache.py --json cache.json   # the figures also as JSON

`--instructions` prints instructions per request instead, counted by valgrind's callgrind
(steady on a busy machine; a Redis server's own work is not in the count).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # the project, importable uninstalled

from bench import asgi, cache_apps, callgrind  # noqa: E402
from bench.asgi import get_scope  # noqa: E402
from bench.figures import Figures  # noqa: E402

# Each read's baseline: caching is measured against the uncached read, the rate limiter
# against the cached read it sits in front of.
BASELINES = {"cached": "uncached", "cached + rate limit": "cached"}


def client_addresses(app: Any) -> Iterator[str]:
    """Client addresses, each repeated half the default limit: no window ever fills."""
    per_client = max(cache_apps.default_limit(app) // 2, 1)
    for n in count():
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        for _ in range(per_client):
            yield address


async def call(app: Any, path: str, clients: Iterator[str]) -> None:
    await app(get_scope(path, client=next(clients)), asgi.receive, asgi.expect_200)


async def load(
    app: Any, path: str, clients: Iterator[str], requests: int, concurrency: int
) -> tuple[float, float, float, list[float]]:
    """requests/s, p50 ms and p99 ms of `requests` calls, `concurrency` at a time, and every
    call's latency (ms)."""
    latencies: list[float] = []
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call(app, path, clients)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    return requests / elapsed, p50, p99, [seconds * 1e3 for seconds in latencies]


# What `measure` reports per read, in the order of its figures: name, unit, statistic.
FIGURES = (
    ("CPU per request", "us", "median"),
    ("throughput", "requests/s", "median"),
    ("latency", "ms", "p50"),
    ("latency", "ms", "p99"),
)


async def cpu_us_per_request(app: Any, path: str, clients: Iterator[str], requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await call(app, path, clients)
    return (time.process_time() - started) / requests * 1e6


async def measure(backend: str, app: Any, args: argparse.Namespace, report: Figures) -> None:
    names = list(cache_apps.PATHS)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    loaded: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    timed: dict[str, list[float]] = {name: [] for name in names}
    async with LifespanManager(app):
        clients = client_addresses(app)
        for path in cache_apps.PATHS.values():  # warm-up; fills the cache
            for _ in range(200):
                await call(app, path, clients)
        for _ in range(args.rounds):
            for name, path in cache_apps.PATHS.items():
                cpu[name].append(await cpu_us_per_request(app, path, clients, args.requests))
                rps, p50, p99, latencies = await load(
                    app, path, clients, args.requests, args.concurrency
                )
                loaded[name].append((rps, p50, p99))
                timed[name] += latencies
        unchecked = cache_apps.fail_open_events(app)

    print(f"\n{backend} backend ({cache_apps.backend_name(app)}):")
    figures = {}
    for name in names:
        micros = statistics.median(cpu[name])
        rps, p50, p99 = (statistics.median(sample[i] for sample in loaded[name]) for i in range(3))
        figures[name] = (micros, rps, p50, p99)
        print(
            f"  {name:<20} {micros:7.0f} us CPU   {rps:7.0f} requests/s"
            f"   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
        )
        report.add_samples(f"{backend} backend, {name}", timed[name])
    for name in names:
        base = BASELINES.get(name, "")
        for index, (what, unit, stat) in enumerate(FIGURES):
            report.add(
                f"{backend} backend, {name}, {what}",
                figures[name][index],
                unit,
                stat,
                baseline=base,
                baseline_value=figures[base][index] if base else None,
            )
    report.add(f"{backend} backend, served unchecked", unchecked, "requests", "count")
    uncached, cached, limited = (figures[name] for name in names)
    print(
        f"  cached vs uncached: {cached[1] / uncached[1]:.2f}x requests/s,"
        f" p99 {cached[3] / uncached[3]:.2f}x, CPU {cached[0] / uncached[0]:.2f}x"
    )
    print(
        f"  rate limiter: {limited[0] - cached[0]:+.0f} us CPU per request,"
        f" {limited[1] / cached[1]:.2f}x requests/s"
    )
    print(f"  served unchecked (rate-limit storage failed): {unchecked}")


async def scenario(name: str, calls: int) -> None:
    """What callgrind runs: "backend/read" set up, warmed up, then called exactly `calls`
    times."""
    backend, _, read = name.partition("/")
    overrides = cache_apps.backends().get(backend)
    if overrides is None or read not in cache_apps.PATHS:
        raise SystemExit(f"unknown scenario {name!r}")
    app, path = cache_apps.build(**overrides), cache_apps.PATHS[read]
    # Under callgrind start-up takes many times its usual 5 s limit.
    async with LifespanManager(app, startup_timeout=None, shutdown_timeout=None):
        clients = client_addresses(app)  # each under the default limit, as in `measure`
        for _ in range(100):  # warm-up; fills the cache
            await call(app, path, clients)
        gc.collect()
        gc.freeze()  # what set-up left is not the calls' to collect (see bench/callgrind.py)
        for _ in range(calls):
            await call(app, path, clients)


def instructions(calls: int, report: Figures) -> None:
    for backend in cache_apps.backends():
        print(f"\n{backend} backend:")
        counts = {}
        for name in cache_apps.PATHS:
            key = f"{backend}/{name}"
            command = [sys.executable, str(Path(__file__).resolve()), "--scenario", key]
            counts[name] = callgrind.per_call(command, calls)
            print(f"  {name:<20} {counts[name]:12,.0f} instructions per request")
            base = BASELINES.get(name, "")
            report.add(
                f"{backend} backend, {name}, instructions per request",
                counts[name],
                "instructions",
                "mean",
                baseline=base,
                baseline_value=counts[base] if base else None,
            )
        uncached, cached, limited = counts.values()
        print(
            f"  cached vs uncached: {uncached / cached:.2f}x fewer instructions;"
            f" rate limiter: {limited - cached:+,.0f} per request"
        )


async def main_async(args: argparse.Namespace, report: Figures) -> None:
    for backend, overrides in cache_apps.backends().items():
        await measure(backend, cache_apps.build(**overrides), args, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and read")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only instructions per request, under valgrind's callgrind",
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per callgrind scenario")
    parser.add_argument("--scenario", help="backend/read: make --calls calls and exit")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as database_dir:
        os.environ.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{database_dir}/bench.sqlite3")
        os.environ["ACCESS_LOG"] = "false"
        logging.disable(logging.INFO)
        if args.scenario:
            asyncio.run(scenario(args.scenario, args.calls))
            return
        if args.instructions:
            if not callgrind.available():
                parser.error("--instructions needs valgrind (apt install valgrind)")
            print(f"Instructions per request (callgrind, {args.calls} and {2 * args.calls} calls):")
            report = Figures("cache", {"instructions": True, "calls": args.calls})
            instructions(args.calls, report)
            report.write(args.json)
            return
        print(
            f"Same read uncached, cached and rate limited: {args.concurrency} concurrent callers,"
            f" in-process (median of {args.rounds} rounds x {args.requests} requests)"
        )
        settings = {k: getattr(args, k) for k in ("rounds", "requests", "concurrency")}
        report = Figures("cache", settings)
        asyncio.run(main_async(args, report))
        report.write(args.json)


if __name__ == "__main__":
    main()
