"""Running a generated project's own test suite the way CI does, and judging its output."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from harness import falkordb
from harness.processes import project_env, run, tail

# A generated suite runs in well under a minute; a run that takes minutes has hung.
SUITE_TIMEOUT = float(os.environ.get("GENERATED_SUITE_TIMEOUT", 300))
TEST_TIMEOUT = float(os.environ.get("GENERATED_TEST_TIMEOUT", 60))
MYPY_TIMEOUT = float(os.environ.get("GENERATED_MYPY_TIMEOUT", 600))

PYTEST_EXIT = {
    0: "all tests passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "NO TESTS COLLECTED",
}


# "SKIPPED [1] tests/test_cache.py:229: REDIS_URL is not set" in pytest's -ra summary.
_SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (?P<where>\S+): (?P<reason>.*)$", re.MULTILINE)
_URL_SETTING = re.compile(r"\b[A-Z][A-Z0-9_]*_URL\b")
_MISSING_SERVICE = re.compile(
    r"not (set|configured|reachable|running)|unreachable|no broker|cannot connect", re.IGNORECASE
)


def skips_for_given_services(output: str, services: Mapping[str, str]) -> list[str]:
    """The skip lines whose reason is a missing service, when `services` were all given.

    A reason that names a setting (`MEMGRAPH_URL is not set`) counts only if that setting was
    given: a service this machine cannot run is a legitimate skip.
    """
    found = []
    for match in _SKIP_LINE.finditer(output):
        reason = match.group("reason")
        named = set(_URL_SETTING.findall(reason))
        missing = bool(named & services.keys()) if named else bool(_MISSING_SERVICE.search(reason))
        if services and missing:
            found.append(match.group(0))
    return found


def run_suite(
    project: Path,
    venv: Path,
    extra_env: dict[str, str],
    label: str,
    *,
    marker: str = "",
    paths: Sequence[str] = (),
) -> None:
    """The project's suite; with `marker`, the tests so marked (the plain run leaves them out);
    with `paths`, the tests in those files only."""
    env = project_env(project, venv, {**falkordb.suite_env(project), **extra_env})
    # --timeout (pytest-timeout, added to the shared venvs by conftest.py) fails a hung test
    # with its stack instead of losing the whole run to SUITE_TIMEOUT.
    cmd = [
        str(venv / "bin" / "python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--timeout={TEST_TIMEOUT:.0f}",
        *(["-m", marker] if marker else []),
        *paths,
    ]
    services = " ".join(f"{k}={v}" for k, v in extra_env.items())
    hint = (
        f"A test hung past --timeout={TEST_TIMEOUT:.0f}s (pytest-timeout cannot fire twice, so "
        "a hang in the teardown after a timeout stops the run). To see which test, run:\n"
        f"  cd {project} && PYTHONPATH=src {services} {' '.join(cmd[:3])} -v -x "
        f"--timeout={TEST_TIMEOUT:.0f}\n"
    )
    out = run(cmd, cwd=project, env=env, timeout=SUITE_TIMEOUT, hint=hint)
    skipped = skips_for_given_services(out.stdout, extra_env)
    if skipped:
        pytest.fail(
            f"{label}: tests skipped for want of a service they were given ({services}):\n"
            + "\n".join(skipped),
            pytrace=False,
        )
    if out.returncode != 0:
        meaning = PYTEST_EXIT.get(out.returncode, "unexpected exit code")
        pytest.fail(
            f"{label}: generated test suite exited {out.returncode} ({meaning}) in {project}\n"
            f"--- last lines of output ---\n{tail(out.stdout + out.stderr, 80)}",
            pytrace=False,
        )
