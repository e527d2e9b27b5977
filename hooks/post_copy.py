"""Run once after `copier copy` in the new project: git init with a first commit, and `uv lock`.

Copier runs it as a task (hence `--trust`); copier.yml guards it with
`_copier_operation == 'copy'`, so an update, which renders the template three times, never
re-runs it. Each step is skipped with a message, not failed, when its tool is missing: the
project is already complete without them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def say(message: str) -> None:
    sys.stderr.write(f"post-copy: {message}\n")


def inside_git_work_tree(path: Path) -> bool:
    result = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=path, capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.strip() == "true"


def git_init(path: Path, author: str, email: str, version: str) -> None:
    if shutil.which("git") is None:
        say("git not found; skipping `git init`")
        return
    if inside_git_work_tree(path):
        say("already inside a git work tree; leaving it to you to commit")
        return
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main"], cwd=path, check=True)
    subprocess.run(["git", "add", "--all"], cwd=path, check=True)
    identity = []
    configured = subprocess.run(
        ["git", "config", "user.email"], cwd=path, capture_output=True, text=True
    )
    if not configured.stdout.strip():  # no identity yet: commit as the project's author
        identity = ["-c", f"user.name={author}", "-c", f"user.email={email}"]
    message = f"Generate from fastapi-production-template {version}"
    subprocess.run(
        ["git", *identity, "commit", "--quiet", "--no-verify", "-m", message], cwd=path, check=True
    )
    say(f"git repository created with a first commit ({message!r})")


def uv_lock(path: Path) -> None:
    if shutil.which("uv") is None:
        say("uv not found; skipping `uv lock` (the first `uv run` writes uv.lock)")
        return
    subprocess.run(["uv", "lock", "--quiet"], cwd=path, check=True)
    say("dependencies locked in uv.lock")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--git", choices=["true", "false"], required=True)
    parser.add_argument("--lock", choices=["true", "false"], required=True)
    parser.add_argument("--author", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    project = Path.cwd()
    if args.lock == "true":
        uv_lock(project)  # before the first commit, so uv.lock is in it
    if args.git == "true":
        git_init(project, args.author, args.email, args.version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
