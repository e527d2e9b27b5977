"""`copier update` on a real generated project: user edits survive, template changes arrive.

Each test clones this repository into a temporary directory and tags its HEAD `0.1.0`, renders
a project at that tag (the post-copy hook makes the project's first commit), makes the kinds of
edit users make, then commits a template change in the clone, tags it `0.2.0` and updates the
project to it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import variants as V
import yaml
from conftest import (
    HARNESS_REQUIREMENTS,
    REPO_ROOT,
    SharedVenvs,
    build_venv,
    project_requirements,
    require_interpreter,
)
from copier import run_copy, run_update
from test_generated import _run_suite

pytestmark = pytest.mark.xdist_group("update")

VARIANT = next(v for v in V.covering_set() if v.python == "3.11")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Template Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"git {' '.join(args)} in {cwd}:\n{result.stderr}"
    return result.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def template(tmp_path: Path) -> Path:
    clone = tmp_path / "template"
    subprocess.run(["git", "clone", "--quiet", "--no-tags", str(REPO_ROOT), str(clone)], check=True)
    git(clone, "tag", "0.1.0")
    return clone


def release(template: Path, tag: str) -> None:
    git(template, "add", "--all")
    git(template, "commit", "--quiet", "-m", f"release {tag}")
    git(template, "tag", tag)


def generate(template: Path, dst: Path) -> dict[str, Any]:
    answers = VARIANT.answers()
    run_copy(str(template), dst, data=answers, defaults=True, unsafe=True, quiet=True)
    assert git(dst, "rev-list", "--count", "HEAD").strip() == "1"  # the post-copy hook's commit
    return answers


def package_dir(project: Path, answers: dict[str, Any]) -> Path:
    return project / "src" / answers["package_name"]


GREETINGS = '''"""A feature the user added after generating the project."""

from fastapi import APIRouter

router = APIRouter()


@router.get("/api/greetings", summary="Say hello")
async def greet() -> dict[str, str]:
    return {"hello": "world"}
'''


@pytest.mark.generated
def test_update_keeps_user_edits_and_brings_template_changes(
    template: Path, tmp_path: Path, shared_venv: SharedVenvs
) -> None:
    project = tmp_path / "project"
    answers = generate(template, project)
    package = package_dir(project, answers)

    # The user's edits: a new endpoint module wired in, a changed setting default, a README
    # section of their own, and an optional file they do not want.
    (package / "greetings.py").write_text(GREETINGS)
    edit(package / "components.py", "def feature_routers() -> list[APIRouter]:\n", (
        "def feature_routers() -> list[APIRouter]:\n"
        "    from .greetings import router as greetings\n\n"
        "    return [greetings, *_template_routers()]\n\n\n"
        "def _template_routers() -> list[APIRouter]:\n"
    ))  # fmt: skip
    edit(package / "settings.py", "gzip_minimum_size: int = Field(default=1000", (
        "gzip_minimum_size: int = Field(default=2000"
    ))  # fmt: skip
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Team notes\n\nOn call: the platform team.\n")
    (project / "compose.yaml").unlink()
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "user edits")

    # The template's next release changes a default, edits the compose file the user deleted,
    # and adds a file.
    tpl = template / "template"
    edit(
        tpl / "src" / "{{ package_name }}" / "settings.py.jinja",
        "readiness_timeout: float = Field(default=2.0",
        "readiness_timeout: float = Field(default=3.0",
    )
    edit(template / "template" / ".env.example.jinja", "READINESS_TIMEOUT=2", "READINESS_TIMEOUT=3")
    edit(tpl / "compose.yaml.jinja", "name: {{ project_slug }}", "name: {{ project_slug }}-stack")
    (tpl / "SECURITY.md.jinja").write_text("# Security\n\nReport issues to {{ author_email }}.\n")
    release(template, "0.2.0")

    run_update(project, defaults=True, overwrite=True, unsafe=True, quiet=True, vcs_ref="0.2.0")

    # The user's edits survived...
    assert (package / "greetings.py").read_text() == GREETINGS
    assert "from .greetings import router as greetings" in (package / "components.py").read_text()
    settings = (package / "settings.py").read_text()
    assert "gzip_minimum_size: int = Field(default=2000" in settings
    assert "## Team notes" in readme.read_text()
    assert not (project / "compose.yaml").exists(), "a file the user deleted came back"
    # ...and the template's changes arrived.
    assert "readiness_timeout: float = Field(default=3.0" in settings
    assert (project / "SECURITY.md").read_text().startswith("# Security\n\nReport issues to ")
    assert "_commit: 0.2.0" in (project / ".copier-answers.yml").read_text()
    assert not re.search(r"^<<<<<<< ", settings + readme.read_text(), re.MULTILINE)

    # The updated project still passes its own tests.
    _run_suite(project, shared_venv(VARIANT.python), {}, "after update")


def test_a_real_conflict_is_left_inline_and_reported(template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    answers = generate(template, project)
    settings = package_dir(project, answers) / "settings.py"
    # The user and the template both change the same line.
    edit(settings, "db_retry_after_seconds: int = Field(default=5", (
        "db_retry_after_seconds: int = Field(default=15"
    ))  # fmt: skip
    git(project, "commit", "--quiet", "--all", "-m", "user: longer retry")
    edit(
        template / "template" / "src" / "{{ package_name }}" / "settings.py.jinja",
        "db_retry_after_seconds: int = Field(default=5",
        "db_retry_after_seconds: int = Field(default=7",
    )
    release(template, "0.2.0")

    run_update(project, defaults=True, overwrite=True, unsafe=True, quiet=True, vcs_ref="0.2.0")

    text = settings.read_text()
    assert "<<<<<<< before updating" in text
    assert "default=15" in text
    assert "default=7" in text
    assert ">>>>>>> after updating" in text
    status = git(project, "status", "--porcelain")
    relative = settings.relative_to(project).as_posix()
    assert f"UU {relative}" in status, status  # git reports it unmerged


K8S = ["deploy/kubernetes/hpa.yaml", "tests/test_deploy.py"]
ANSWER_CHANGES = [
    # question, before, after, paths that must appear, paths that must disappear
    ("cache", "memory", "redis", ["src/PKG/cache/redis.py", "tests/test_cache_outage.py"], []),
    ("queue_backend", "none", "arq", ["src/PKG/jobs/arq_worker.py"], []),
    (
        "autoscaling",
        "none",
        "kubernetes",
        ["deploy/kubernetes/hpa.yaml", "tests/test_deploy.py"],
        [],
    ),
    ("autoscaling", "kubernetes", "none", [], ["deploy", *K8S]),
]


@pytest.mark.generated
@pytest.mark.parametrize(
    ("question", "before", "after", "appear", "disappear"),
    ANSWER_CHANGES,
    ids=[f"{q}-{b}-to-{a}" for q, b, a, _, _ in ANSWER_CHANGES],
)
def test_changing_an_answer_adds_and_removes_the_right_files(
    template: Path,
    tmp_path: Path,
    question: str,
    before: str,
    after: str,
    appear: list[str],
    disappear: list[str],
) -> None:
    project = tmp_path / "project"
    answers = {**VARIANT.answers(), "queue_backend": "none", question: before}
    answers.pop("celery_broker", None)
    run_copy(str(template), project, data=answers, defaults=True, unsafe=True, quiet=True)
    package = answers["package_name"]

    # Same template version (what `--vcs-ref=:current:` selects on the command line), one
    # answer changed.
    run_update(
        project, data={question: after}, defaults=True, overwrite=True, unsafe=True, quiet=True,
        vcs_ref="0.1.0",
    )  # fmt: skip

    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert recorded[question] == after
    for path in appear:
        assert (project / path.replace("PKG", package)).exists(), f"{path} was not added"
    for path in disappear:
        assert not (project / path.replace("PKG", package)).exists(), f"{path} was not removed"
    status = git(project, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line.startswith("UU")], status

    # The project's own tests pass with the dependencies the new answer brings.
    interpreter = require_interpreter(VARIANT.python)
    requirements = [*project_requirements(project), *HARNESS_REQUIREMENTS]
    venv = build_venv(interpreter, requirements, f"answers-{question}-{after}")
    _run_suite(project, venv, {}, f"after {question}={after}")
