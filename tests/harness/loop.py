"""The fast inner loop: render one variant from the working tree, lint, type-check, test.

    python tests/harness/loop.py <variant-id> [--services] [pytest args...]

See README.md here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import variants as V
from conftest import (
    CACHE_ROOT,
    HARNESS_REQUIREMENTS,
    build_venv,
    project_requirements,
    require_interpreter,
)

from harness import falkordb
from harness.processes import SERVICE_ENV, project_env, run
from harness.template import copy_template_root


def _venv(python: str, requirements: list[str]) -> Path:
    """The test suite's shared venv for `python` when it has every requirement, else one of
    the loop's own for this variant's."""
    for venv in sorted((CACHE_ROOT / "venvs").glob(f"py{python}-*")):
        listed = venv / "requirements.txt"
        if (venv / ".complete").is_file() and set(requirements) <= set(listed.read_text().split()):
            return venv
    return build_venv(require_interpreter(python), requirements, f"loop-py{python}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", help="a variant id (python tests/variants.py list)")
    parser.add_argument("--services", action="store_true", help="test on the real services")
    args, pytest_args = parser.parse_known_args(argv)
    variants = {v.id: v for v in V.all_variants()}
    variant = variants.get(args.variant)
    if variant is None:
        parser.error(f"no variant {args.variant!r}; see python tests/variants.py list")

    from copier import run_copy

    started = time.perf_counter()

    def step(name: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> bool:
        t0 = time.perf_counter()
        out = run(cmd, cwd, env, timeout=900)
        ok = out.returncode == 0
        print(f"{'ok  ' if ok else 'FAIL'} {name:<14} {time.perf_counter() - t0:6.1f} s")
        if not ok:
            print(out.stdout[-6000:] + out.stderr[-3000:])
        return ok

    project = CACHE_ROOT / "loop" / variant.id
    kept = project / ".mypy_cache"
    with tempfile.TemporaryDirectory() as scratch:
        source = copy_template_root(Path(scratch) / "template")
        if kept.is_dir():
            shutil.move(kept, Path(scratch) / "mypy_cache")
        shutil.rmtree(project, ignore_errors=True)
        t0 = time.perf_counter()
        run_copy(str(source), project, data=variant.answers(), defaults=True, unsafe=True,
                 quiet=True, skip_tasks=True)  # fmt: skip
        if (Path(scratch) / "mypy_cache").is_dir():
            shutil.move(Path(scratch) / "mypy_cache", kept)
    print(f"ok   {'render':<14} {time.perf_counter() - t0:6.1f} s  {project}")

    venv = _venv(variant.python, [*project_requirements(project), *HARNESS_REQUIREMENTS])
    python = str(venv / "bin" / "python")
    extra: dict[str, str] = {}
    if args.services:
        extra = {app: os.environ[test] for app, test in SERVICE_ENV.items()}
    env = project_env(project, venv, {**falkordb.suite_env(project), **extra})
    steps = [
        ("ruff check", [python, "-m", "ruff", "check", "."]),
        ("ruff format", [python, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [python, "-m", "mypy"]),
        ("pytest", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args]),
    ]
    failed = [name for name, cmd in steps if not step(name, cmd, project, env)]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all passed'} "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
