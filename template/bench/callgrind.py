"""Instructions per call, counted by valgrind's callgrind: the in-process figure to trust on a
busy or shared machine, where CPU time drifts by 2x and instruction counts repeat to 0.1%.

A benchmark offers each scenario as a command that does its set-up and warm-up, then makes
exactly `--calls N` calls and exits. `per_call` runs it under callgrind twice, with N and 2N
calls: the difference is N calls' worth of instructions, with start-up, imports, set-up and
warm-up cancelled out. Only this process's instructions count: a database or Redis server
working for it is not in the figure (its round trips are; compare them separately).

Hash randomization is off (`PYTHONHASHSEED=0`) so that dict and set layouts, and with them
the counts, repeat between runs. Under callgrind Python runs ~50x slower: a few hundred calls
per scenario are enough.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def available() -> bool:
    return shutil.which("valgrind") is not None


def instructions(command: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions `command` executed, start to exit."""
    with tempfile.TemporaryDirectory() as scratch:
        finished = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/callgrind.out",
                *command,
            ],
            env={**(os.environ if env is None else env), "PYTHONHASHSEED": "0"},
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
