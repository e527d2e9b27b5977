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
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, SharedVenvs, file_lock, project_env, run, tail

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
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    # Each project checks against its own cache, seeded with a copy of the cache of the first
    # project checked on the same venv: the dependencies (most of mypy's work: 33 s cold, 6 s
    # seeded) are the same, and mypy re-checks every module whose source differs from what
    # the cache recorded. Never one cache shared live: the projects share module names
    # (tests.*, bench.*).
    session_dir = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:  # each worker's basetemp is one run's subfolder
        session_dir = session_dir.parent
    seed = session_dir / "mypy-seeds" / venv.name
    if seed.is_dir():
        shutil.copytree(seed, project / ".mypy_cache")
    cmd = [str(venv / "bin" / "python"), "-m", "mypy"]
    out = run(cmd, cwd=project, env=project_env(project, venv), timeout=MYPY_TIMEOUT)
    assert out.returncode == 0, (
        f"mypy failed for {variant.id} (exit {out.returncode}) in {project}\n"
        f"{tail(out.stdout + out.stderr, 80)}"
    )
    with file_lock(seed.parent / f"{seed.name}.lock"):
        if not seed.is_dir():
            partial = seed.parent / f"{seed.name}.partial"
            shutil.copytree(project / ".mypy_cache", partial)
            partial.rename(seed)


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
