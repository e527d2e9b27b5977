"""Running a generated project's tools and processes: environments, commands, ports, waits."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest

SERVICE_ENV = {
    "DATABASE_URL": "TEST_DATABASE_URL",
    "REDIS_URL": "TEST_REDIS_URL",
    "RABBITMQ_URL": "TEST_RABBITMQ_URL",
}
# Services a manifest or compose file names that this machine cannot run (no Memgraph here).
NOT_ON_THIS_MACHINE = {"MEMGRAPH_URL"}


# What a user puts in .env for compose.yaml and in the platform's secret store (see the
# project's .env.example): the values the tests run the manifests with.
USER_SECRETS = {
    "POSTGRES_PASSWORD": "compose-test-password",
    "RABBITMQ_PASSWORD": "compose-test-password",
    # One API key, "manifest-test-key": production refuses to serve an open graph_rag API.
    "API_KEY_DIGESTS": json.dumps(
        {hashlib.sha256(b"manifest-test-key").hexdigest(): "manifest-test"}
    ),
}
# ${NAME} and ${NAME:?message}, as compose interpolates them from .env.
_INTERPOLATED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::\?[^}]*)?\}")


def interpolate(value: str, env: Mapping[str, str] = USER_SECRETS) -> str:
    """`value` with compose's variables replaced from `env` (KeyError: one is missing)."""
    return _INTERPOLATED.sub(lambda match: env[match["name"]], value)


def template_bench_module(name: str) -> ModuleType:
    """A module of the template's bench/ folder, loaded from its file: the plain-Python ones
    import nothing of the generated project."""
    path = Path(__file__).resolve().parents[2] / "template" / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"template_bench_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's range of
#: ephemeral ports: a port from that range (what binding port 0 gives) can be taken as the
#: source port of any outgoing connection (another test's, to PostgreSQL or Redis) before the
#: process meant to listen on it starts. CI saw exactly that: "Address already in use".
free_port: Callable[[], int] = template_bench_module("processes").free_port


#: A generated service's cold start takes ~20 s at load 8 on 2 cores. A process that exits ends
#: the wait at once, so the limit costs nothing when all is well.
READY_TIMEOUT = 120.0


def wait_ready(
    port: int, processes: Mapping[str, subprocess.Popen[bytes]], logs: Mapping[str, Path]
) -> None:
    """Wait until the api on `port` answers /health/ready with 200, while every process runs."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited:\n{tail(logs[name].read_text())}"
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=3).status_code
        except httpx.TransportError:
            status = None
        if status == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"/health/ready answered {status}:\n{tail(logs['api'].read_text())}")


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server_url``'s server (its URL), dropped after.

    The database ``server_url`` names is only connected to, to create and drop the new one.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    psql = ["psql", server_url, "-v", "ON_ERROR_STOP=1", "-qc"]
    subprocess.run([*psql, f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        subprocess.run(
            [*psql, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
            capture_output=True,
        )


# ---------------------------------------------------------------------------------------------
SCRUBBED_PREFIXES = ("PYTEST_", "VIRTUAL_ENV", "UV_PROJECT", "PYTHONPATH", "PYTHONHOME")


def project_env(
    project: Path, venv: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for running a generated project's tools: no service URLs unless ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SERVICE_ENV
        and k not in SERVICE_ENV.values()
        and not k.startswith(SCRUBBED_PREFIXES)
    }
    env["PYTHONPATH"] = str(project / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def tail(text: str, lines: int = 60) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept)


def run(
    cmd: list[str], cwd: Path, env: Mapping[str, str], timeout: float = 900, hint: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own session; on timeout, or when it leaves processes behind (a server
    or worker a test forgot to stop), the whole process group is killed."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group()
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{' '.join(cmd)} timed out after {timeout:.0f}s (hung?) in {cwd}\n"
            f"{hint}--- last lines of output ---\n{tail(stdout + stderr)}",
            pytrace=False,
        )
    finally:
        kill_group()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
