"""Bad answers fail `copier copy` with a message naming the question; defaults derive.

Copier validates `data=` answers like prompted ones: a validator's output raises
``ValueError: Validation error for question 'X': ...`` and a value outside ``choices`` raises
``ValueError: Invalid choice for 'X': ...``. Nothing is rendered in either case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import variants as V
import yaml
from conftest import Renderer, require_interpreter

HOOKS = Path(__file__).resolve().parents[1] / "hooks"

COPIER_ERROR = r"Validation error for question|Invalid choice for"
BASE: dict[str, Any] = {"project_name": "Answers Check"}

BAD_ANSWERS = [
    # (question named in the error, answers)
    pytest.param("project_name", {"project_name": "1 starts with a digit"}, id="name-digit"),
    pytest.param("project_name", {"project_name": "x" * 65}, id="name-too-long"),
    pytest.param("project_slug", {"project_slug": "My_Slug"}, id="slug-upper-underscore"),
    pytest.param("project_slug", {"project_slug": "my--slug"}, id="slug-double-dash"),
    pytest.param("project_slug", {"project_slug": "-my-slug"}, id="slug-leading-dash"),
    pytest.param("project_slug", {"project_slug": "a" * 33}, id="slug-too-long"),
    pytest.param("package_name", {"package_name": "class"}, id="package-keyword"),
    pytest.param("package_name", {"package_name": "json"}, id="package-stdlib"),
    pytest.param("package_name", {"package_name": "redis"}, id="package-dependency"),
    pytest.param("package_name", {"package_name": "fastapi"}, id="package-fastapi"),
    pytest.param("package_name", {"package_name": "9lives"}, id="package-digit"),
    pytest.param("package_name", {"package_name": "My-Pkg"}, id="package-not-identifier"),
    pytest.param("package_name", {"package_name": "a" * 33}, id="package-too-long"),
    pytest.param("package_name", {"package_name": "sklearn"}, id="package-graph-rag-dependency"),
    pytest.param("package_name", {"package_name": "tomllib"}, id="package-stdlib-3.11"),
    pytest.param("package_name", {"package_name": "pytest_asyncio"}, id="package-dev-dependency"),
    pytest.param("package_name", {"package_name": "neo4j"}, id="package-memgraph-dependency"),
    pytest.param("package_name", {"package_name": "falkordb"}, id="package-falkordb-dependency"),
    pytest.param("author_email", {"author_email": "not-an-email"}, id="email-no-at"),
    pytest.param("author_email", {"author_email": "a@b"}, id="email-no-tld"),
    pytest.param("description", {"description": 'has "quotes"'}, id="description-quotes"),
    pytest.param("flavor", {"flavor": "crm"}, id="flavor-unknown"),
    pytest.param(
        "graph_store", {"flavor": "graph_rag", "graph_store": "neo4j"}, id="graph-store-unknown"
    ),
    pytest.param("queue_backend", {"queue_backend": "kafka"}, id="queue-unknown"),
    pytest.param(
        "celery_broker", {"queue_backend": "celery", "celery_broker": "sqs"}, id="broker-unknown"
    ),
    pytest.param("cache", {"cache": "memcached"}, id="cache-unknown"),
    pytest.param("autoscaling", {"autoscaling": "nomad"}, id="autoscaling-unknown"),
    pytest.param("python_version", {"python_version": "3.9"}, id="python-unsupported"),
    pytest.param(
        "scale_max_replicas",
        {"autoscaling": "kubernetes", "scale_min_replicas": 5, "scale_max_replicas": 3},
        id="max-below-min",
    ),
    pytest.param(
        "scale_min_replicas",
        {"autoscaling": "ecs", "scale_min_replicas": 0},
        id="min-replicas-zero",
    ),
    pytest.param(
        "scale_cpu_target", {"autoscaling": "kubernetes", "scale_cpu_target": 100}, id="cpu-100"
    ),
]

# Impossible combinations: an answer given for a question that does not apply. Refused by the
# validator of the question it depends on, naming both; a stored answer on update is not "given".
BAD_COMBINATIONS = [
    pytest.param(
        "queue_backend",
        {"queue_backend": "arq", "celery_broker": "rabbitmq"},
        id="broker-without-celery",
    ),
    pytest.param(
        "autoscaling",
        {"autoscaling": "none", "scale_max_replicas": 20, "scale_cpu_target": 60},
        id="scaling-without-autoscaling",
    ),
    pytest.param(
        "flavor", {"flavor": "fintech", "graph_store": "memgraph"}, id="graph-store-with-fintech"
    ),
]


def _refused(template_copy: Path, dst: Path, answers: dict[str, Any]) -> str:
    from copier import run_copy

    with pytest.raises(ValueError, match=COPIER_ERROR) as excinfo:
        run_copy(
            str(template_copy),
            str(dst),
            data={**BASE, **answers},
            defaults=True,
            unsafe=True,
            quiet=True,
            vcs_ref="HEAD",
        )
    assert not (dst / "pyproject.toml").exists(), "a project was rendered despite a bad answer"
    return str(excinfo.value)


@pytest.mark.parametrize(("question", "bad"), BAD_COMBINATIONS)
def test_impossible_combination_names_both_questions(
    question: str, bad: dict[str, Any], template_copy: Path, tmp_path: Path
) -> None:
    message = _refused(template_copy, tmp_path / "out", bad)
    assert f"question '{question}'" in message, message
    for name in bad:
        assert name in message, f"error does not name {name!r}: {message}"


@pytest.mark.parametrize(("question", "bad"), BAD_ANSWERS)
def test_bad_answer_names_the_question(
    question: str, bad: dict[str, Any], template_copy: Path, tmp_path: Path
) -> None:
    message = _refused(template_copy, tmp_path / "out", bad)
    assert f"'{question}'" in message, f"error does not name {question!r}: {message}"


@pytest.mark.parametrize("folder", ["bench", "deploy", "observability", "src", "tests"])
def test_package_name_refuses_the_projects_own_folders(
    folder: str, template_copy: Path, tmp_path: Path
) -> None:
    message = _refused(template_copy, tmp_path / "out", {"package_name": folder})
    assert f"package_name '{folder}' is the name of the project's own {folder}/ folder" in message


def test_every_choice_question_rejects_unknown_values() -> None:
    """The cases above cover each choice question of copier.yml (keeps them in step)."""
    questions = V.load_questions()
    choice_questions = {
        name
        for name, spec in questions.items()
        if not name.startswith("_") and isinstance(spec, dict) and "choices" in spec
    }
    covered = {p.values[0] for p in BAD_ANSWERS}
    assert choice_questions <= covered, f"no bad-answer case for {choice_questions - covered}"


def _answers_file(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def test_names_derive_from_project_name(render: Renderer) -> None:
    project = render({"project_name": "Acme Ledger API"})
    recorded = _answers_file(project)
    assert recorded["project_slug"] == "acme-ledger-api"
    assert recorded["package_name"] == "acme_ledger_api"
    assert (project / "src" / "acme_ledger_api" / "__init__.py").is_file()
    assert 'name = "acme-ledger-api"' in (project / "pyproject.toml").read_text()


def test_long_project_name_derives_names_within_the_limit(render: Renderer) -> None:
    """The longest project name (64 characters) derives a slug and a package name cut at 32
    characters; a cut that lands after a dash drops it."""
    name = "Customer Onboarding And Identity Verification Service For Bank 1"
    assert len(name) == 64
    recorded = _answers_file(render({"project_name": name}))
    assert recorded["project_slug"] == "customer-onboarding-and-identity"
    assert recorded["package_name"] == "customer_onboarding_and_identity"
    recorded = _answers_file(render({"project_name": "Customer Onboarding And Identit Check"}))
    assert recorded["project_slug"] == "customer-onboarding-and-identit"


def test_defaults_alone_render(render: Renderer) -> None:
    """`copier copy --defaults` (the README quick start) needs no answer at all."""
    project = render({})
    recorded = _answers_file(project)
    questions = V.load_questions()
    for name in ("flavor", "queue_backend", "cache", "autoscaling", "python_version"):
        assert recorded[name] == V.question_default(name, questions)
    assert (project / "src" / recorded["package_name"]).is_dir()


def test_celery_broker_only_with_celery(render: Renderer) -> None:
    with_celery = _answers_file(render({**BASE, "queue_backend": "celery"}))
    without = _answers_file(render({**BASE, "queue_backend": "arq"}))
    assert with_celery.get("celery_broker") == V.question_default("celery_broker")
    assert "celery_broker" not in without


def test_graph_store_only_with_graph_rag(render: Renderer) -> None:
    with_graph = _answers_file(render({**BASE, "flavor": "graph_rag"}))
    without = _answers_file(render({**BASE, "flavor": "fintech"}))
    assert with_graph.get("graph_store") == V.question_default("graph_store")
    assert "graph_store" not in without


def test_the_reserved_names_are_derived_from_the_pythons_and_the_dependencies() -> None:
    """hooks/reserved_names.jinja is what hooks/reserved_names.py derives today: every
    supported Python's standard library, every dependency a variant can list."""
    for version in ("3.11", "3.12", "3.13"):
        require_interpreter(version)
    check = subprocess.run(
        [sys.executable, str(HOOKS / "reserved_names.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_every_dependency_of_the_pyproject_template_is_reserved() -> None:
    sys.path.insert(0, str(HOOKS))
    try:
        import reserved_names
    finally:
        sys.path.remove(str(HOOKS))
    found = reserved_names.distributions()
    # Spot checks of the parsing: plain, with extras, inside a Jinja choice, an extra's.
    for name in ("aiosqlite", "sqlalchemy", "celery", "sentence-transformers", "faiss-cpu"):
        assert name in found
    assert not any(name.startswith("types-") for name in found)
