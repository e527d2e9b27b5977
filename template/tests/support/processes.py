"""Real processes for the tests: wait on what they print, not on a guess of how long it takes."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

# Servers the tests start take their ports where the benchmarks' do.
from bench.processes import free_port as free_port

# Long enough for a cold start on a loaded machine (2 cores at load 8 take ~15 s); a process
# that exits or prints its failure ends the wait at once, so the limit costs nothing when green.
START_TIMEOUT = 120.0


class Output:
    """Reads a process's (text, merged) output in a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        if process.stdout is None:
            raise ValueError("start the process with stdout=subprocess.PIPE")
        self.process = process
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, fragment: str, timeout: float = START_TIMEOUT, start: int = 0) -> int:
        """Wait until a line (from line `start` on) contains `fragment`; return its index."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self._lines)):
                    if fragment in self._lines[index]:
                        return index
                start = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    tail = "".join(self._lines[-40:])
                    state = "exited" if self.process.poll() is not None else "still running"
                    raise AssertionError(
                        f"no line with {fragment!r} after {timeout:.0f} s ({state}):\n{tail}"
                    )
                self._changed.wait(left)

    def close(self, timeout: float = 30.0) -> str:
        """Wait for the process to end (after a signal the test sent); return all output."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return self.text


def wait_for_text(
    path: Path, fragment: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> None:
    """Wait until the log file of a running `process` contains `fragment`."""
    deadline = time.monotonic() + timeout
    while fragment not in (text := path.read_text()):
        assert process.poll() is None, f"exited waiting for {fragment!r}:\n{text}"
        assert time.monotonic() < deadline, f"no {fragment!r} in {timeout:.0f} s:\n{text}"
        time.sleep(0.05)


class RedisServer:
    """A private redis-server on a free port, for a test to kill and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start (or start again, on the same port) and return once it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        # No persistence: a restart comes back empty, as a Redis used as a cache or broker may.
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory)]  # fmt: skip
        self._process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        Output(self._process).wait_for("Ready to accept connections")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed server: connections drop, nothing is saved."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            self._process.wait()
