"""Every variant of the full answer matrix renders into a clean project.

For each of the 432 variants (tests/variants.py): Copier renders it; no file content or file
name carries leftover Jinja; `ruff check` and `ruff format --check` pass with the project's own
configuration; every .py file compiles on the variant's Python version; and the answers file
records the answers (and nothing that was not asked).

The names tests render two variants (one per flavor) under names chosen around every one of the
generated project's own folders, the shortest and the longest, and lint them the same way.
The layout test checks that the generated README's Layout names exactly what ships.
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
from conftest import Renderer, find_interpreter
from harness.processes import run, tail

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
        if rel.suffix == ".j2":
            continue  # the project's own Jinja2 templates (fintech's report e-mail)
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


def test_the_embedded_runs_cover_every_level_and_each_flavor_on_each_python() -> None:
    levels = V.factor_levels()
    embedded = V.embedded_set()
    assert V.check_each_level(embedded, levels) == []
    assert set(embedded) < set(V.covering_set())
    # The check itself: leaving out the one graph_rag variant on 3.11 loses that pair.
    without = [v for v in embedded if not (v.flavor.startswith("graph_rag") and v.python == "3.11")]
    assert "graph_rag on Python 3.11" in V.check_each_level(without, levels)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------
# The matrix renders every variant under one kind of name (svc_<digest>). What depends on the
# name itself: where the package's imports sort among the project's own folders (bench/,
# tests/, ...), the length of every line that holds it, and the names derived from it. Each
# case gives only project_name and lets Copier derive the slug and the package, as a user does.
LONGEST_NAME = "Customer Onboarding And Identity Verification Service For Bank 1"
NAME_CASES = [
    # (project_name, the package it derives)
    ("A", "a"),  # one letter, before every folder
    ("Accounts API", "accounts_api"),  # before bench/
    ("Bench X", "bench_x"),  # right after bench/
    ("Benchmark", "benchmark"),
    ("Delta", "delta"),  # right before deploy/
    ("Deploy X", "deploy_x"),  # right after deploy/
    ("Sprint", "sprint"),  # right before src/
    ("Src X", "src_x"),  # right after src/
    ("Testbed", "testbed"),  # right before tests/
    ("Tests X", "tests_x"),  # right after tests/
    ("Z", "z"),  # one letter, after every folder
    (LONGEST_NAME, "customer_onboarding_and_identity"),  # 64 characters: cut at 32
]
LOWEST_PYTHON = V.choice_values("python_version")[0]
# One fintech and one graph_rag variant per name. Together they render every bench/ and tests/
# file that imports the package (checked below), every queue backend's module but the
# in-process one's (always there) and both deployment targets.
NAME_VARIANTS = [
    V.Variant("fintech", "celery_redis", "redis", "kubernetes", LOWEST_PYTHON),
    V.Variant("graph_rag_memgraph", "arq", "none", "ecs", LOWEST_PYTHON),
]
# The layout test adds the branches of the README's Layout the two above leave out.
LAYOUT_VARIANTS = [
    *NAME_VARIANTS,
    V.Variant("graph_rag_sql", "none", "memory", "none", LOWEST_PYTHON),
]


def named(project_name: str, variant: V.Variant) -> dict[str, Any]:
    """The variant's answers under project_name, with the slug and package left to derive."""
    answers = variant.answers()
    del answers["project_slug"], answers["package_name"]
    return {**answers, "project_name": project_name}


def grouped(variants: list[V.Variant]) -> list[Any]:
    # One worker per variant: the names and layout tests of a variant share its renders.
    return [
        pytest.param(v, id=v.id, marks=pytest.mark.xdist_group(f"names-{v.id}")) for v in variants
    ]


def refused_folders() -> list[str]:
    """The folder names package_name's validator refuses (its `folders` list)."""
    validator = V.load_questions()["package_name"]["validator"]
    match = re.search(r"\{% set folders = \[(.*?)\] %\}", validator)
    assert match, "package_name's validator has no `folders` list"
    return re.findall(r"'([^']+)'", match.group(1))


def test_name_cases_bracket_every_project_folder() -> None:
    """Each folder package_name refuses has a case sorting right before it and one right after
    it (nothing else in between), and the cases include the shortest and longest names."""
    folders = refused_folders()
    packages = [package for _, package in NAME_CASES]
    merged = sorted(folders + packages)
    for folder in folders:
        at = merged.index(folder)
        assert 0 < at < len(merged) - 1, f"no case sorts before and after {folder!r}"
        assert merged[at - 1] in packages, f"{merged[at - 1]!r} sorts right before {folder!r}"
        assert merged[at + 1] in packages, f"{merged[at + 1]!r} sorts right after {folder!r}"
    assert min(len(p) for p in packages) == 1
    assert len(LONGEST_NAME) == 64, "project_name allows 64 characters"


def test_name_variants_render_every_file_that_imports_the_package() -> None:
    """Every bench/ and tests/ template that names the package renders in a NAME_VARIANTS one
    (its path's conditions, evaluated on the variant's answers, leave no component empty)."""
    import jinja2

    env = jinja2.Environment()
    template = V.REPO_ROOT / "template"
    answers = [{"graph_store": None, "celery_broker": None, **v.answers()} for v in NAME_VARIANTS]
    missed = []
    for path in sorted(template.rglob("*")):
        rel = path.relative_to(template)
        if not path.is_file() or rel.parts[0] not in {"bench", "tests"}:
            continue
        if "package_name" not in path.read_text(encoding="utf-8"):
            continue
        if not any(all(env.from_string(part).render(a) for part in rel.parts) for a in answers):
            missed.append(str(rel))
    assert missed == [], f"no NAME_VARIANTS variant renders {missed}"


@pytest.mark.render
@pytest.mark.parametrize("variant", grouped(NAME_VARIANTS))
@pytest.mark.parametrize(("project_name", "package"), NAME_CASES, ids=[p for _, p in NAME_CASES])
def test_names_render_clean(
    project_name: str, package: str, variant: V.Variant, render: Renderer
) -> None:
    """Under each stressing name: no Jinja residue, `ruff check` and `ruff format --check` pass."""
    project = render(named(project_name, variant))
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert recorded["package_name"] == package
    problems = jinja_residue(project) + ruff_problems(project)
    if problems:
        pytest.fail(f"{package} {variant.id} ({project}):\n" + "\n".join(problems), pytrace=False)


def layout_paths(readme: str) -> set[str]:
    """The paths the README's Layout block names: one entry a line, two spaces a level."""
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
    assert match, "README.md has no ``` block under ## Layout"
    paths: set[str] = set()
    parents: list[tuple[int, str]] = []
    for line in match.group(1).splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = "/".join([p for _, p in parents] + [name.rstrip("/")])
        paths.add(path)
        if name.endswith("/"):
            parents.append((indent, name.rstrip("/")))
    return paths


@pytest.mark.render
@pytest.mark.parametrize("variant", grouped(LAYOUT_VARIANTS))
def test_readme_layout_names_exactly_what_ships(variant: V.Variant, render: Renderer) -> None:
    """The generated README's Layout names every top-level folder, and every package and module
    (each .py but __init__.py) under src/<package>/; everything it names exists. The package
    name cannot be one of those folders."""
    project = render(named("Accounts API", variant))
    paths = layout_paths((project / "README.md").read_text(encoding="utf-8"))
    package = project / "src" / "accounts_api"
    shipped = {
        str(p.relative_to(project))
        for p in package.rglob("*")
        if p.is_dir() or (p.suffix == ".py" and p.name != "__init__.py")
    }
    folders = {p.name for p in project.iterdir() if p.is_dir() and p.name not in SKIP_DIRS}
    problems = [f"Layout does not name {rel}" for rel in sorted(shipped - paths)]
    problems += [
        f"Layout does not name the folder {folder}/"
        for folder in sorted(folders)
        if not any(path == folder or path.startswith(folder + "/") for path in paths)
    ]
    problems += [
        f"Layout names {p}, which is not there" for p in sorted(paths) if not (project / p).exists()
    ]
    importable = {f for f in folders if f.isidentifier()}
    if not importable <= set(refused_folders()):
        problems.append(
            f"package_name's validator does not refuse {importable - set(refused_folders())}"
        )
    if problems:
        pytest.fail(f"{variant.id} ({project}):\n" + "\n".join(problems), pytrace=False)
