"""Benchmark the middleware stack: full service vs bare FastAPI vs raw ASGI, same run.

Two kinds of figure, because this machine is noisy:
- CPU time per request with the ASGI app called in-process (no sockets): steady, the one to
  compare across changes.
- requests/s and p50/p99 under load: the service under uvicorn (uvloop, httptools, access
  log off) loaded by wrk (https://github.com/wg/wrk; `apt install wrk` or `brew install wrk`),
  the server on one CPU and wrk on another when `taskset` is available.
Rounds are interleaved and the median is reported; only ratios within one run mean much.

    uv run python bench/bench_stack.py [--rounds 5] [--duration 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # the project, importable uninstalled

from bench import apps, asgi  # noqa: E402
from bench.asgi import get_scope  # noqa: E402

APPS: dict[str, tuple[str, bool]] = {
    "full stack": ("bench.apps:full", True),
    "bare FastAPI": ("bench.apps:bare", True),
    "raw ASGI": ("bench.apps:raw", False),
}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def environment(database_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database_dir}/bench.sqlite3",
        "LOG_LEVEL": "INFO",  # the access-log line is part of the stack being measured
    }


# --- in-process: CPU time per request ---------------------------------------------------------


async def cpu_us_per_request(app: Any, requests: int) -> float:
    scope, receive, send = get_scope(apps.PATH), asgi.receive, asgi.expect_200
    for _ in range(200):  # warm-up
        await app(dict(scope), receive, send)
    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / requests * 1e6


async def in_process(requests: int, rounds: int) -> dict[str, float]:
    built: dict[str, Any] = {
        "full stack": apps.full(),
        "bare FastAPI": apps.bare(),
        "raw ASGI": apps.raw,
    }
    samples: dict[str, list[float]] = {name: [] for name in built}
    # Access-log lines are still formatted and written, to nowhere, as to a log shipper's pipe.
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230  (opening /dev/null never blocks)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        async with LifespanManager(built["full stack"]), LifespanManager(built["bare FastAPI"]):
            for _ in range(rounds):
                for name, app in built.items():
                    samples[name].append(await cpu_us_per_request(app, requests))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
    return {name: statistics.median(values) for name, values in samples.items()}


# --- under load: uvicorn + wrk ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return command


def start_server(
    target: str, factory: bool, port: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", target, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    server = subprocess.Popen(pinned(command, 0), env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{apps.PATH}", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{target} did not start")


def wrk(port: int, duration: int, connections: int) -> tuple[float, float, float]:
    output = subprocess.run(
        pinned(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
             f"http://127.0.0.1:{port}{apps.PATH}"],
            1,
        ),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", output, re.M).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    return rps, percentile("50"), percentile("99")


def under_load(rounds: int, duration: int, connections: int, env: dict[str, str]) -> dict[str, Any]:
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in APPS}
    for _ in range(rounds):
        for name, (target, factory) in APPS.items():
            port = free_port()
            server = start_server(target, factory, port, env)
            try:
                wrk(port, 1, connections)  # warm-up
                samples[name].append(wrk(port, duration, connections))
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=30)
    return {
        name: tuple(statistics.median(s[i] for s in values) for i in range(3))
        for name, values in samples.items()
    }


def ratio_line(
    label: str, figures: dict[str, float], ratio: Callable[[float, float], float]
) -> str:
    full, bare, raw = (figures[name] for name in APPS)
    return (
        f"  {label}: full/bare {ratio(full, bare):.2f}  full/raw {ratio(full, raw):.2f}"
        f"  bare/raw {ratio(bare, raw):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000, help="in-process requests per round")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per round")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness poll
    with tempfile.TemporaryDirectory() as database_dir:
        env = environment(database_dir)
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "LOG_LEVEL")})

        print(f"In-process, CPU time per request (median of {args.rounds} x {args.requests}):")
        cpu = asyncio.run(in_process(args.requests, args.rounds))
        for name, micros in cpu.items():
            print(f"  {name:<13} {micros:8.1f} us   ({1e6 / micros:9.0f} requests/s per core)")
        print(ratio_line("throughput ratio", cpu, lambda a, b: b / a))

        if shutil.which("wrk") is None:
            print("\nUnder load: skipped, wrk is not installed (apt/brew install wrk).")
            return
        print(
            f"\nUnder load, uvicorn + wrk, {args.connections} connections"
            f" (median of {args.rounds} rounds x {args.duration} s):"
        )
        load = under_load(args.rounds, args.duration, args.connections, env)
        for name, (rps, p50, p99) in load.items():
            print(f"  {name:<13} {rps:9.0f} requests/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        throughput = {name: figures[0] for name, figures in load.items()}
        print(ratio_line("requests/s ratio", throughput, lambda a, b: a / b))
        full_share = load["full stack"][0] / load["bare FastAPI"][0]
        verdict = "meets" if full_share >= 0.6 else "MISSES"
        print(f"  full stack at {full_share:.0%} of bare FastAPI: {verdict} the 60% target")


if __name__ == "__main__":
    main()
