"""Fixtures for the template's tests: rendering, shared virtual environments, service URLs.

Rendering
    The template root (copier.yml, the ``_subdirectory``, hooks/) is copied once per session
    into a plain directory. Copier renders a plain directory as-is: no git clone per call, and
    uncommitted edits are rendered too. ``render(variant_or_answers)`` renders each distinct
    answer set once per session (per xdist worker) and returns the pristine output directory;
    tests that run tools inside a project work on ``work_copy(...)`` of it.

Shared virtual environments
    One per Python version (3.11, 3.12, 3.13), built with ``uv venv`` + ``uv pip install`` from
    the union of [project].dependencies and [dependency-groups].dev of the covering-set
    variants for that version. They live under ``.cache/venvs`` (or $TEMPLATE_TEST_CACHE), keyed
    by a hash of the requirements and the interpreter, and are built under a file lock so xdist
    workers build each one once. The generated projects are NOT installed into them: tests run
    with PYTHONPATH=<project>/src.

Interpreters
    A variant for Python 3.X runs on Python 3.X, never on another version. When 3.X is not
    installed its tests are skipped with a reason naming the version, and the terminal summary
    lists what was found and what was missing.

Services
    TEST_DATABASE_URL, TEST_REDIS_URL, TEST_RABBITMQ_URL (exported by .ci/run). Missing URLs
    fail the services tests when CI=true, and skip them otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import variants as V
from harness.processes import SERVICE_ENV
from harness.template import copy_template_root
from harness.updates import Template, clone_template

REPO_ROOT = V.REPO_ROOT
CACHE_ROOT = Path(os.environ.get("TEMPLATE_TEST_CACHE", REPO_ROOT / ".cache")).resolve()
PYTHON_VERSIONS = V.choice_values("python_version")
# Added to every shared venv: the harness's own needs when running generated suites.
HARNESS_REQUIREMENTS = ("pytest-timeout>=2.3",)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# ---------------------------------------------------------------------------------------------
# Options and collection
# ---------------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("template")
    group.addoption(
        "--variants",
        default=os.environ.get("TEMPLATE_VARIANTS", ""),
        help="comma-separated variant ids: run only the parametrized tests of these variants "
        "(default: $TEMPLATE_VARIANTS, else all)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {v.strip() for v in config.getoption("--variants").split(",") if v.strip()}
    if not wanted:
        return
    known = {v.id for v in V.all_variants()}
    unknown = wanted - known
    if unknown:
        raise pytest.UsageError(f"--variants: unknown variant ids: {sorted(unknown)}")
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("variant") if callspec else None
        if variant is None or variant.id in wanted:
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# ---------------------------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------------------------
def _interpreter_version(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _pyenv_root() -> Path | None:
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise RuntimeError("uv not found: run the tests with `uv run pytest`") from None
        return found


_INTERPRETERS: dict[str, str | None] = {}


def find_interpreter(version: str) -> str | None:
    """A working python<version> executable, or None. Never another minor version."""
    if version in _INTERPRETERS:
        return _INTERPRETERS[version]
    # TEMPLATE_HIDE_PYTHONS=3.13,... pretends those are not installed (to test the skip path).
    if version in os.environ.get("TEMPLATE_HIDE_PYTHONS", "").split(","):
        _INTERPRETERS[version] = None
        return None
    candidates: list[str] = []
    if (root := _pyenv_root()) is not None:

        def patch(p: Path) -> tuple[int, ...]:
            return tuple(int(x) for x in re.findall(r"\d+", p.name))

        installed = sorted((root / "versions").glob(f"{version}.*"), key=patch, reverse=True)
        candidates += [str(p / "bin" / f"python{version}") for p in installed]
    if sys.version_info[:2] == tuple(int(x) for x in version.split(".")):
        candidates.append(sys.executable)
    if which := shutil.which(f"python{version}"):
        candidates.append(which)
    with contextlib.suppress(RuntimeError, OSError):
        out = subprocess.run(
            [uv_bin(), "python", "find", "--system", "--no-python-downloads", version],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(out.stdout.strip())
    found = None
    for cand in candidates:
        got = _interpreter_version(cand)
        if got and got.rsplit(".", 1)[0] == version:
            found = cand
            break
    _INTERPRETERS[version] = found
    return found


def require_interpreter(version: str) -> str:
    interp = find_interpreter(version)
    if interp is None:
        pytest.skip(
            f"MISSING INTERPRETER: Python {version} is not installed on this machine, so the "
            f"python_version={version} variants were NOT run (they never fall back to another "
            "version). Install it (pyenv install / uv python install) to run them."
        )
    return interp


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def template_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template root as a plain (non-git) directory: Copier renders it without cloning."""
    return copy_template_root(tmp_path_factory.mktemp("template-src"))


class RenderError(Exception):
    pass


def memoize_jinja_compile() -> None:
    """Compile each template string once per process instead of once per render.

    Copier builds a new Jinja environment per run and compiles every file and path again:
    about 950 compilations, over half of a render's time, repeated for each of the hundreds
    of variants. Jinja's compiled code takes its environment at run time (its bytecode cache
    relies on that), so code compiled under the same lexer and compiler options is reused.
    Test harness only: the renders stay what Copier produces.
    """
    from jinja2 import Environment

    original: Any = Environment.compile
    if getattr(original, "memoized", False):
        return
    compiled: dict[tuple[Any, ...], Any] = {}

    def options(env: Environment) -> tuple[Any, ...]:
        return (
            type(env),
            env.block_start_string,
            env.block_end_string,
            env.variable_start_string,
            env.variable_end_string,
            env.comment_start_string,
            env.comment_end_string,
            env.line_statement_prefix,
            env.line_comment_prefix,
            env.trim_blocks,
            env.lstrip_blocks,
            env.newline_sequence,
            env.keep_trailing_newline,
            tuple(sorted(env.extensions)),
            env.optimized,
            env.is_async,
            env.finalize is None,
            repr(env.autoescape),
        )

    def compile(
        self: Environment,
        source: Any,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        if not isinstance(source, str):
            return original(self, source, name, filename, raw, defer_init)
        key = (options(self), source, name, filename, raw, defer_init)
        if key not in compiled:
            compiled[key] = original(self, source, name, filename, raw, defer_init)
        return compiled[key]

    compile.memoized = True  # type: ignore[attr-defined]
    Environment.compile = compile  # type: ignore[method-assign, assignment]


def skip_git_mode_sync() -> None:
    """Renders go to fresh directories outside any git repository, where Copier's per-file
    `git config core.fileMode` probe (it keeps a git index's executable bits in sync) finds
    nothing to do after spawning git once per file: about a third of a render's time."""
    from copier import _main

    worker = getattr(_main, "Worker", None)
    if worker is not None and hasattr(worker, "_sync_git_index_executable_bit"):
        worker._sync_git_index_executable_bit = lambda *_args, **_kwargs: None


@dataclass
class Renderer:
    src: Path
    root: Path

    def __post_init__(self) -> None:
        memoize_jinja_compile()
        skip_git_mode_sync()
        self._done: dict[str, Path | BaseException] = {}
        self.seconds = 0.0

    @staticmethod
    def key(answers: Mapping[str, Any]) -> str:
        return json.dumps(dict(answers), sort_keys=True, default=str)

    def __call__(self, what: V.Variant | Mapping[str, Any]) -> Path:
        from copier import run_copy

        if isinstance(what, V.Variant):
            answers, name = what.answers(), what.id
        else:
            answers = dict(what)
            name = "answers-" + hashlib.sha1(self.key(answers).encode()).hexdigest()[:10]
        key = self.key(answers)
        if key in self._done:
            done = self._done[key]
            if isinstance(done, BaseException):
                raise RenderError(f"rendering {name} failed earlier: {done!r}") from done
            return done
        dst = self.root / name
        t0 = time.perf_counter()
        try:
            run_copy(
                str(self.src),
                str(dst),
                data=answers,
                defaults=True,
                unsafe=True,
                quiet=True,
                vcs_ref="HEAD",
            )
        except BaseException as exc:
            self._done[key] = exc
            raise
        finally:
            self.seconds += time.perf_counter() - t0
        self._done[key] = dst
        return dst


@pytest.fixture(scope="session")
def render(template_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """render(variant | answers) -> pristine output dir, rendered once per session."""
    return Renderer(template_copy, tmp_path_factory.mktemp("rendered"))


@pytest.fixture
def work_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """A private, writable copy of a rendered project (tools write caches and databases)."""

    def copy(project: Path) -> Path:
        dst = tmp_path / project.name
        shutil.copytree(project, dst, symlinks=True)
        return dst

    return copy


# ---------------------------------------------------------------------------------------------
# Shared virtual environments
# ---------------------------------------------------------------------------------------------
def project_requirements(project: Path) -> list[str]:
    """[project].dependencies + [dependency-groups].dev (include-group resolved)."""
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = list(data.get("project", {}).get("dependencies", []))
    groups = data.get("dependency-groups", {})

    def expand(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        out: list[str] = []
        for item in groups.get(name, []):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and "include-group" in item:
                inc = item["include-group"]
                if inc not in seen:
                    out += expand(inc, seen | {name})
        return out

    return reqs + expand("dev")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_venv(interp: str, requirements: list[str], label: str) -> Path:
    """Create (once, under a lock) a venv for ``interp`` with ``requirements`` installed."""
    version = _interpreter_version(interp) or "?"
    digest = hashlib.sha256(
        json.dumps([interp, version, sorted(set(requirements)), "compiled"]).encode()
    ).hexdigest()[:12]
    base = CACHE_ROOT / "venvs"
    venv = base / f"{label}-{digest}"
    with file_lock(base / f"{label}.lock"):
        if (venv / ".complete").is_file():
            return venv
        # Older builds for this label are stale (other requirements or interpreter).
        for old in base.glob(f"{label}-*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        env.pop("PYTHONPATH", None)
        steps = [
            [uv_bin(), "venv", "--quiet", "--seed", "--python", interp, str(venv)],
            [
                uv_bin(),
                "pip",
                "install",
                "--quiet",
                # The suites run with PYTHONDONTWRITEBYTECODE and start many processes (pytest,
                # serve, worker, alembic): without .pyc files each one compiled its imports
                # again, about 6 s a process on a loaded machine.
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                *sorted(set(requirements)),
            ],
        ]
        for cmd in steps:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise RuntimeError(
                    f"building the shared venv {venv.name} failed: {' '.join(cmd)}\n"
                    f"{out.stdout}\n{out.stderr}"
                )
        (venv / "requirements.txt").write_text("\n".join(sorted(set(requirements))) + "\n")
        (venv / ".complete").write_text(version + "\n")
    return venv


@dataclass
class SharedVenvs:
    render: Renderer
    _built: dict[str, Path | BaseException]

    def __call__(self, python_version: str) -> Path:
        """The shared venv for ``python_version`` (skips the test if no such interpreter)."""
        interp = require_interpreter(python_version)
        done = self._built.get(python_version)
        if isinstance(done, BaseException):
            pytest.fail(f"the shared Python {python_version} venv could not be built: {done}")
        if done is not None:
            return done
        requirements: set[str] = set()
        for variant in V.covering_set():
            if variant.python == python_version:
                requirements.update(project_requirements(self.render(variant)))
        requirements.update(HARNESS_REQUIREMENTS)
        try:
            venv = build_venv(interp, sorted(requirements), f"py{python_version}")
        except RuntimeError as exc:
            self._built[python_version] = exc
            raise
        self._built[python_version] = venv
        return venv


@pytest.fixture(scope="session")
def shared_venv(render: Renderer) -> SharedVenvs:
    """shared_venv("3.12") -> Path of a venv with the covering set's dependencies."""
    return SharedVenvs(render, {})


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------
def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = re.sub(r"\D", "", worker)
    return int(digits) if digits else 0


def _redis_db_for_worker(url: str) -> str:
    """Give each xdist worker its own Redis database number, so concurrent runs don't mix."""
    parts = urlsplit(url)
    base = parts.path.strip("/")
    if base and not base.isdigit():
        return url
    db = (int(base or 0) + 1 + _worker_index()) % 16
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def service_urls() -> dict[str, str]:
    """DATABASE_URL / REDIS_URL / RABBITMQ_URL for the real-services runs.

    Fails when any TEST_* URL is missing under CI=true; skips locally.
    """
    missing = [test for test in SERVICE_ENV.values() if not os.environ.get(test)]
    if missing:
        message = (
            f"{', '.join(missing)} not set: the real-services run needs PostgreSQL, Redis and "
            "RabbitMQ URLs (.ci/run checks the services and exports them)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    urls = {app: os.environ[test] for app, test in SERVICE_ENV.items()}
    urls["REDIS_URL"] = _redis_db_for_worker(urls["REDIS_URL"])
    return urls


# ---------------------------------------------------------------------------------------------
# Summary: interpreters found, time spent per kind of test
# ---------------------------------------------------------------------------------------------
_SPANS: dict[str, list[float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    kind = next((m for m in ("render", "generated", "slow") if m in report.keywords), "other")
    span = _SPANS.setdefault(kind, [float("inf"), 0.0, 0.0, 0])
    start = getattr(report, "start", None)
    stop = getattr(report, "stop", None)
    if start is not None and stop is not None:
        span[0] = min(span[0], start)
        span[1] = max(span[1], stop)
    span[2] += report.duration
    span[3] += 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    tr = terminalreporter
    tr.section("template: interpreters")
    for version in PYTHON_VERSIONS:
        interp = find_interpreter(version)
        if interp:
            tr.write_line(f"Python {version}: {interp} ({_interpreter_version(interp)})")
        else:
            tr.write_line(
                f"Python {version}: NOT FOUND - the python_version={version} variants "
                "(generated tests and compile checks) were skipped, not run on another version",
                red=True,
            )
    if _SPANS:
        tr.section("template: time by kind of test")
        for kind, (start, stop, total, count) in sorted(_SPANS.items()):
            wall = f"{stop - start:.1f}s wall, " if stop >= start else ""
            if kind == "other":
                wall = ""
            tr.write_line(f"{kind:<10} {int(count):>4} tests: {wall}{total:.1f}s summed test time")


@pytest.fixture
def template(tmp_path: Path) -> Template:
    """A clone of this repository with its uncommitted work and its release tags rebuilt from
    CHANGELOG.md (see harness/updates.py)."""
    return clone_template(tmp_path)
