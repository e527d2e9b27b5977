"""Instructions per call, counted by valgrind's callgrind: the in-process figure to trust on a
busy or shared machine, where CPU time drifts by 2x and instruction counts repeat to 0.1%.

A benchmark offers each scenario as a command that does its set-up and warm-up, then makes
exactly `--calls N` calls and exits. `per_call` runs it under callgrind twice, with N and 2N
calls: the difference is N calls' worth of instructions, with start-up, imports, set-up and
warm-up cancelled out. Only this process's instructions count: a database or Redis server
working for it is not in the figure (its round trips are; compare them separately).

Hash randomization is off (`PYTHONHASHSEED=0`) so that dict and set layouts, and with them
the counts, repeat between runs. A scenario should `gc.collect()` and `gc.freeze()` after its
set-up: a full collection over what set-up left behind, falling in one run and not the other,
would count as requests. Start-up itself differs by ~0.1% between runs (its threads
interleave differently), a few million instructions: make N calls' work large next to that
(2000 calls of a 300k-instruction request hold the figure to 0.01%; 300 calls moved it by up
to 5%). Under callgrind Python runs ~50x slower: a scenario takes a few minutes.
"""

from __future__ import annotations

import gc
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module runs without the project's dependencies too
    from starlette.types import ASGIApp, Receive, Scope, Send

COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def available() -> bool:
    return shutil.which("valgrind") is not None


def _under_callgrind(command: Sequence[str], scratch: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out", *command]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    return {**(os.environ if env is None else env), "PYTHONHASHSEED": "0"}


def instructions(command: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions `command` executed, start to exit."""
    with tempfile.TemporaryDirectory() as scratch:
        finished = subprocess.run(
            _under_callgrind(command, scratch),
            env=_environment(env),
            capture_output=True,
            text=True,
            check=False,
        )
    found = COLLECTED.search(finished.stderr)
    if finished.returncode != 0 or found is None:
        tail = "\n".join(finished.stderr.splitlines()[-20:])
        raise RuntimeError(f"{' '.join(command)} failed under callgrind:\n{tail}")
    return int(found.group(1))


def per_call(command: Sequence[str], calls: int, env: dict[str, str] | None = None) -> float:
    """Instructions per call of a scenario: `command` is run with `--calls N` and `--calls 2N`
    appended."""
    once = instructions([*command, "--calls", str(calls)], env)
    twice = instructions([*command, "--calls", str(2 * calls)], env)
    return (twice - once) / calls


def served_per_request(
    command: Sequence[str],
    port: int,
    requests: Sequence[tuple[str, dict[str, str]]],
    calls: int,
    env: dict[str, str] | None = None,
) -> float:
    """Instructions per request of a server, HTTP parsing and all: `command` starts it on
    `port` (under callgrind, started here), and this process sends it `calls` GET requests on
    one keep-alive connection, cycling through `requests` (path, headers), after one round of
    them to warm it up; then 2 x `calls`. The difference, per request, is what serving one
    costs the server. Waiting for it to listen costs it nothing: refused connections never
    reach it. After the warm-up round it is sent `GET SETTLE_PATH`, which a server run for
    counting answers by freezing what start-up and warm-up left (`settled`)."""
    once = _served(command, port, requests, calls, env)
    twice = _served(command, port, requests, 2 * calls, env)
    return (twice - once) / calls


def _served(
    command: Sequence[str],
    port: int,
    requests: Sequence[tuple[str, dict[str, str]]],
    calls: int,
    env: dict[str, str] | None,
) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch, "server.log")
        with log.open("wb") as output:
            server = subprocess.Popen(
                _under_callgrind(command, scratch),
                env=_environment(env),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                connection = _connect(server, port, log)
                warm_up = [*requests, (SETTLE_PATH, {})]
                for n in range(len(warm_up) + calls):
                    path, headers = warm_up[n] if n < len(warm_up) else requests[n % len(requests)]
                    connection.request("GET", path, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        raise RuntimeError(f"GET {path}: {response.status}")
                connection.close()
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=SERVER_LIMIT)
        text = log.read_text(errors="replace")
    found = COLLECTED.search(text)
    if found is None:
        tail = "\n".join(text.splitlines()[-20:])
        raise RuntimeError(f"{' '.join(command)} failed under callgrind:\n{tail}")
    return int(found.group(1))


SETTLE_PATH = "/_callgrind/settle"


def settled(app: ASGIApp) -> ASGIApp:
    """`app`, answering `GET SETTLE_PATH` by collecting garbage and freezing the rest out of
    the collector's reach: as a scenario does after its set-up, for a server (a full
    collection over start-up's objects, in one run and not the other, would count as
    requests). Every other request costs one comparison more, the service's and the bare
    app's alike."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SETTLE_PATH:
            gc.collect()
            gc.freeze()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return wrapper


# Python starts ~50x slower under callgrind; a loaded machine slower still.
SERVER_LIMIT = 600.0


def _connect(server: subprocess.Popen[bytes], port: int, log: Path) -> http.client.HTTPConnection:
    deadline = time.monotonic() + SERVER_LIMIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.5)
            continue
        return http.client.HTTPConnection("127.0.0.1", port, timeout=SERVER_LIMIT)
    raise RuntimeError(f"the server did not listen on port {port} in {SERVER_LIMIT:.0f} s")
