"""Copier `_migrations` steps: carry a generated project across template releases.

Copier runs these during `copier update` only (they need `--trust`), in the project directory,
when the project moves past the version they are listed under in copier.yml:

    rename-answer OLD NEW   (stage "before") the answer OLD is now called NEW: rewrite the key
                            in .copier-answers.yml, so the new version renders with the value the
                            user gave instead of NEW's default.
    move OLD NEW [...]      (stage "after") the template moved OLD to NEW: NEW gets the user's
                            edits of OLD by a three-way merge (base: OLD as the old version
                            rendered it), conflicts left inline and unmerged like Copier's own;
                            OLD goes; a file the user deleted stays deleted. When OLD is a
                            Python module, the user's imports of it are rewritten to NEW
                            (absolute and relative, each file named); a mention the script
                            cannot rewrite safely (a module name in a string) is named instead.
    split OLD NEWDIR [...]  (stage "after") the template split module OLD into the package
                            NEWDIR (trades.py -> trades/router.py, schemas.py, ...): each
                            top-level definition the user changed in OLD is merged (three-way,
                            base: OLD as the old version rendered it) into the module of NEWDIR
                            that now defines it, conflicts left inline and unmerged; the user's
                            imports of OLD's names are rewritten to those modules. OLD goes. A
                            changed definition with no place in NEWDIR, and edits outside
                            definitions, are named (`report-deleted` then names OLD too), as is
                            an import of OLD as a module.
    report-deleted          (every update, after the others) name each file the update
                            deleted that the user had changed (its content in HEAD is not what
                            the old version rendered for the old answers), with the command that
                            gets it back; untouched ones only get counted. Files `move` carried to
                            their new place are not reported.
    report-conflicts        (every update, last) name the files left with conflicts.

Why a script: Copier has no notion of a moved file. It sees OLD vanish from the template and
drops the user's edits to it with the file, while NEW arrives as the template wrote it.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ANSWERS_FILE = ".copier-answers.yml"
#: Where `move` lists the paths it carried, for `report-deleted` (in the git dir: never committed).
MOVED_LIST = "copier-migrate-moved"
OURS_LABEL, BASE_LABEL, THEIRS_LABEL = "before updating", "last update", "after updating"


def say(message: str) -> None:
    sys.stderr.write(f"migrate: {message}\n")


def files(count: int, more: bool = False) -> str:
    return f"{count}{' more' if more else ''} file{'' if count == 1 else 's'}"


def git(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], input=stdin, capture_output=True, check=True).stdout


def committed(path: str) -> bytes | None:
    """The file as the project had it before the update (update needs a clean tree)."""
    result = subprocess.run(["git", "show", f"HEAD:./{path}"], capture_output=True)
    return result.stdout if result.returncode == 0 else None


# --- rename-answer ------------------------------------------------------------------------
def rename_answer(old: str, new: str) -> None:
    answers = Path(ANSWERS_FILE)
    lines = answers.read_text(encoding="utf-8").splitlines(keepends=True)
    keys = {line.split(":", 1)[0] for line in lines if ":" in line and not line[0].isspace()}
    if old not in keys:
        return
    if new in keys:  # already both: the newer name wins, the stale one goes
        lines = [line for line in lines if not line.startswith(f"{old}:")]
        say(f"answer {old!r} dropped: {new!r} is already recorded")
    else:
        lines = [
            f"{new}:{line.split(':', 1)[1]}" if line.startswith(f"{old}:") else line
            for line in lines
        ]
        say(f"answer {old!r} is now called {new!r}; your value is kept")
    answers.write_text("".join(lines), encoding="utf-8")


# --- move ---------------------------------------------------------------------------------
def render_old_version(template: str, version: str, into: Path) -> Path:
    """Render the release the project was on, with its answers then: the merge base."""
    import yaml
    from copier import run_copy

    recorded: dict[str, Any] = yaml.safe_load(committed(ANSWERS_FILE) or b"{}") or {}
    answers = {key: value for key, value in recorded.items() if not key.startswith("_")}
    run_copy(
        template, into, data=answers, vcs_ref=version, defaults=True, overwrite=True,
        unsafe=True, skip_tasks=True, quiet=True,
    )  # fmt: skip
    return into


def mark_unmerged(path: str, base: bytes, ours: bytes, theirs: bytes) -> None:
    """Stage the three versions the way a conflicted merge does, so `git status` shows UU."""
    entries = []
    for stage, content in ((1, base), (2, ours), (3, theirs)):
        blob = git("hash-object", "-w", "--stdin", stdin=content).decode().strip()
        entries.append(f"100644 {blob} {stage}\t{path}\n")
    git("update-index", "--force-remove", path)
    git("update-index", "--index-info", stdin="".join(entries).encode())


def merge3(ours: bytes, base: bytes, theirs: bytes, path: str) -> tuple[bytes, bool]:
    """git merge-file of three texts: the result, and whether it has conflicts."""
    with tempfile.TemporaryDirectory() as scratch:
        files = [Path(scratch) / name for name in ("ours", "base", "theirs")]
        for file, content in zip(files, (ours, base, theirs), strict=True):
            file.write_bytes(content)
        merge = subprocess.run(
            ["git", "merge-file", "-L", OURS_LABEL, "-L", BASE_LABEL, "-L", THEIRS_LABEL,
             *map(str, files)],
            capture_output=True,
        )  # fmt: skip
        if merge.returncode < 0:
            raise SystemExit(f"migrate: git merge-file failed on {path}: {merge.stderr.decode()}")
        return files[0].read_bytes(), merge.returncode > 0


def move_one(old: str, new: str, old_render: Path) -> bool:
    """Move one file; True when NEW now holds it (so imports of OLD should follow)."""
    base_path = old_render / old
    target = Path(new)
    if not base_path.is_file():
        return False  # the old version never generated it for these answers
    base = base_path.read_bytes()
    ours = committed(old)
    if Path(old).exists():
        Path(old).unlink()
    if ours is None:
        if target.exists():
            target.unlink()
        say(f"{old} was deleted in this project, so its new place {new} stays deleted too")
        return False
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ours)  # the template dropped it for these answers: keep the user's
        say(f"{old} moved to {new} with your edits")
        return True
    if ours == base:
        say(f"{old} moved to {new}")
        return True
    theirs = target.read_bytes()
    merged, conflicted = merge3(ours, base, theirs, new)
    target.write_bytes(merged)
    if conflicted:
        mark_unmerged(new, base, ours, theirs)
        say(f"{old} moved to {new}: your edits conflict with the template's, resolve them there")
    else:
        say(f"{old} moved to {new} with your edits")
    return True


# --- move: the imports of a moved module --------------------------------------------------
def module_name(path: str) -> str | None:
    """tests/outage.py -> tests.outage; src/pkg/jobs/x.py -> pkg.jobs.x; None if not a module."""
    if not path.endswith(".py"):
        return None
    parts = [part for part in path[: -len(".py")].split("/") if part not in ("", ".")]
    if parts[:1] == ["src"]:
        parts = parts[1:]
    if parts[-1:] == ["__init__"]:
        parts = parts[:-1]
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None


def package_of(path: str) -> list[str]:
    """The package a module file belongs to (what its relative imports start from)."""
    parts = [part for part in path.split("/")[:-1] if part not in ("", ".")]
    return parts[1:] if parts[:1] == ["src"] else parts


def moved_to(name: str, moved: dict[str, str]) -> str | None:
    """Where module `name` went; the longest moved name wins (a package moved one way and a
    module of it another: pkg.search -> pkg.graph_rag, pkg.search.jobs -> pkg.graph_rag.x)."""
    matches = [old for old in moved if name == old or name.startswith(f"{old}.")]
    if not matches:
        return None
    old = max(matches, key=len)
    return moved[old] + name[len(old) :]


def python_files() -> list[str]:
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.py")
    conflicted = git("diff", "--name-only", "--relative", "-z", "--diff-filter=U")
    unmerged = set(conflicted.decode().split("\0"))  # report-conflicts names them
    paths = dict.fromkeys(filter(None, listed.decode().split("\0")))  # unmerged ones repeat
    return [path for path in paths if path not in unmerged and Path(path).is_file()]


class ImportRewrite:
    """The edits that point one file's imports of moved modules at their new place."""

    FROM_MODULE = re.compile(rb"from\b(?P<module>[\s.\w\\]*?)\bimport\b")

    def __init__(
        self,
        path: str,
        source: bytes,
        moved: dict[str, str],
        split: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.path, self.source, self.moved = path, source, moved
        self.split = split or {}  # module -> {name -> the new module that defines it}
        self.as_modules: list[tuple[int, str]] = []  # (line, split module) imported whole
        self.package = package_of(path)
        lines = source.splitlines(keepends=True)
        self.line_starts = [0]
        for line in lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.edits: list[tuple[int, int, bytes]] = []
        self.rewritten: dict[str, str] = {}  # old module -> new, as the user will be told
        self.in_strings: list[tuple[int, str]] = []  # (line, old module) left to the user

    def offset(self, line: int, column: int) -> int:
        return self.line_starts[line - 1] + column  # ast columns count UTF-8 bytes

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def note(self, name: str) -> None:
        for old, new in self.moved.items():
            if name == old or name.startswith(f"{old}."):
                self.rewritten[old] = new

    def anchor(self, level: int) -> list[str] | None:
        """The package `from .` (level 1), `from ..` (2)... means in this file."""
        if level == 0:
            return []
        if level - 1 >= len(self.package):
            return None
        return self.package[: len(self.package) - (level - 1)]

    def spelled(self, name: str, level: int) -> str:
        """NAME as this import spells it: relative from the same anchor when it is inside."""
        anchor = self.anchor(level)
        if level and anchor:
            prefix = ".".join(anchor)
            if name.startswith(f"{prefix}."):
                return "." * level + name[len(prefix) + 1 :]
        return name

    def visit(self, tree: ast.Module) -> None:
        chains: dict[str, str] = {}  # `import tests.outage` binds `tests`: rewrite tests.outage.X
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                self.import_from(node)
            elif isinstance(node, ast.Import):
                self.import_(node, chains)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                self.string(node.value, node.lineno)
        if chains:
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and (name := dotted(node)) in chains:
                    start, end = self.span(node)
                    self.edits.append((start, end, chains[name].encode()))

    def import_from(self, node: ast.ImportFrom) -> None:
        anchor = self.anchor(node.level)
        if anchor is None:
            return
        base = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
        start, end = self.span(node)
        statement = self.source[start:end]
        match = self.FROM_MODULE.match(statement)
        if match is None:
            return
        module_start, module_end = start + match.start("module"), start + match.end("module")
        spelled_module = re.sub(rb"[\s\\]+", b"", match["module"]).decode()
        if base in self.split:
            self.split_from(node, base, spelled_module)
            return
        target = moved_to(base, self.moved) if base else None
        if target:  # from tests.outage import X / from .outage import X
            self.note(base)
            new = self.spelled(target, node.level)
            self.edits.append((module_start, module_end, f" {new} ".encode()))
            return
        # from tests import outage / from . import outage: the module is one of the names
        kept: list[ast.alias] = []
        groups: dict[str, list[str]] = {}  # new `from` -> the names imported from it
        renamed = False
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            if full in self.split:
                self.as_modules.append((node.lineno, full))
            target = moved_to(full, self.moved) if alias.name != "*" else None
            parent, _, last = (target or "").rpartition(".")
            if target is None or not parent:
                kept.append(alias)
                continue
            self.note(full)
            renamed |= last != alias.name
            bound = alias.asname or alias.name
            groups.setdefault(self.spelled(parent, node.level), []).append(
                last if bound == last else f"{last} as {bound}"
            )
        if not groups:
            return
        if not kept and len(groups) == 1 and not renamed:  # only the `from` part changes
            (new,) = groups
            self.edits.append((module_start, module_end, f" {new} ".encode()))
            return
        statements = [f"from {spelled_module} import {names(kept)}"] if kept else []
        statements += [f"from {parent} import {', '.join(n)}" for parent, n in groups.items()]
        self.edits.append((start, end, self.joined(node, statements)))

    def split_from(self, node: ast.ImportFrom, base: str, spelled_module: str) -> None:
        """from pkg.trades import A, B -> from pkg.trades.schemas import A / ...service import B"""
        homes = self.split[base]
        kept: list[ast.alias] = []
        groups: dict[str, list[str]] = {}  # new module -> the names imported from it
        for alias in node.names:
            home = homes.get(alias.name)
            if home is None:  # a submodule of the new package, or a name it lacks: as it was
                kept.append(alias)
                continue
            groups.setdefault(home, []).append(names([alias]))
        if not groups:
            return
        self.rewritten[base] = " and ".join(groups)
        statements = [f"from {spelled_module} import {names(kept)}"] if kept else []
        statements += [
            f"from {self.spelled(home, node.level)} import {', '.join(imported)}"
            for home, imported in groups.items()
        ]
        self.edits.append((*self.span(node), self.joined(node, statements)))

    def import_(self, node: ast.Import, chains: dict[str, str]) -> None:
        self.as_modules += [(node.lineno, a.name) for a in node.names if a.name in self.split]
        targets = [moved_to(alias.name, self.moved) for alias in node.names]
        if not any(targets):
            return
        spelled = []
        for alias, target in zip(node.names, targets, strict=True):
            if target:
                self.note(alias.name)
                if alias.asname is None:
                    chains[alias.name] = target
            name = target or alias.name
            spelled.append(f"{name} as {alias.asname}" if alias.asname else name)
        start, end = self.span(node)
        self.edits.append((start, end, f"import {', '.join(spelled)}".encode()))

    def string(self, value: str, line: int) -> None:
        for old in self.moved:
            path = old.replace(".", "/")
            pattern = rf"(?<![\w.]){re.escape(old)}(?!\w)|(?<![\w/]){re.escape(path)}\.py"
            if re.search(pattern, value):
                self.in_strings.append((line, old))

    def joined(self, node: ast.stmt, statements: list[str]) -> bytes:
        """Several statements where one was: own lines at its indent, else `; `."""
        line_start = self.line_starts[node.lineno - 1]
        indent = self.source[line_start : self.offset(node.lineno, node.col_offset)]
        separator = b"\n" + indent if not indent.strip() else b"; "
        return separator.join(statement.encode() for statement in statements)

    def apply(self) -> bytes:
        result = self.source
        for start, end, text in sorted(set(self.edits), reverse=True):
            result = result[:start] + text + result[end:]
        return result


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def names(aliases: list[ast.alias]) -> str:
    return ", ".join(f"{a.name} as {a.asname}" if a.asname else a.name for a in aliases)


def follow_imports(
    moved: dict[str, str],
    split: dict[str, dict[str, str]] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Point the project's imports of the moved (or split) modules at their new place; name
    the files. Files under the `skip` directories (a split's new package) are the template's."""
    split = split or {}
    words = [
        re.compile(rf"\b{re.escape(old.rpartition('.')[2])}\b".encode()) for old in [*moved, *split]
    ]
    for path in python_files():
        if path.startswith(skip):
            continue
        source = Path(path).read_bytes()
        if not any(word.search(source) for word in words):
            continue  # cannot mention a moved module: skip the parse
        try:
            tree = ast.parse(source, filename=path)
        except (SyntaxError, ValueError) as error:
            say(f"{path}: not checked for imports of {', '.join([*moved, *split])} (it does "
                f"not parse: {error}); check it yourself")  # fmt: skip
            continue
        rewrite = ImportRewrite(path, source, moved, split)
        rewrite.visit(tree)
        if rewrite.edits:
            Path(path).write_bytes(rewrite.apply())
            for old, new in rewrite.rewritten.items():
                say(f"{path}: imports of {old} now point to {new}")
        for line, old in rewrite.in_strings:
            say(f"{path}:{line}: mentions {old} in a string, which is not rewritten: it is "
                f"{moved[old]} now, change it yourself")  # fmt: skip
        for line, old in rewrite.as_modules:
            say(f"{path}:{line}: imports {old} as a module, which is now a package of "
                f"{', '.join(sorted(set(split[old].values())))}: import from those")  # fmt: skip


def moved_list() -> Path:
    return Path(git("rev-parse", "--git-path", MOVED_LIST).decode().strip())


def record_moved(paths: list[str]) -> None:
    """Tell `report-deleted` that these old paths went on purpose (their edits moved along)."""
    head = git("rev-parse", "HEAD").decode().strip()
    listed = moved_list()
    lines = listed.read_text(encoding="utf-8").splitlines() if listed.is_file() else []
    if lines[:1] != [head]:  # left over from an update of another commit: stale
        lines = [head]
    listed.write_text("\n".join([*lines, *paths]) + "\n", encoding="utf-8")


def take_moved() -> set[str]:
    listed = moved_list()
    if not listed.is_file():
        return set()
    lines = listed.read_text(encoding="utf-8").splitlines()
    listed.unlink()
    return set(lines[1:]) if lines[:1] == [git("rev-parse", "HEAD").decode().strip()] else set()


def move(template: str, version_from: str, pairs: list[str]) -> None:
    if len(pairs) % 2:
        raise SystemExit("migrate: move takes OLD NEW pairs")
    moved = {}
    with tempfile.TemporaryDirectory() as scratch:
        old_render = render_old_version(template, version_from, Path(scratch) / "old")
        for old, new in zip(pairs[::2], pairs[1::2], strict=True):
            if move_one(old, new, old_render):
                record_moved([old])
                old_module, new_module = module_name(old), module_name(new)
                if old_module and new_module:
                    moved[old_module] = new_module
    if moved:
        follow_imports(moved)


# --- split ------------------------------------------------------------------------------
def definitions(source: bytes) -> tuple[dict[str, bytes], bytes]:
    """A module's top-level definitions by name (their lines, decorators and the comments just
    above included), and what is left: its imports, docstring and other statements."""
    lines = source.splitlines(keepends=True)
    found: dict[str, tuple[int, int]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = node.name
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            name = target.id if isinstance(target, ast.Name) else ""
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        else:
            continue
        if not name:
            continue
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)]) - 1
        while start > 0 and lines[start - 1].lstrip().startswith(b"#"):
            start -= 1
        found[name] = (start, node.end_lineno or node.lineno)
    taken = {i for start, end in found.values() for i in range(start, end)}
    rest = b"".join(line for i, line in enumerate(lines) if i not in taken and line.strip())
    return {name: b"".join(lines[start:end]) for name, (start, end) in found.items()}, rest


def carry_edits(old: str, homes: dict[str, str], files: dict[str, str], old_render: Path) -> bool:
    """Merge each definition the user changed in OLD into its new module (`homes`: name ->
    module, `files`: module -> path); True when every edit found a place (nothing of OLD is
    left for the user to carry by hand)."""
    ours, base_path = committed(old), old_render / old
    if ours is None or not base_path.is_file() or ours == base_path.read_bytes():
        return True  # deleted, not generated before, or unchanged: nothing to carry
    try:
        mine, mine_rest = definitions(ours)
        base, base_rest = definitions(base_path.read_bytes())
    except SyntaxError:
        say(f"{old}: your version does not parse, so none of its edits were carried")
        return False
    everything = True
    by_module: dict[str, list[str]] = {}
    for name, text in mine.items():
        if text == base.get(name):
            continue
        home = homes.get(name)
        if home is None:
            say(f"{old}: your {name} has no place in the new package: carry it by hand")
            everything = False
        else:
            by_module.setdefault(home, []).append(name)
    if mine_rest != base_rest:
        say(f"{old}: your edits outside its definitions (imports, say) were not carried")
        everything = False
    for home, names in by_module.items():
        path = files[home]
        before = Path(path).read_bytes()
        result, conflicted = before, False
        for name in names:
            theirs = definitions(result)[0][name]
            merged, clash = merge3(mine[name], base.get(name, b""), theirs, path)
            result = result.replace(theirs, merged, 1)
            conflicted |= clash
        Path(path).write_bytes(result)
        if conflicted:
            mark_unmerged(path, before, result, before)
            say(f"{path}: your edits of {', '.join(names)} conflict with the template's, "
                "resolve them there")  # fmt: skip
        else:
            say(f"{path}: your edits of {', '.join(names)} carried over from {old}")
    return everything


def split(template: str, version_from: str, pairs: list[str]) -> None:
    if len(pairs) % 2:
        raise SystemExit("migrate: split takes OLD NEWDIR pairs")
    splits: dict[str, dict[str, str]] = {}
    packages: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        old_render: Path | None = None
        for old, new in zip(pairs[::2], pairs[1::2], strict=True):
            old_module = module_name(old)
            if old_module is None or not Path(new, "__init__.py").is_file():
                continue  # not generated for these answers
            homes: dict[str, str] = {}  # name -> the module that defines it now
            files: dict[str, str] = {}  # module -> its path
            for module in sorted(Path(new).glob("*.py")):
                home = module_name(module.as_posix())
                if home and module.name != "__init__.py":
                    homes.update(dict.fromkeys(definitions(module.read_bytes())[0], home))
                    files[home] = module.as_posix()
            splits[old_module] = homes
            packages.append(f"{new.rstrip('/')}/")
            for leftover in (Path(old), Path(f"{old}.rej")):
                if leftover.exists():
                    leftover.unlink()
            say(f"{old} is now the package {new}: {', '.join(sorted(set(homes.values())))}")
            if committed(old) is None:
                continue
            if old_render is None:
                old_render = render_old_version(template, version_from, Path(scratch) / "old")
            if carry_edits(old, homes, files, old_render):
                record_moved([old])  # its edits moved along: report-deleted stays quiet
    if splits:
        follow_imports({}, splits, skip=tuple(packages))


# --- report-deleted -----------------------------------------------------------------------
def deleted_by_update() -> list[str]:
    """Files of the last commit that are gone from the work tree (the update needs a clean one,
    so the update deleted them), except those `move` carried elsewhere."""
    listed = git("ls-tree", "-r", "-z", "--name-only", "HEAD").decode().split("\0")
    moved = take_moved()
    return [
        path for path in listed
        if path and path not in moved and not os.path.lexists(path)
    ]  # fmt: skip


def report_deleted(template: str, version_from: str) -> None:
    deleted = deleted_by_update()
    if not deleted:
        return  # the usual case: no render needed
    edited: list[str] = []
    untouched: list[str] = []
    changed = "you had changed"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            old_render = render_old_version(template, version_from, Path(scratch) / "old")
        except Exception as error:  # whatever failed, warn about every deleted file instead
            say(f"could not render {version_from} to tell which deleted files you had changed "
                f"({type(error).__name__}: {error})")  # fmt: skip
            edited, changed = deleted, "that may have had your edits"
        else:
            for path in deleted:
                generated = old_render / path
                same = generated.is_file() and generated.read_bytes() == committed(path)
                (untouched if same else edited).append(path)
    if edited:
        say(f"the update deleted {files(len(edited))} {changed} (the template no longer "
            "generates them for these answers); your version is in the last commit:")  # fmt: skip
        for path in edited:
            say(f"  {path}: to get it back, git checkout HEAD -- {shlex.quote(path)}")
    if untouched:
        say(f"the update deleted {files(len(untouched), more=bool(edited))} the template no "
            "longer generates for these answers; you had not changed them")  # fmt: skip


# --- report-conflicts ---------------------------------------------------------------------
def report_conflicts() -> None:
    unmerged = git("diff", "--name-only", "--diff-filter=U").decode().split()
    rejected = git("ls-files", "--others", "--exclude-standard", "*.rej").decode().split()
    if not unmerged and not rejected:
        return
    say("the update needs you in these files:")
    for path in unmerged:
        say(f"  {path}: conflict markers between <<<<<<< {OURS_LABEL} and >>>>>>> {THEIRS_LABEL}")
    for path in rejected:
        say(f"  {path}: hunks that did not apply")
    say("keep what you need, delete the markers, `git add` the files, run the tests, commit.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    rename = steps.add_parser("rename-answer")
    rename.add_argument("old")
    rename.add_argument("new")
    moves = steps.add_parser("move")
    moves.add_argument("--template", required=True, help="the template source (a git repository)")
    moves.add_argument("--from-version", required=True, help="the release the project was on")
    moves.add_argument("pairs", nargs="+", metavar="OLD NEW")
    splits = steps.add_parser("split")
    splits.add_argument("--template", required=True, help="the template source (a git repository)")
    splits.add_argument("--from-version", required=True, help="the release the project was on")
    splits.add_argument("pairs", nargs="+", metavar="OLD NEWDIR")
    deleted = steps.add_parser("report-deleted")
    deleted.add_argument("--template", required=True, help="the template source (a git repository)")
    deleted.add_argument("--from-version", required=True, help="the release the project was on")
    steps.add_parser("report-conflicts")
    args = parser.parse_args()
    if args.step == "rename-answer":
        rename_answer(args.old, args.new)
    elif args.step == "move":
        move(args.template, args.from_version, args.pairs)
    elif args.step == "split":
        split(args.template, args.from_version, args.pairs)
    elif args.step == "report-deleted":
        report_deleted(args.template, args.from_version)
    else:
        report_conflicts()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
