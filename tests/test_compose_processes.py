"""The processes compose.yaml describes run without Docker, in its order, on the real services.

No Docker engine runs here, so this starts what compose would start, as plain processes of a
covering-set project: `migrate` first (the api and the worker wait for it to complete), then
the api and the worker, with compose's environment pointed at this machine's PostgreSQL, Redis
and RabbitMQ. It passes when /health/ready answers 200 and the worker is still running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import variants as V
import yaml
from conftest import Renderer, SharedVenvs
from harness.processes import (
    NOT_ON_THIS_MACHINE,
    free_port,
    fresh_database,
    interpolate,
    project_env,
    tail,
    wait_ready,
)

VARIANT = next(v for v in V.covering_set() if v.python == "3.11" and v.queue != "none")
# Compose services with no local stand-in here; without their URL the service uses its
# embedded fallback (graph_store=memgraph: the graph lives in the database).


@pytest.fixture
def database(service_urls: dict[str, str]) -> Iterator[str]:
    """A fresh PostgreSQL database on the test server, dropped afterwards."""
    with fresh_database(service_urls["DATABASE_URL"], "compose") as url:
        yield url


@pytest.mark.generated
@pytest.mark.services
def test_compose_processes_start_without_docker(
    render: Renderer,
    shared_venv: SharedVenvs,
    service_urls: dict[str, str],
    database: str,
    tmp_path: Path,
) -> None:
    project = render(VARIANT)
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    slug = compose["name"]
    package = next(p.name for p in (project / "src").iterdir() if p.is_dir())

    # The order compose enforces: migrate must complete before the others start.
    for name in ("api", "worker"):
        if name in services:
            assert services[name]["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )

    # Compose's environment, with its hostnames replaced by this machine's services.
    local = {
        "DATABASE_URL": database,
        **{k: v for k, v in service_urls.items() if k != "DATABASE_URL"},
    }
    environment = {
        key: local.get(key, interpolate(str(value)))
        for key, value in services["api"]["environment"].items()
        if key not in NOT_ON_THIS_MACHINE
    }
    port = free_port()
    env = project_env(project, shared_venv(VARIANT.python), {**environment, "PORT": str(port)})
    python = str(shared_venv(VARIANT.python) / "bin" / "python")

    def command(service: str, default: list[str]) -> list[str]:
        argv = services[service].get("command", default)
        argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
        assert argv[0] == slug, f"{service} runs {argv}, not the {slug} console script"
        return [python, "-m", package, *argv[1:]]

    migrate = subprocess.run(
        command("migrate", []), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, tail(migrate.stdout + migrate.stderr)

    logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, default in (("api", [slug, "serve"]), ("worker", [slug, "worker"])):
            if name not in services:
                continue
            with open(logs[name], "wb") as log:
                processes[name] = subprocess.Popen(
                    command(name, default), cwd=tmp_path, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        wait_ready(port, processes, logs)
        time.sleep(2)  # the worker has connected to its broker by now, or died trying
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited:\n{tail(logs[name].read_text())}"
    finally:
        # A process that already exited (the assertion above says why) has no group to signal.
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
