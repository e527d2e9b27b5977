"""Servers and load for the benchmarks that measure over sockets: free ports, commands pinned
to one CPU, resident memory, a check that the servers still run, and wrk runs read through a
Lua script of their own.

wrk (https://github.com/wg/wrk; `apt install wrk` or `brew install wrk`) sends the calls of
the script `wrk_script` writes: one call every time, or several in turn. When the load ends
the script prints one JSON line, which `wrk` reads into a `Load`: requests/s and the latency
at 100 percentiles. An answer other than 2xx/3xx, or a socket error, fails the run instead:
the figures are those of the endpoint working.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import statistics
import subprocess
from pathlib import Path
from typing import NamedTuple


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment, for a server about to
    start. Not port 0's pick: that comes from the kernel's range of ephemeral ports, which
    every outgoing connection (to PostgreSQL, Redis, the broker) also draws its source port
    from, so one could take it before the server binds it ("Address already in use"). A random
    port below that range is only ever taken by another listener."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(10_000, floor) if floor > 10_001 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _ephemeral_floor() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere, a safe floor)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def pinned(command: list[str], cpu: int) -> list[str]:
    """`command`, run on CPU `cpu` only when `taskset` is available and there is more than one
    CPU. taskset execs the command: the process started is the command's own."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return command


def rss_mb(pid: int) -> float:
    """Resident memory (MB) of `pid` and its children (uvicorn's workers, Celery's pool); 0
    once the process has exited."""
    import psutil  # the project's; the rest of this module needs only the standard library

    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in family) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def require_running(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Fail if any of `processes` (by name) has exited: figures measured meanwhile are those of
    a dead service, not of the service."""
    exited = {name: process.poll() for name, process in processes.items()}
    if dead := {name: status for name, status in exited.items() if status is not None}:
        raise RuntimeError(
            "; ".join(
                f"{name} exited during the benchmark (status {status})"
                for name, status in dead.items()
            )
        )


# --- wrk ---------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One request wrk sends."""

    path: str
    headers: dict[str, str]
    method: str = "GET"
    body: str = ""


# One call: wrk builds the request once and sends it every time. Several: the script builds
# each in turn. At the end it prints one JSON line: requests, seconds, answers that were not
# 2xx/3xx, socket errors, and the latency at each percentile (us).
WRK_SCRIPT = """
local calls = CALLS
if #calls == 1 then
  wrk.path, wrk.method, wrk.body = calls[1][1], calls[1][3], calls[1][4]
  for name, value in pairs(calls[1][2]) do wrk.headers[name] = value end
else
  local next_call = 0
  request = function()
    next_call = next_call % #calls + 1
    local call = calls[next_call]
    return wrk.format(call[3], call[1], call[2], call[4])
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "bad_status": %d, "socket_errors": %d, "percentiles": [',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout
  ))
  for p = 1, 99 do io.write(latency:percentile(p), ",") end
  io.write(latency:percentile(99.9), "]}\\n")
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_call(call: Call) -> str:
    """`call` as the script's table: path, headers, method, body (nil: none)."""
    headers = ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in call.headers.items())
    body = lua_string(call.body) if call.body else "nil"
    fields = [lua_string(call.path), "{" + headers + "}", lua_string(call.method), body]
    return "{" + ", ".join(fields) + "}"


def wrk_script(calls: list[Call], directory: str, name: str) -> str:
    """A script sending `calls`, written in `directory` under a file name made of `name`."""
    path = Path(directory) / f"{name.replace(' ', '-').replace(',', '')}.lua"
    entries = ", ".join(lua_call(call) for call in calls)
    path.write_text(WRK_SCRIPT.replace("CALLS", "{" + entries + "}", 1))
    return str(path)


class Load(NamedTuple):
    requests_per_second: float
    percentiles_ms: list[float]  # p1 .. p99, then p99.9

    def at(self, percentile: int) -> float:
        return self.percentiles_ms[percentile - 1]


def wrk(port: int, script: str, duration: int, connections: int) -> Load:
    """Load the server on `port` with `script`'s calls for `duration` seconds, wrk on CPU 1."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", script,
        f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    finished = subprocess.run(pinned(command, 1), capture_output=True, text=True, check=False)
    output = finished.stdout + finished.stderr
    lines = [line for line in output.splitlines() if line.startswith('{"requests"')]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {finished.returncode}):\n{output}")
    summary = json.loads(lines[-1])
    if summary["bad_status"] or summary["socket_errors"]:
        raise RuntimeError(
            f"{summary['bad_status']} answers that were not 2xx/3xx and "
            f"{summary['socket_errors']} socket errors under load:\n{output}"
        )
    return Load(
        summary["requests"] / summary["seconds"], [us / 1e3 for us in summary["percentiles"]]
    )


def median_load(samples: list[Load]) -> Load:
    """The median of each figure over rounds."""
    rps = statistics.median(s.requests_per_second for s in samples)
    count = len(samples[0].percentiles_ms)
    percentiles = [statistics.median(s.percentiles_ms[i] for s in samples) for i in range(count)]
    return Load(rps, percentiles)
