"""A third flavor is its own package plus one line: the plug-in interface, tried for real.

tests/flavors/notes/ is a small domain written as a user would add one (see the README
there). Copied into a rendered fintech project with the one import line of the project's
components.py changed, the project must pass ruff and strict mypy with no other file
touched, and tests/flavors/check_notes.py must find the notes domain served: routes with
authentication, ownership and a per-author rate limit, its resource in readiness, its job
kind through /api/jobs, its CLI command and its own setting.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, SharedVenvs
from harness.processes import project_env, run, tail

FLAVORS = Path(__file__).parent / "flavors"
VARIANT = next(
    v for v in V.covering_set() if v.flavor == "fintech" and v.python == "3.11" and v.queue == "arq"
)
SHIPPED_LINE = "from .fintech.components import FLAVOR as FLAVOR\n"
NOTES_LINE = "from .notes.components import FLAVOR as FLAVOR\n"


def _changed_outside(project: Path, package: str) -> list[str]:
    """`git diff --numstat` of the project outside the notes package."""
    out = subprocess.run(
        ["git", "diff", "--numstat", "--", ".", f":!src/{package}/notes"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


@pytest.mark.generated
@pytest.mark.xdist_group(VARIANT.id)
def test_a_third_flavor_needs_its_package_and_one_line(
    render: Renderer, shared_venv: SharedVenvs, work_copy: Callable[[Path], Path]
) -> None:
    venv = shared_venv(VARIANT.python)
    project = work_copy(render(VARIANT))
    package = project / "src" / VARIANT.package_name
    shutil.copytree(FLAVORS / "notes", package / "notes")
    components = package / "components.py"
    text = components.read_text()
    assert text.count(SHIPPED_LINE) == 1, "components.py no longer names its flavor on one line"
    components.write_text(text.replace(SHIPPED_LINE, NOTES_LINE))
    env = project_env(project, venv)
    python = str(venv / "bin" / "python")

    # The changed import goes where isort wants it; that is the whole edit outside notes/.
    run([python, "-m", "ruff", "check", "--select", "I", "--fix", "-q", "."], project, env)
    assert _changed_outside(project, VARIANT.package_name) == [
        f"1\t1\tsrc/{VARIANT.package_name}/components.py"
    ]
    for cmd in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        out = run([python, "-m", *cmd], project, env, timeout=600)
        assert out.returncode == 0, f"{' '.join(cmd)}:\n{tail(out.stdout + out.stderr)}"

    out = run([python, str(FLAVORS / "check_notes.py"), VARIANT.package_name], project, env)
    assert out.returncode == 0, tail(out.stdout + out.stderr)
    assert "the notes flavor works" in out.stdout
