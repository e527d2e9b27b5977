"""The covering set's projects type-check and pass their own test suites, twice.

For each variant of the pairwise covering set (tests/variants.py), on that variant's own Python
version, in the shared venv for that version (conftest.py), with PYTHONPATH=<project>/src:

- ``python -m mypy`` with the project's own configuration (strict);
- the project's tests with embedded defaults: no DATABASE_URL / REDIS_URL / RABBITMQ_URL, so
  SQLite, in-memory cache and in-process queue stand in for the services (for the variants of
  tests/variants.py's EMBEDDED: every level of every factor, and each flavor family on each
  Python; the embedded code paths are the same in the others);
- the project's tests against the real services: DATABASE_URL=$TEST_DATABASE_URL, ... .

pytest's exit code must be 0; exit code 5 (no test collected) is a failure too. In the
real-services run a test skipped for want of a service it was given fails the run too: its
reason (pytest's -ra summary) names one of the URLs set, or says a service is not configured
or not reachable. Checked here rather than in each generated skip, so a skip a project adds
later is covered as well.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, SharedVenvs, file_lock
from harness import falkordb
from harness.processes import project_env, run, tail
from harness.suites import MYPY_TIMEOUT, run_suite, skips_for_given_services

COVERING = V.covering_set()
# The `slow` tests (jobs in a real worker or `serve` process, outages under load, worker
# restarts, the SIGTERM drain) run for one variant per queue backend: the code they exercise
# differs by backend, and they take a minute or two per variant.
SLOW_VARIANTS = {
    next(v.id for v in COVERING if v.flavor.startswith(flavor) and v.queue == queue)
    for flavor, queue in [
        ("fintech", "celery_redis"),
        ("graph_rag", "celery_rabbitmq"),
        ("graph_rag", "arq"),
        ("fintech", "none"),
    ]
}


def test_a_skip_for_a_service_that_was_given_is_caught() -> None:
    output = (
        "SKIPPED [1] tests/test_cache.py:229: REDIS_URL is not set\n"
        "SKIPPED [1] tests/test_jobs.py:341: no broker configured: jobs run in-process\n"
        "SKIPPED [2] tests/test_semantic.py:10: the semantic extra is not installed\n"
        "SKIPPED [1] tests/test_graph_contract.py:103: MEMGRAPH_URL is not set: no Memgraph\n"
    )
    given = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    assert skips_for_given_services(output, given) == output.splitlines()[:2]
    assert skips_for_given_services(output, {}) == []


def _params(variants: list[V.Variant] = COVERING) -> list[pytest.ParameterSet]:
    # One xdist group per variant: its tests share one worker, so one render.
    return [pytest.param(v, id=v.id, marks=pytest.mark.xdist_group(v.id)) for v in variants]


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
    # mypy trusts a cached module without reading its source when the file's size and whole-
    # second mtime match the cache. Two variants rendered in the same second give same-size
    # files (package names are all `svc_` + 8 hex digits) that import different packages, so
    # every source file gets this moment as its mtime: later than any seed was recorded at
    # (a seed is saved only after its own mypy run), which makes mypy hash each file.
    now = time.time()
    for source in project.rglob("*.py*"):
        if ".mypy_cache" not in source.parts:
            os.utime(source, (now, now))
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
@pytest.mark.parametrize("variant", _params(V.embedded_set()))
def test_suite_embedded(
    variant: V.Variant,
    render: Renderer,
    shared_venv: SharedVenvs,
    work_copy: Callable[[Path], Path],
) -> None:
    """No service URL in the environment: the project must run on its embedded defaults."""
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    run_suite(project, venv, {}, f"{variant.id} (embedded defaults)")


@pytest.mark.generated
@pytest.mark.services
@pytest.mark.parametrize("variant", _params())
def test_suite_real_services(
    variant: V.Variant,
    render: Renderer,
    shared_venv: SharedVenvs,
    work_copy: Callable[[Path], Path],
    service_urls: dict[str, str],
    tmp_path: Path,
) -> None:
    """DATABASE_URL, REDIS_URL, RABBITMQ_URL point at the real PostgreSQL, Redis, RabbitMQ
    (and FALKORDB_URL at a FalkorDB server of this run's own, for graph_store=falkordb); then,
    for one variant per queue backend (SLOW_VARIANTS), the `slow` tests, as the project's CI
    runs them."""
    venv = shared_venv(variant.python)
    project = work_copy(render(variant))
    with contextlib.ExitStack() as stack:
        services = dict(service_urls)
        if falkordb.uses_falkordb(project):
            # The whole suite with FalkorDB as the graph store, on a server of this run's own.
            services["FALKORDB_URL"] = stack.enter_context(
                falkordb.private_server(tmp_path / "falkordb")
            )
        run_suite(project, venv, services, f"{variant.id} (real services)")
        if variant.id in SLOW_VARIANTS:
            run_suite(project, venv, services, f"{variant.id} (slow)", marker="slow")
