"""The template as Copier reads it, copied out of the working tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import variants as V


def copy_template_root(dst: Path) -> Path:
    """Copy what Copier reads (copier.yml, the template subdirectory, hooks) into `dst`, a plain
    directory: Copier renders it as it stands, uncommitted edits included, without cloning."""
    questions = V.load_questions()
    subdir = str(questions.get("_subdirectory", "") or "")
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.py[co]", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".venv"
    )
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("copier.yml", "copier.yaml"):
        if (V.REPO_ROOT / name).is_file():
            shutil.copy2(V.REPO_ROOT / name, dst / name)
    for name in {subdir, "hooks", "includes", "extensions"} - {""}:
        if (V.REPO_ROOT / name).is_dir():
            shutil.copytree(V.REPO_ROOT / name, dst / name, ignore=ignore, symlinks=True)
    return dst
