"""Every variant of the full answer matrix renders into a clean project.

For each of the 324 variants (tests/variants.py): Copier renders it; no file content or file
name carries leftover Jinja; `ruff check` and `ruff format --check` pass with the project's own
configuration; every .py file compiles on the variant's Python version; and the answers file
records the answers (and nothing that was not asked).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import variants as V
import yaml
from conftest import Renderer, find_interpreter, run, tail

ALL = V.all_variants()

# `{{ x }}`, `{% x %}`, `{# x #}` on one line (a lone `{` or `}` in code is not Jinja).
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|\{\{|\{%|\{#")
# GitHub Actions expressions, legitimate in workflow files: `${{ ... }}`.
GHA_EXPR = re.compile(r"\$\{\{.*?\}\}")
NAME_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
SKIP_DIRS = {".git", "__pycache__", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

COMPILE_SCRIPT = """
import sys
bad = []
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as fh:
            compile(fh.read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        bad.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""


def project_files(project: Path) -> list[Path]:
    return sorted(
        p
        for p in project.rglob("*")
        if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(project).parts)
    )


def is_workflow(rel: Path) -> bool:
    return rel.parts[:1] == (".github",) and rel.suffix in {".yml", ".yaml"}


def jinja_residue(project: Path) -> list[str]:
    problems = []
    for path in project_files(project):
        rel = path.relative_to(project)
        if NAME_JINJA.search(str(rel)) or rel.name.endswith(".jinja"):
            problems.append(f"{rel}: file name carries template syntax")
        if rel.name in {".py", ".yml", ".yaml", ".toml", ".md"}:
            problems.append(f"{rel}: empty file stem (a conditional name rendered to nothing)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file
        for lineno, line in enumerate(text.splitlines(), 1):
            check = GHA_EXPR.sub("", line) if is_workflow(rel) else line
            if JINJA.search(check):
                problems.append(f"{rel}:{lineno}: leftover Jinja: {line.strip()[:120]}")
    return problems


def answers_problems(project: Path, answers: dict[str, Any]) -> list[str]:
    path = project / ".copier-answers.yml"
    if not path.is_file():
        return [".copier-answers.yml is missing (copier update would not work)"]
    recorded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = []
    if "_src_path" not in recorded:
        problems.append(".copier-answers.yml has no _src_path")
    for key, value in answers.items():
        if recorded.get(key) != value:
            problems.append(f".copier-answers.yml: {key}={recorded.get(key)!r}, expected {value!r}")
    questions = V.load_questions()
    if answers.get("queue_backend") != "celery" and "celery_broker" in recorded:
        problems.append(".copier-answers.yml records celery_broker although it was not asked")
    if answers.get("autoscaling") == "none":
        asked_only_with_scaling = [q for q in questions if q.startswith("scale_") and q in recorded]
        if asked_only_with_scaling:
            problems.append(
                f".copier-answers.yml records {asked_only_with_scaling} with autoscaling=none"
            )
    return problems


def ruff_problems(project: Path) -> list[str]:
    problems = []
    base = [sys.executable, "-m", "ruff"]
    checks = {
        "ruff check": [*base, "check", "--no-cache", "--output-format", "concise", "."],
        "ruff format --check": [*base, "format", "--check", "--no-cache", "--quiet", "."],
    }
    for label, cmd in checks.items():
        out = subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            problems.append(f"{label} failed:\n{tail(out.stdout + out.stderr, 40)}")
    return problems


def compile_with(interp: str, project: Path) -> list[str]:
    files = [str(p) for p in project_files(project) if p.suffix == ".py"]
    if not files:
        return ["no .py file rendered"]
    out = run([interp, "-c", COMPILE_SCRIPT, *files], cwd=project, env={"PATH": "/usr/bin"})
    if out.returncode != 0:
        return [f"does not compile on {interp}:\n{tail(out.stdout + out.stderr, 40)}"]
    return []


@pytest.mark.render
@pytest.mark.parametrize("variant", ALL, ids=str)
def test_variant_renders_clean(variant: V.Variant, render: Renderer) -> None:
    project = render(variant)
    problems = jinja_residue(project)
    problems += answers_problems(project, variant.answers())
    problems += ruff_problems(project)
    interp = find_interpreter(variant.python)
    if interp is not None:
        problems += compile_with(interp, project)
    if problems:
        pytest.fail(f"{variant.id} ({project}):\n" + "\n".join(problems), pytrace=False)
    if interp is None:
        pytest.skip(
            f"MISSING INTERPRETER: Python {variant.python} not installed; {variant.id} rendered "
            "and passed ruff, but its compile check did NOT run"
        )


def test_matrix_is_complete_and_ids_unique() -> None:
    levels = V.factor_levels()
    expected = 1
    for values in levels.values():
        expected *= len(values)
    assert len(ALL) == expected
    assert len({v.id for v in ALL}) == len(ALL)
    assert len({v.package_name for v in ALL}) == len(ALL)
    assert len({v.project_slug for v in ALL}) == len(ALL)


def test_covering_set_is_pairwise_and_small() -> None:
    levels = V.factor_levels()
    cover = V.covering_set()
    assert V.check_pairwise(cover, levels) == []
    sizes = sorted((len(v) for v in levels.values()), reverse=True)
    assert len(cover) == sizes[0] * sizes[1], "the covering set is larger than the minimum"
    assert set(cover) <= set(ALL)
