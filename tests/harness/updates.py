"""`copier update` across the template's releases: a clone with its tags, generate, update.

Release tags are rebuilt from CHANGELOG.md: a release is the commit that adds its dated
`## [X.Y.Z] - YYYY-MM-DD` heading; a `## [X.Y.Z] - unreleased` heading makes HEAD that version.
So the tests need no fetched tags, and a migration is tested before its release is tagged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import variants as V
import yaml
from copier import run_copy, run_update

from harness.processes import project_env

REPO_ROOT = V.REPO_ROOT
RELEASE_HEADING = re.compile(
    r"^## \[(?P<version>\d+\.\d+\.\d+)\] - (?P<date>\d{4}-\d{2}-\d{2}|unreleased)$", re.MULTILINE
)
#: Questions that did not exist yet at the first release (not passed when rendering it).
NEW_SINCE_FIRST = {"graph_store", "lock_dependencies"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Template Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"git {' '.join(args)} in {cwd}:\n{result.stderr}"
    return result.stdout


def commit_all(project: Path, message: str) -> None:
    """Commit everything in the project's work tree (an update needs a clean one)."""
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", message)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------------------------------------
# The template at its releases
# ---------------------------------------------------------------------------------------------
def releases(changelog: str) -> list[tuple[str, str]]:
    """(version, heading) pairs, newest first."""
    return [(m["version"], m.group(0)) for m in RELEASE_HEADING.finditer(changelog)]


def build_release_tags(clone: Path) -> list[str]:
    """Tag each release of CHANGELOG.md at the commit that released it; newest first."""
    versions = []
    for version, heading in releases((clone / "CHANGELOG.md").read_text()):
        if heading.endswith("unreleased"):
            commit = git(clone, "rev-parse", "HEAD").strip()
        else:
            commit = git(clone, "log", "-1", "--format=%H", "-S", heading, "--", "CHANGELOG.md")
            assert commit.strip(), f"no commit adds {heading!r} (a shallow clone?)"
        git(clone, "tag", version, commit.strip())
        versions.append(version)
    assert len(versions) >= 2, "CHANGELOG.md names fewer than two releases: nothing to update"
    return versions


class Template:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = build_release_tags(root)
        self.first, self.latest = self.versions[-1], self.versions[0]

    def release(self, tag: str) -> None:
        """A synthetic next release of the clone (for changes the real history lacks)."""
        git(self.root, "add", "--all")
        git(self.root, "commit", "--quiet", "-m", f"release {tag}")
        git(self.root, "tag", tag)


def clone_template(tmp_path: Path) -> Template:
    """This repository cloned, with its uncommitted work committed and its release tags."""
    clone = tmp_path / "template"
    subprocess.run(["git", "clone", "--quiet", "--no-tags", str(REPO_ROOT), str(clone)], check=True)
    # Uncommitted work too: tracked changes, deletions and new files that git does not ignore.
    listed = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for relative in filter(None, listed.split("\0")):
        source, target = REPO_ROOT / relative, clone / relative
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():
            target.unlink()
    if git(clone, "status", "--porcelain").strip():
        git(clone, "add", "--all")
        git(clone, "commit", "--quiet", "-m", "uncommitted work")
    return Template(clone)


def generate(template: Template, dst: Path, answers: dict[str, Any], version: str) -> None:
    data = answers if version != template.first else known_at_first(answers)
    run_copy(str(template.root), dst, data=data, vcs_ref=version, defaults=True, unsafe=True,
             quiet=True)  # fmt: skip
    assert git(dst, "rev-list", "--count", "HEAD").strip() == "1"  # the post-copy hook's commit


def known_at_first(answers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answers.items() if k not in NEW_SINCE_FIRST}


def update(project: Path, **options: Any) -> None:
    run_update(project, defaults=True, overwrite=True, unsafe=True, quiet=True, **options)


def recorded_answers(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def unmerged(project: Path) -> list[str]:
    status = git(project, "status", "--porcelain")
    return [line[3:] for line in status.splitlines() if line.startswith("UU")]


def import_error(project: Path, venv: Path, module: str) -> str | None:
    """Why `module` of the generated project does not import in `venv`; None when it does."""
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}"],
        env=project_env(project, venv),
        capture_output=True,
        text=True,
    )
    return imported.stderr if imported.returncode else None
