"""The covering set's projects type-check and pass their own test suites, twice.

For each variant of the pairwise covering set (tests/variants.py), on that variant's own Python
version, in the shared venv for that version (conftest.py), with PYTHONPATH=<project>/src:

- ``python -m mypy`` with the project's own configuration (strict);
- the project's tests with embedded defaults: no DATABASE_URL / REDIS_URL / RABBITMQ_URL, so
  SQLite, in-memory cache and in-process queue stand in for the services;
- the project's tests against the real services: DATABASE_URL=$TEST_DATABASE_URL, ... .

pytest's exit code must be 0; exit code 5 (no test collected) is a failure too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, SharedVenvs, project_env, run, tail

COVERING = V.covering_set()
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


def _params() -> list[pytest.ParameterSet]:
    # One xdist group per variant: its three tests share one worker, so one render.
    return [pytest.param(v, id=v.id, marks=pytest.mark.xdist_group(v.id)) for v in COVERING]


def _run_suite(project: Path, venv: Path, extra_env: dict[str, str], label: str) -> None:
    env = project_env(project, venv, extra_env)
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
    ]
    services = " ".join(f"{k}={v}" for k, v in extra_env.items())
    hint = (
        f"A test hung past --timeout={TEST_TIMEOUT:.0f}s (pytest-timeout cannot fire twice, so "
        "a hang in the teardown after a timeout stops the run). To see which test, run:\n"
        f"  cd {project} && PYTHONPATH=src {services} {' '.join(cmd[:3])} -v -x "
        f"--timeout={TEST_TIMEOUT:.0f}\n"
    )
    out = run(cmd, cwd=project, env=env, timeout=SUITE_TIMEOUT, hint=hint)
    if out.returncode != 0:
        meaning = PYTEST_EXIT.get(out.returncode, "unexpected exit code")
        pytest.fail(
            f"{label}: generated test suite exited {out.returncode} ({meaning}) in {project}\n"
            f"--- last lines of output ---\n{tail(out.stdout + out.stderr, 80)}",
            pytrace=False,
        )


@pytest.mark.generated
@pytest.mark.parametrize("variant", _params())
def test_mypy(
    variant: V.Variant,
    render: Renderer,
    shared_venv: SharedVenvs,
    work_copy: Callable[[Path], Path],
) -> None:
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    # mypy's cache stays inside the private copy: the projects share module names (tests.*,
    # bench.*) that a shared cache would mix up between variants.
    cmd = [str(venv / "bin" / "python"), "-m", "mypy"]
    out = run(cmd, cwd=project, env=project_env(project, venv), timeout=MYPY_TIMEOUT)
    assert out.returncode == 0, (
        f"mypy failed for {variant.id} (exit {out.returncode}) in {project}\n"
        f"{tail(out.stdout + out.stderr, 80)}"
    )


@pytest.mark.generated
@pytest.mark.parametrize("variant", _params())
def test_suite_embedded(
    variant: V.Variant,
    render: Renderer,
    shared_venv: SharedVenvs,
    work_copy: Callable[[Path], Path],
) -> None:
    """No service URL in the environment: the project must run on its embedded defaults."""
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    _run_suite(project, venv, {}, f"{variant.id} (embedded defaults)")


@pytest.mark.generated
@pytest.mark.services
@pytest.mark.parametrize("variant", _params())
def test_suite_real_services(
    variant: V.Variant,
    render: Renderer,
    shared_venv: SharedVenvs,
    work_copy: Callable[[Path], Path],
    service_urls: dict[str, str],
) -> None:
    """DATABASE_URL, REDIS_URL, RABBITMQ_URL point at the real PostgreSQL, Redis, RabbitMQ."""
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    _run_suite(project, venv, service_urls, f"{variant.id} (real services)")
