"""Files users extend merge cleanly on `copier update`; a generated project's own checks.

Real updates to a synthetic next release of a temporary clone (tests/test_update.py builds the
clone, its release tags and the helpers used here):

- a user appends to the README and `.env.example`, adds a dependency with `uv add` and a
  router in `extensions.py`, while the release changes the README's last section, adds a
  variable, a dependency and changes components.py and extensions.py: the update merges all
  of it with no conflict, both sides' lines present, and the release's new file arrives
  untracked (hence `git add -A` in the README's update steps).
- The generated `.pre-commit-config.yaml`: local hooks only (no hook repository to clone);
  `pre-commit install` makes `git commit` refuse conflict markers and unformatted code, and
  pass a clean commit; `pre-commit run --all-files` passes on a fresh project.
- tests/release_tags.py (CI's release-tags job) against a clone with the release tags built,
  then with one tag missing, one on the wrong commit, and one on an unreleased version.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import release_tags
import variants as V
import yaml
from conftest import REPO_ROOT, Renderer, uv_bin
from harness.processes import tail
from harness.updates import Template, commit_all, edit, generate, git, unmerged, update

#: The variant whose files are edited (graph_rag: its README ends with the Search section).
VARIANT = next(v for v in V.covering_set() if v.python == "3.11")
TEMPLATE_DIR = Path("template")
PACKAGE_DIR = TEMPLATE_DIR / "src" / "{{ package_name }}"

USER_README = "\n## On-call\n\nPage the platform team; the runbook is in the wiki.\n"
USER_VARIABLE = "# Token of the partner API our own code calls\nPARTNER_API_TOKEN=\n"
USER_DEPENDENCY = "tenacity"
USER_ROUTER = '''"""This project's own routers and resources."""

from __future__ import annotations

from fastapi import APIRouter

from .resources import Resource
from .settings import Settings

partners = APIRouter()


@partners.get("/api/partners", summary="List partners")
async def list_partners() -> list[str]:
    return ["acme"]


def routers() -> list[APIRouter]:
    return [partners]


def resources(settings: Settings) -> list[Resource]:
    return []
'''
RELEASE_README_LINE = "Re-measured for this release on the same machine.\n"
RELEASE_VARIABLE = "# Seconds between metric exports\nMETRICS_EXPORT_INTERVAL=60\n"
RELEASE_DEPENDENCY = '    "zstandard>=0.23",\n'
RELEASE_COMPONENTS = "    # The domain's routes, the jobs API, then this project's own.\n"


REQUIREMENT = re.compile(r'\s+"([^"]+)"')


def add_dependency(pyproject: Path, line: str) -> None:
    """Add a runtime dependency as a maintainer (and `uv add`) would: at its sorted place when
    the list is sorted, else at its end."""
    text = pyproject.read_text()
    start = text.index("dependencies = [\n") + len("dependencies = [\n")
    end = text.index("\n]\n", start) + 1
    lines = text[start:end].splitlines(keepends=True)
    names = [(i, m[1].lower()) for i, ln in enumerate(lines) if (m := REQUIREMENT.match(ln))]
    match = REQUIREMENT.match(line)
    assert match, line
    name = match[1].lower()
    if [n for _, n in names] == sorted(n for _, n in names):
        at = next((i for i, n in names if n > name), len(lines))
    else:
        at = len(lines)
    lines.insert(at, line)
    pyproject.write_text(text[:start] + "".join(lines) + text[end:])


def release_changing_the_extended_files(template: Template, tag: str) -> None:
    root = template.root
    readme = root / TEMPLATE_DIR / "README.md.jinja"
    last = "(CPU-bound: ~5 ms of CPU per search).\n"  # the last line of the graph_rag section
    edit(readme, last, last + RELEASE_README_LINE)
    env_example = root / TEMPLATE_DIR / ".env.example.jinja"
    edit(env_example, "TRACING_ENABLED=false\n", "TRACING_ENABLED=false\n" + (
        RELEASE_VARIABLE
    ))  # fmt: skip
    add_dependency(root / TEMPLATE_DIR / "pyproject.toml.jinja", RELEASE_DEPENDENCY)
    components = root / PACKAGE_DIR / "components.py.jinja"
    text = components.read_text()
    old = "    # The domain's routes first: FastAPI matches routes in registration order.\n"
    components.write_text(text.replace(old, RELEASE_COMPONENTS))
    extensions = root / PACKAGE_DIR / "extensions.py"
    if extensions.exists():  # the template rewording a file it promised to leave alone
        edit(extensions, "def routers() -> list[APIRouter]:\n    return []\n", (
            "def routers() -> list[APIRouter]:\n    # Your routers.\n    return []\n"
        ))  # fmt: skip
    (root / TEMPLATE_DIR / "NOTICE.md").write_text("A file new in this release.\n")
    template.release(tag)


def test_what_users_append_and_add_merges_with_the_next_release(
    template: Template, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    answers = VARIANT.answers()
    generate(template, project, answers, "HEAD")
    package = project / "src" / answers["package_name"]

    # What users do: append a README section and a variable, `uv add` a dependency, add a
    # router where the README says to.
    readme, env_example = project / "README.md", project / ".env.example"
    readme.write_text(readme.read_text() + USER_README)
    env_example.write_text(env_example.read_text() + USER_VARIABLE)
    subprocess.run(
        [uv_bin(), "add", "--frozen", "--quiet", USER_DEPENDENCY],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip
    (package / "extensions.py").write_text(USER_ROUTER)
    commit_all(project, "user additions")

    release_changing_the_extended_files(template, "99.0.0")
    update(project, data=answers, vcs_ref="99.0.0")

    assert not unmerged(project), git(project, "diff")
    markers = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
    readme_text = readme.read_text()
    assert RELEASE_README_LINE in readme_text
    assert readme_text.endswith(USER_README), "the user's section is no longer last"
    env_text = env_example.read_text()
    assert RELEASE_VARIABLE in env_text
    assert env_text.endswith(USER_VARIABLE)
    pyproject = (project / "pyproject.toml").read_text()
    assert RELEASE_DEPENDENCY in pyproject
    assert f'    "{USER_DEPENDENCY}",\n' in pyproject
    components = (package / "components.py").read_text()
    assert RELEASE_COMPONENTS in components
    assert "*extensions.routers()" in components
    assert (package / "extensions.py").read_text() == USER_ROUTER, "the update touched it"
    for path in (readme, env_example, project / "pyproject.toml", package / "components.py"):
        assert not markers.search(path.read_text()), f"conflict markers in {path.name}"

    # The release's new file arrives untracked: `git commit -a` would leave it out, which is
    # why the README's update steps say `git add -A`.
    assert "?? NOTICE.md" in git(project, "status", "--porcelain").splitlines()
    assert "`git add -A && git commit`" in readme_text


# ---------------------------------------------------------------------------------------------
# The generated project's pre-commit hooks
# ---------------------------------------------------------------------------------------------
HOOK_IDS = {"check-merge-conflict", "ruff", "ruff-format", "yamllint"}
CONFLICT = "<<<<<<< before updating\nours\n=======\ntheirs\n>>>>>>> after updating\n"


def hook_env(home: Path) -> dict[str, str]:
    # pre-commit from this repository's dev group, and the `uv run ruff` / `uv run yamllint`
    # of the hooks: UV_NO_SYNC keeps uv from installing the whole project (it then runs the
    # tools found on PATH, this venv's, instead of the project's pinned ones).
    tools = [str(Path(sys.executable).parent), str(Path(uv_bin()).parent)]
    return {
        **os.environ,
        "PATH": os.pathsep.join([*tools, os.environ.get("PATH", "")]),
        "PRE_COMMIT_HOME": str(home),
        "UV_NO_SYNC": "1",
        "GIT_AUTHOR_NAME": "Template Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Template Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def run_in(project: Path, env: dict[str, str], *cmd: str) -> tuple[int, str]:
    """Exit code and output (git prints its hooks' output on stderr)."""
    out = subprocess.run(
        cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False, timeout=300,
    )  # fmt: skip
    return out.returncode, out.stdout


def test_pre_commit_refuses_conflict_markers_and_passes_a_clean_commit(
    render: Renderer, work_copy: Callable[[Path], Path], tmp_path: Path
) -> None:
    project = work_copy(render(VARIANT))
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"], "a hook would need a clone"
    assert {hook["id"] for repo in config["repos"] for hook in repo["hooks"]} == HOOK_IDS

    env = hook_env(tmp_path / "pre-commit-home")
    code, output = run_in(project, env, sys.executable, "-m", "pre_commit", "install")
    assert code == 0, output
    assert (project / ".git" / "hooks" / "pre-commit").is_file()
    code, output = run_in(project, env, sys.executable, "-m", "pre_commit", "run", "--all-files")
    assert code == 0, f"a fresh project fails its own hooks:\n{tail(output)}"
    head = git(project, "rev-parse", "HEAD")

    # What an update leaves in a file it could not merge, committed by mistake: refused.
    readme = project / "README.md"
    readme.write_text(readme.read_text() + CONFLICT)
    git(project, "add", "README.md")
    code, output = run_in(project, env, "git", "commit", "-m", "resolved (not really)")
    assert code != 0, output
    assert "hook id: check-merge-conflict" in output
    assert re.search(r"^README\.md:\d+:<<<<<<< before updating$", output, re.MULTILINE), output
    assert git(project, "rev-parse", "HEAD") == head

    # Unformatted code: refused, and formatted in place by ruff-format.
    module = project / "src" / VARIANT.answers()["package_name"] / "partners.py"
    readme.write_text(readme.read_text().replace(CONFLICT, ""))
    module.write_text('"""Partners."""\n\nPARTNERS=["acme"]\n')
    git(project, "add", "--all")
    code, output = run_in(project, env, "git", "commit", "-m", "partners")
    assert code != 0, output
    assert "hook id: ruff-format" in output
    assert module.read_text() == '"""Partners."""\n\nPARTNERS = ["acme"]\n'
    assert git(project, "rev-parse", "HEAD") == head

    # The same change, clean: committed, every hook having passed.
    git(project, "add", "--all")
    code, output = run_in(project, env, "git", "commit", "-m", "partners")
    assert code == 0, output
    for name in ("no conflict markers", "ruff check", "ruff format"):
        assert re.search(rf"^{name}\.+Passed$", output, re.MULTILINE), output
    assert git(project, "rev-parse", "HEAD") != head
    assert not git(project, "status", "--porcelain").strip()


# ---------------------------------------------------------------------------------------------
# Releases are tags: tests/release_tags.py
# ---------------------------------------------------------------------------------------------
def check_tags(repo: Path, *options: str) -> tuple[int, str]:
    script = REPO_ROOT / "tests" / "release_tags.py"
    out = subprocess.run(
        [sys.executable, str(script), "--repo", str(repo), *options],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def test_release_tags_check_passes_when_every_dated_release_is_tagged(
    template: Template,
) -> None:
    repo = template.root
    dated = [v for v, _, is_dated in release_tags.releases((repo / "CHANGELOG.md").read_text())
             if is_dated]  # fmt: skip
    assert len(dated) >= 2, dated
    # The update tests tag the unreleased version at HEAD; a real repository must not.
    if template.latest not in dated:
        git(repo, "tag", "--delete", template.latest)

    code, output = check_tags(repo)
    assert (code, release_tags.problems(repo)) == (0, []), output
    assert "every dated release in CHANGELOG.md is tagged" in output


@pytest.mark.parametrize("fault", ["missing", "misplaced", "unreleased"])
def test_release_tags_check_names_a_missing_or_misplaced_tag(
    template: Template, fault: str
) -> None:
    repo = template.root
    newest, oldest = template.versions[1], template.first  # 0.2.0 and 0.1.0 today
    assert newest != oldest
    git(repo, "tag", "--delete", template.latest)  # the unreleased version's harness tag
    released = git(repo, "rev-parse", f"{newest}^{{commit}}").strip()
    if fault == "missing":
        git(repo, "tag", "--delete", oldest)
        expected = f"{oldest}: no tag; the release commit is "
    elif fault == "misplaced":
        git(repo, "tag", "--force", newest, f"{released}~1")
        expected = f"{newest}: the tag is on "
    else:
        git(repo, "tag", template.latest, "HEAD")
        expected = f"{template.latest}: tagged ("

    code, output = check_tags(repo)
    assert code == 1, output
    assert f"release-tags: {expected}" in output
    assert len(release_tags.problems(repo)) == 1, output
    if fault == "misplaced":
        assert f"but {released[:12]} added '## [{newest}] - " in output


def test_a_release_pull_request_may_lack_only_the_newest_tag(template: Template) -> None:
    repo = template.root
    newest, oldest = template.versions[1], template.first
    git(repo, "tag", "--delete", template.latest, newest)
    assert check_tags(repo)[0] == 1
    assert check_tags(repo, "--allow-untagged-newest") == (
        0, "release-tags: every dated release in CHANGELOG.md is tagged at its commit\n"
    )  # fmt: skip
    git(repo, "tag", "--delete", oldest)
    code, output = check_tags(repo, "--allow-untagged-newest")
    assert code == 1
    assert f"{oldest}: no tag" in output
    assert f"{newest}:" not in output
