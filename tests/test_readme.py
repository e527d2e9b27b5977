"""The README's quick start works, literally, on a fresh virtual environment.

The two commands of the ``<!-- quickstart -->`` block are read from README.md and run as a user
would, with one substitution: the published template URL becomes a local git repository of this
template (a clean ``git clone`` of HEAD under CI=true; locally a snapshot of the working tree,
so uncommitted work is tested too; ``README_TEST_SOURCE=head|worktree`` forces either).

1. ``pip install copier uv && copier copy --trust --defaults <URL> my-service`` in a fresh venv;
2. ``cd my-service && uv run my-service serve`` in the background with PORT set to a free port,
   polling ``/health/ready`` until it answers 200; then the server is stopped;
3. ``uv run pytest`` in the generated project (its README's test command) must pass.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import IN_CI, REPO_ROOT
from harness.processes import tail
from harness.readme import fenced_block

README = REPO_ROOT / "README.md"
PLACEHOLDER_URL = "gh:fastapi-production-template/fastapi-production-template"
READY_TIMEOUT = 180.0


def test_quickstart_block_shape() -> None:
    commands = fenced_block("quickstart")
    assert len(commands) == 2, f"the quick start must be exactly two commands: {commands}"
    install, serve = commands
    assert install.startswith("pip install copier uv && copier copy --trust --defaults ")
    assert PLACEHOLDER_URL in install, f"template URL {PLACEHOLDER_URL} not in: {install}"
    dst = shlex.split(install)[-1]
    assert serve.startswith(f"cd {dst} && uv run "), serve
    assert serve.endswith(" serve"), serve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{out.stderr}"
    return out.stdout


def template_source(dst: Path) -> Path:
    """A local git repository holding this template (see the module docstring)."""
    mode = os.environ.get("README_TEST_SOURCE") or ("head" if IN_CI else "worktree")
    if mode == "head":
        _git(dst.parent, "clone", "--quiet", "--no-tags", str(REPO_ROOT), str(dst))
        return dst
    # Tracked and untracked-but-not-ignored files, as they are on disk now.
    files = _git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    dst.mkdir(parents=True)
    for rel in filter(None, files.split("\0")):
        src = REPO_ROOT / rel
        if src.is_file():
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
            target.chmod(src.stat().st_mode)
    identity = ["-c", "user.name=readme-test", "-c", "user.email=readme-test@example.com"]
    _git(dst, "init", "--quiet", "--initial-branch=main")
    _git(dst, "add", "--all")
    _git(dst, *identity, "commit", "--quiet", "--no-verify", "-m", "snapshot for the README test")
    return dst


def user_env(venv: Path) -> dict[str, str]:
    """A user's shell: the fresh venv's bin first on PATH, none of the harness's state."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "UV_PROJECT", "PYTHON"))
        and k not in {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "HOST", "PORT"}
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def sh(command: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    try:
        out = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{command}` timed out after {timeout:.0f}s\n{tail(str(exc.output or ''))}")
    assert out.returncode == 0, f"`{command}` exited {out.returncode} in {cwd}:\n{tail(out.stdout)}"
    return out.stdout


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path, background: list[subprocess.Popen[bytes]]) -> None:
    install, serve = fenced_block("quickstart")
    source = template_source(tmp_path / "template-src")
    install = install.replace(PLACEHOLDER_URL, shlex.quote(str(source)))
    project = tmp_path / "work" / shlex.split(install)[-1]
    (tmp_path / "work").mkdir()

    venv = tmp_path / "user-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = user_env(venv)

    # 1. install copier and uv, generate the project
    sh(install, cwd=tmp_path / "work", env=env, timeout=600)
    assert (project / "pyproject.toml").is_file(), f"{install} created no project"
    # The post-copy hook (run thanks to --trust) made a repository with one commit.
    commits = _git(project, "rev-list", "--count", "HEAD").strip()
    assert commits == "1", f"expected the hook's first commit, got {commits!r}"
    assert _git(project, "status", "--porcelain").strip() == "", "the first commit left files out"

    # 2. serve it; poll readiness
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            ["bash", "-c", serve],
            cwd=tmp_path / "work",
            env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    background.append(proc)
    url = f"http://127.0.0.1:{port}/health/ready"
    deadline = time.monotonic() + READY_TIMEOUT
    status, body = None, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"`{serve}` exited {proc.returncode} before {url} answered:\n"
                f"{tail(log.read_text(errors='replace'))}"
            )
        try:
            response = httpx.get(url, timeout=5)
            status, body = response.status_code, response.text
            if status == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        pytest.fail(
            f"{url} did not answer 200 within {READY_TIMEOUT:.0f}s (last: {status} {body[:300]})\n"
            f"{tail(log.read_text(errors='replace'))}"
        )
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)

    # 3. the generated project's own test command
    output = sh("uv run pytest", cwd=project, env=env, timeout=900)
    assert re.search(r"\b\d+ passed\b", output), f"no test passed:\n{tail(output)}"
