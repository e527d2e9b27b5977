"""The README's command blocks, as the tests run them."""

from __future__ import annotations

import re

import variants as V

README = V.REPO_ROOT / "README.md"


def fenced_block(marker: str, text: str | None = None) -> list[str]:
    """The non-empty, non-comment lines of the first ```bash block after ``<!-- marker -->``."""
    text = README.read_text(encoding="utf-8") if text is None else text
    match = re.search(
        rf"<!--\s*{re.escape(marker)}\s*-->\s*```(?:bash|sh|console)\s*\n(.*?)\n```",
        text,
        re.DOTALL,
    )
    assert match, f"README.md has no ```bash block after <!-- {marker} -->"
    return [
        line.strip()
        for line in match.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
