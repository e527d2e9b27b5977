"""Check that every dated release in CHANGELOG.md is a git tag on the commit that released it.

`copier update` finds a template's releases by its git tags. A project copied from a template
without them records a bare commit: an update runs none of the `_migrations` of copier.yml and
a file the template moved loses the user's edits. So a release is a dated
`## [X.Y.Z] - YYYY-MM-DD` heading in CHANGELOG.md, the tag X.Y.Z on the commit that added
that heading, and the tag pushed (README.md, "Releasing"). This checks the first two in a
repository (this one by default), reading CHANGELOG.md at its HEAD:

    python tests/release_tags.py [--repo PATH] [--allow-untagged-newest]

It prints each problem and exits 1 when a dated release has no tag, when its tag is on another
commit, or when a version still headed `unreleased` is already tagged. On a pull request that
makes a release the tag cannot exist yet: `--allow-untagged-newest` lets the newest dated
release be untagged (a tag on the wrong commit still fails).

It lives next to the update tests, which rebuild the same tags in a clone, rather than in
hooks/ (what copier.yml runs in generated projects), and needs only the standard library and
git, so CI runs it without installing anything. tests/test_update_layout.py tests it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

RELEASE_HEADING = re.compile(
    r"^## \[(?P<version>\d+\.\d+\.\d+)\] - (?P<date>\d{4}-\d{2}-\d{2}|unreleased)$", re.MULTILINE
)
CHANGELOG = "CHANGELOG.md"


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def releases(changelog: str) -> list[tuple[str, str, bool]]:
    """(version, heading, dated) for each release heading, newest first."""
    return [
        (m["version"], m.group(0), m["date"] != "unreleased")
        for m in RELEASE_HEADING.finditer(changelog)
    ]


def heading_commit(repo: Path, heading: str) -> str | None:
    """The commit that added `heading` to CHANGELOG.md (the release commit)."""
    out = git(repo, "log", "-1", "--format=%H", "-S", heading, "--", CHANGELOG)
    return out.stdout.strip() or None


def tag_commit(repo: Path, version: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{version}^{{commit}}")
    return out.stdout.strip() or None


def problems(repo: Path, *, allow_untagged_newest: bool = False) -> list[str]:
    shown = git(repo, "show", f"HEAD:{CHANGELOG}")
    if shown.returncode != 0:
        return [f"{repo}: no {CHANGELOG} at HEAD ({shown.stderr.strip()})"]
    found: list[str] = []
    newest_dated = True
    for version, heading, dated in releases(shown.stdout):
        tagged = tag_commit(repo, version)
        if not dated:
            if tagged:
                found.append(
                    f"{version}: tagged ({tagged[:12]}), but {CHANGELOG} heads it unreleased: "
                    f"date the heading and tag that commit, or delete the tag"
                )
            continue
        released = heading_commit(repo, heading)
        if released is None:
            found.append(f"{version}: no commit adds {heading!r} (a shallow clone? fetch all)")
        elif tagged is None:
            if not (newest_dated and allow_untagged_newest):
                found.append(
                    f"{version}: no tag; the release commit is {released[:12]}: "
                    f"git tag {version} {released[:12]} && git push origin {version}"
                )
        elif tagged != released:
            found.append(
                f"{version}: the tag is on {tagged[:12]}, but {released[:12]} added "
                f"{heading!r}: git tag --force {version} {released[:12]} (then push it)"
            )
        newest_dated = False
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the git repository")
    parser.add_argument(
        "--allow-untagged-newest",
        action="store_true",
        help="the newest dated release may lack its tag (a release pull request)",
    )
    args = parser.parse_args(argv)
    found = problems(args.repo, allow_untagged_newest=args.allow_untagged_newest)
    for problem in found:
        print(f"release-tags: {problem}", file=sys.stderr)
    if not found:
        print(f"release-tags: every dated release in {CHANGELOG} is tagged at its commit")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
