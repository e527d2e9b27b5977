"""`copier update` on real generated projects, across the template's real releases.

Each test clones this repository (plus any uncommitted work, so local runs test local edits)
and rebuilds its release tags from CHANGELOG.md: a release is the commit that adds its dated
`## [X.Y.Z] - YYYY-MM-DD` heading; a `## [X.Y.Z] - unreleased` heading makes HEAD that version.
So the tests need no fetched tags, and a migration is tested before its release is tagged.

- A project generated at the first release, with the edits users make, updated to HEAD: the
  edits survive, the template's changes arrive, its own tests pass (several variants).
- Each `_migrations` step of copier.yml (hooks/migrate.py), including a conflict in a moved file
  and the user's imports of a moved module (rewritten, or named when in a string).
- A real conflict is left inline and reported; changing an answer adds and removes files, and
  names each deleted file the user had changed, with the command that gets it back.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import variants as V
from conftest import (
    HARNESS_REQUIREMENTS,
    REPO_ROOT,
    SharedVenvs,
    build_venv,
    project_requirements,
    require_interpreter,
)
from copier import run_copy
from harness.suites import run_suite
from harness.updates import (
    Template,
    commit_all,
    edit,
    generate,
    git,
    import_error,
    known_at_first,
    recorded_answers,
    unmerged,
    update,
)

#: Variants updated from the first release: every flavor (and graph store), queue and cache.
UPDATE_VARIANTS = [
    next(v for v in V.covering_set() if v.flavor == flavor and v.queue.startswith(queue))
    for flavor, queue in (
        ("fintech", "arq"),
        ("graph_rag_sql", "celery"),
        ("graph_rag_memgraph", "none"),
    )
]
VARIANT = next(v for v in V.covering_set() if v.python == "3.11")


# ---------------------------------------------------------------------------------------------
# From the first release to HEAD, with a user's edits
# ---------------------------------------------------------------------------------------------
GREETINGS = '''"""A feature the user added after generating the project."""

from fastapi import APIRouter

router = APIRouter()


@router.get("/api/greetings", summary="Say hello")
async def greet() -> dict[str, str]:
    return {"hello": "world"}
'''


@pytest.mark.generated
@pytest.mark.parametrize("variant", UPDATE_VARIANTS, ids=lambda v: v.id)
def test_update_from_the_first_release_keeps_edits_and_brings_changes(
    variant: V.Variant, template: Template, tmp_path: Path, shared_venv: SharedVenvs
) -> None:
    project = tmp_path / "project"
    answers = variant.answers()
    generate(template, project, answers, template.first)
    package = project / "src" / answers["package_name"]

    # The user's edits: a new endpoint module wired in, a changed setting default, an edited
    # README section, an edited test helper (moved by the template since), and an optional
    # file they do not want.
    (package / "greetings.py").write_text(GREETINGS)
    edit(package / "app.py", "    for router in feature_routers():\n", (
        "    from .greetings import router as greetings\n\n"
        "    app.include_router(greetings)\n"
        "    for router in feature_routers():\n"
    ))  # fmt: skip
    edit(package / "settings.py", "gzip_minimum_size: int = Field(default=1000", (
        "gzip_minimum_size: int = Field(default=2000"
    ))  # fmt: skip
    readme = project / "README.md"
    edit(readme, "## Commands\n", "## Commands\n\nOur on-call runbook links here.\n")
    edit(project / "tests" / "quotes.py", "class Quote(BaseModel):\n", (
        "class Quote(BaseModel):\n    # Prices as the exchange sends them.\n"
    ))  # fmt: skip
    (project / "compose.yaml").unlink()
    commit_all(project, "user edits")

    update(project, data=answers, vcs_ref="HEAD")

    assert not unmerged(project), git(project, "diff")
    # The user's edits survived...
    assert (package / "greetings.py").read_text() == GREETINGS
    assert "app.include_router(greetings)" in (package / "app.py").read_text()
    settings = (package / "settings.py").read_text()
    assert "gzip_minimum_size: int = Field(default=2000" in settings
    assert "Our on-call runbook links here." in readme.read_text()
    assert not (project / "compose.yaml").exists(), "a file the user deleted came back"
    moved = project / "tests" / "support" / "quotes.py"
    assert "# Prices as the exchange sends them." in moved.read_text(), "edit lost in the move"
    assert not (project / "tests" / "quotes.py").exists()
    # ...and the template's changes arrived: the release's answers, files and README.
    recorded = recorded_answers(project)
    assert recorded["_commit"].startswith(template.latest), recorded["_commit"]
    assert "lock_dependencies" in recorded
    assert "uv_lock" not in recorded
    assert (project / "tests" / "support" / "outage.py").is_file()
    assert f"version {recorded['_commit']}" in readme.read_text()
    for text in (settings, readme.read_text()):
        assert not re.search(r"^<<<<<<< ", text, re.MULTILINE)

    # What the CHANGELOG asks of the user: 0.3.0's suite wants every route authenticated or
    # declared public, and the greeting is public.
    edit(package / "greetings.py", '@router.get("/api/greetings", summary="Say hello")', (
        '@router.get("/api/greetings", summary="Say hello", openapi_extra={"x-public": True})'
    ))  # fmt: skip

    # The updated project still passes its own tests.
    run_suite(project, shared_venv(variant.python), {}, f"{variant.id} after update")


# ---------------------------------------------------------------------------------------------
# Each migration step
# ---------------------------------------------------------------------------------------------
def test_renamed_answer_keeps_its_value(template: Template, tmp_path: Path) -> None:
    """0.2.0: `uv_lock` became `lock_dependencies`; a project's `true` stays `true`."""
    project = tmp_path / "project"
    answers = {**known_at_first(VARIANT.answers()), "uv_lock": True}
    # No tasks: `uv lock` itself is not under test, only the recorded answer.
    run_copy(str(template.root), project, data=answers, vcs_ref=template.first, defaults=True,
             unsafe=True, quiet=True, skip_tasks=True)  # fmt: skip
    git(project, "init", "--quiet")
    commit_all(project, "generated")
    assert recorded_answers(project)["uv_lock"] is True

    update(project, vcs_ref="HEAD")

    recorded = recorded_answers(project)
    assert recorded["lock_dependencies"] is True, "the user's answer fell back to the default"
    assert "uv_lock" not in recorded


MOVED_HELPERS = ["outage.py", "quotes.py", "job_handlers.py"]


def test_moved_files_keep_edits_and_deletions(
    template: Template, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """0.2.0: test helpers moved to tests/support/: edited, untouched and deleted ones."""
    project = tmp_path / "project"
    generate(template, project, VARIANT.answers(), template.first)
    tests = project / "tests"
    (tests / "outage.py").write_text((tests / "outage.py").read_text() + "\n# Our note.\n")
    (tests / "job_handlers.py").unlink()
    git(project, "commit", "--quiet", "--all", "-m", "user edits")

    update(project, data=VARIANT.answers(), vcs_ref="HEAD")

    support = tests / "support"
    for name in MOVED_HELPERS:
        assert not (tests / name).exists(), f"tests/{name} stayed at its old place"
    assert (support / "outage.py").read_text().endswith("\n# Our note.\n")
    rendered = (template.root / "template" / "tests" / "support" / "quotes.py.jinja").read_text()
    assert (support / "quotes.py").read_text().startswith(rendered.split("{{")[0])
    assert not (support / "job_handlers.py").exists(), "a file the user deleted came back"
    assert not unmerged(project)
    # A moved file's edits went along: it is not reported as deleted with them.
    assert "git checkout HEAD -- tests/outage.py" not in capfd.readouterr().err


def test_a_conflict_in_a_moved_file_is_inline_and_reported(
    template: Template, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    generate(template, project, VARIANT.answers(), template.first)
    edit(project / "tests" / "quotes.py", "    symbol: str\n", "    symbol: str  # ticker\n")
    git(project, "commit", "--quiet", "--all", "-m", "user edit")
    helper = template.root / "template" / "tests" / "support" / "quotes.py.jinja"
    edit(helper, "    symbol: str\n", "    symbol: str  # ISIN or ticker\n")
    template.release("99.0.0")

    update(project, data=VARIANT.answers(), vcs_ref="99.0.0")

    text = (project / "tests" / "support" / "quotes.py").read_text()
    assert "<<<<<<< before updating\n    symbol: str  # ticker\n" in text
    assert "    symbol: str  # ISIN or ticker\n>>>>>>> after updating" in text
    assert unmerged(project) == ["tests/support/quotes.py"]
    assert "tests/support/quotes.py: conflict markers" in capfd.readouterr().err


GRAPH_RAG_0_2_0 = next(v for v in V.covering_set() if v.id == "graph_rag-noqueue-nocache-ecs-py311")
USER_REINDEX = '''"""Our reindex helper, written against 0.2.0's search package."""

from {package}.search.embed import embedder_for
from {package}.search.ingest import DocumentIn, Ingestor
from {package}.search.jobs import embed_documents
from {package}.search.search import SearchEngine, SearchResult

from .search import vectors
from .search.models import Document

__all__ = [
    "Document",
    "DocumentIn",
    "Ingestor",
    "SearchEngine",
    "SearchResult",
    "embed_documents",
    "embedder_for",
    "vectors",
]
'''


def test_graph_rag_moves_to_its_own_package_with_the_users_edits(
    template: Template, tmp_path: Path, shared_venv: SharedVenvs, capfd: pytest.CaptureFixture[str]
) -> None:
    """0.3.0: graph_rag's search/ package is graph_rag/ (search/jobs.py is embed_job.py;
    search/ingest.py and search/search.py the packages graph_rag/ingest/ and
    graph_rag/search/): a project on 0.2.0 keeps its edits of a moved module and of a split
    one, and its imports follow."""
    assert "0.2.0" in template.versions
    variant = GRAPH_RAG_0_2_0
    project = tmp_path / "project"
    generate(template, project, variant.answers(), "0.2.0")
    package = project / "src" / variant.package_name
    edit(package / "search" / "graph.py", "CHUNK = 2000\n", "CHUNK = 500  # small statements\n")
    edit(
        package / "search" / "search.py",
        "MAX_QUERY = 500\n",
        "MAX_QUERY = 800  # pasted paragraphs\n",
    )
    (package / "reindex.py").write_text(USER_REINDEX.format(package=variant.package_name))
    commit_all(project, "user edits")

    capfd.readouterr()

    update(project, data=variant.answers(), vcs_ref="HEAD")

    err = capfd.readouterr().err
    assert not unmerged(project), git(project, "diff")
    assert not list((package / "search").glob("*.py")), "search/ kept a module"
    moved = (package / "graph_rag" / "graph.py").read_text()
    assert "CHUNK = 500  # small statements\n" in moved
    assert "class SqlGraphStore" in moved
    # search/search.py is split: its edited constant lives in graph_rag/search/schemas.py now.
    schemas = (package / "graph_rag" / "search" / "schemas.py").read_text()
    assert "MAX_QUERY = 800  # pasted paragraphs\n" in schemas
    assert "search/search.py: to get it back" not in err, err  # every edit found its place
    assert (package / "graph_rag" / "embed_job.py").is_file()
    reindex = (package / "reindex.py").read_text()
    for line in (
        f"from {variant.package_name}.graph_rag.embed import embedder_for",
        f"from {variant.package_name}.graph_rag.embed_job import embed_documents",
        # search/ingest.py is the package graph_rag/ingest/: each name from its module.
        f"from {variant.package_name}.graph_rag.ingest.schemas import DocumentIn",
        f"from {variant.package_name}.graph_rag.ingest.service import Ingestor",
        f"from {variant.package_name}.graph_rag.search.schemas import SearchResult",
        f"from {variant.package_name}.graph_rag.search.service import SearchEngine",
        "from .graph_rag import vectors",
        "from .graph_rag.models import Document",
    ):
        assert line in reindex, reindex
    venv = shared_venv(variant.python)
    assert import_error(project, venv, f"{variant.package_name}.reindex") is None


FINTECH_0_2_0 = next(v for v in V.covering_set() if v.id == "fintech-arq-redis-noscale-py311")
USER_TRADE_TOOL = '''"""A tool of the user's, written against 0.2.0's fintech/trades.py."""

from {package}.fintech.reports import ReportStatus, build_report
from {package}.fintech.trades import TradeRequest, lock_portfolio

from .fintech import trades
from .fintech.trades import TradeView as View, book_trade

TOOLS = (TradeRequest, lock_portfolio, View, book_trade, trades, ReportStatus, build_report)
'''


HOUSE_RULE = """

def house_rule(quantity: Decimal) -> bool:
    return quantity <= 1000
"""


def test_fintech_trades_splits_into_a_package_and_imports_follow_each_name(
    template: Template, tmp_path: Path, shared_venv: SharedVenvs, capfd: pytest.CaptureFixture[str]
) -> None:
    """0.3.0: fintech/trades.py is the package trades/ (router, schemas, service, repository),
    as is reports.py: a project on 0.2.0 keeps its edits of the old module's definitions, each
    in the module that defines it now; imports each name from there; and is told of what it
    must carry itself (a function of its own, an import of the old module as a whole)."""
    variant = FINTECH_0_2_0
    project = tmp_path / "project"
    generate(template, project, variant.answers(), "0.2.0")
    package = project / "src" / variant.package_name
    old = f"src/{variant.package_name}/fintech/trades.py"
    edit(project / old, 'tags=["trades"])', 'tags=["trades", "orders"])')
    edit(
        project / old,
        "    query = select(Portfolio).where(Portfolio.user_id == user_id)\n",
        "    # Our auditors read this lock.\n"
        "    query = select(Portfolio).where(Portfolio.user_id == user_id)\n",
    )
    with (project / old).open("a") as trades_module:
        trades_module.write(HOUSE_RULE)
    tool = package / "trade_tool.py"
    tool.write_text(USER_TRADE_TOOL.format(package=variant.package_name))
    commit_all(project, "user edits")
    capfd.readouterr()

    update(project, data=variant.answers(), vcs_ref="HEAD")

    err = capfd.readouterr().err
    assert not unmerged(project), git(project, "diff")
    assert not (project / old).exists()
    assert (package / "fintech" / "trades" / "service.py").is_file()
    text = tool.read_text()
    trades = f"{variant.package_name}.fintech.trades"
    for line in (
        f"from {trades}.schemas import TradeRequest\n",
        f"from {trades}.repository import lock_portfolio\n",
        "from .fintech.trades.schemas import TradeView as View\n",
        "from .fintech.trades.service import book_trade\n",
        "from .fintech import trades\n",  # named, not rewritten
        f"from {variant.package_name}.fintech.reports.schemas import ReportStatus\n",
        f"from {variant.package_name}.fintech.reports.service import build_report\n",
    ):
        assert line in text, text
    assert f"trade_tool.py:6: imports {trades} as a module" in err, err
    new = package / "fintech" / "trades"
    assert 'tags=["trades", "orders"])' in (new / "router.py").read_text()
    repository = (new / "repository.py").read_text()
    assert "    # Our auditors read this lock.\n    query = select(Portfolio)" in repository
    assert "house_rule" not in "".join(p.read_text() for p in new.glob("*.py"))
    assert f"{old}: your house_rule has no place in the new package" in err, err
    assert f"git checkout HEAD -- {old}" in err, err  # the whole module: in the last commit
    venv = shared_venv(variant.python)
    assert import_error(project, venv, f"{variant.package_name}.trade_tool") is None


USER_HELPER_TEST = '''"""Our tests of a helper, written against 0.1.0's tests/outage.py."""

import tests.outage
from tests import outage as absolute_module
from tests.outage import CuttableProxy

from . import outage
from .outage import CuttableProxy as RelativeProxy


def test_one_helper() -> None:
    assert CuttableProxy is RelativeProxy is outage.CuttableProxy
    assert absolute_module is outage
    assert tests.outage.CuttableProxy is CuttableProxy
'''
STRING_IMPORT = '''"""Imports the helper by name: no rewrite can be sure of that."""

import importlib

quotes = importlib.import_module("tests.quotes")
'''


def test_moved_modules_are_imported_from_their_new_place(
    template: Template, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """0.2.0 moved tests/outage.py to tests/support/: the user's imports of it follow."""
    project = tmp_path / "project"
    generate(template, project, VARIANT.answers(), template.first)
    mine = project / "tests" / "test_our_helpers.py"
    mine.write_text(USER_HELPER_TEST)
    (project / "tests" / "by_name.py").write_text(STRING_IMPORT)
    commit_all(project, "user tests")
    capfd.readouterr()

    update(project, data=VARIANT.answers(), vcs_ref="HEAD")

    err = capfd.readouterr().err
    text = mine.read_text()
    assert "import tests.support.outage\n" in text
    assert "from tests.support import outage as absolute_module\n" in text
    assert "from tests.support.outage import CuttableProxy\n" in text
    assert "from .support import outage\n" in text
    assert "from .support.outage import CuttableProxy as RelativeProxy\n" in text
    assert "tests.support.outage.CuttableProxy is CuttableProxy" in text
    assert "tests/test_our_helpers.py: imports of tests.outage now" in err, err
    # A string import is named, not rewritten.
    assert "tests/by_name.py" in err, err
    assert '"tests.quotes"' in (project / "tests" / "by_name.py").read_text()
    # The rewritten module imports and its test passes (the helper needs only the stdlib).
    check = subprocess.run(
        [sys.executable, "-c", "import tests.test_our_helpers as m; m.test_one_helper()"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert not unmerged(project)


# ---------------------------------------------------------------------------------------------
# Conflicts and answer changes at HEAD
# ---------------------------------------------------------------------------------------------
def test_a_real_conflict_is_left_inline_and_reported(
    template: Template, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    answers = VARIANT.answers()
    generate(template, project, answers, "HEAD")
    settings = project / "src" / answers["package_name"] / "settings.py"
    # The user and the template both change the same line.
    edit(settings, "db_retry_after_seconds: int = Field(default=5", (
        "db_retry_after_seconds: int = Field(default=15"
    ))  # fmt: skip
    git(project, "commit", "--quiet", "--all", "-m", "user: longer retry")
    edit(
        template.root / "template" / "src" / "{{ package_name }}" / "settings.py.jinja",
        "db_retry_after_seconds: int = Field(default=5",
        "db_retry_after_seconds: int = Field(default=7",
    )
    template.release("99.0.0")

    update(project, vcs_ref="99.0.0")

    text = settings.read_text()
    assert "<<<<<<< before updating" in text
    assert "default=15" in text
    assert "default=7" in text
    assert ">>>>>>> after updating" in text
    relative = settings.relative_to(project).as_posix()
    assert unmerged(project) == [relative]  # git reports it unmerged...
    assert f"{relative}: conflict markers" in capfd.readouterr().err  # ...and so does the update


K8S = ["deploy/kubernetes/hpa.yaml", "tests/test_deploy.py"]
# The app starts, answers and reports its health with the new answer's code and dependencies.
STARTS = ["tests/test_app.py", "tests/test_health.py"]
ANSWER_CHANGES = [
    # question, before, after, paths that must appear, paths that must disappear, and the
    # project's tests that then run (those of what the answer changes: the full suite runs for
    # every variant in test_generated.py)
    ("cache", "memory", "redis", ["src/PKG/cache/redis.py", "tests/test_cache_outage.py"], [],
     [*STARTS, "tests/test_cache.py", "tests/test_cache_outage.py", "tests/test_ratelimit.py"]),
    ("queue_backend", "none", "arq", ["src/PKG/jobs/arq_worker.py"], [],
     [*STARTS, "tests/test_jobs.py", "tests/test_cli.py"]),
    ("queue_backend", "celery", "arq", ["src/PKG/jobs/arq_worker.py"],
     ["src/PKG/jobs/celery_app.py"], []),
    ("autoscaling", "none", "kubernetes", K8S, [], [*STARTS, "tests/test_deploy.py"]),
    ("autoscaling", "kubernetes", "none", [], ["deploy", *K8S], []),
]  # fmt: skip


@pytest.mark.generated
@pytest.mark.parametrize(
    ("question", "before", "after", "appear", "disappear", "suite"),
    ANSWER_CHANGES,
    ids=[f"{q}-{b}-to-{a}" for q, b, a, *_ in ANSWER_CHANGES],
)
def test_changing_an_answer_adds_and_removes_the_right_files(
    template: Template,
    tmp_path: Path,
    question: str,
    before: str,
    after: str,
    appear: list[str],
    disappear: list[str],
    suite: list[str],
) -> None:
    project = tmp_path / "project"
    answers = {**VARIANT.answers(), "queue_backend": "none", question: before}
    if answers["queue_backend"] != "celery":
        answers.pop("celery_broker", None)
    generate(template, project, answers, "HEAD")
    package = answers["package_name"]

    # Same template version (what `--vcs-ref=:current:` selects on the command line), one
    # answer changed.
    update(project, data={question: after}, vcs_ref="HEAD")

    recorded = recorded_answers(project)
    assert recorded[question] == after
    for path in appear:
        assert (project / path.replace("PKG", package)).exists(), f"{path} was not added"
    for path in disappear:
        assert not (project / path.replace("PKG", package)).exists(), f"{path} was not removed"
    assert not unmerged(project)

    if suite:  # the project's own tests pass with the dependencies the new answer brings
        interpreter = require_interpreter(VARIANT.python)
        requirements = [*project_requirements(project), *HARNESS_REQUIREMENTS]
        venv = build_venv(interpreter, requirements, f"answers-{question}-{after}")
        run_suite(project, venv, {}, f"after {question}={after}", paths=suite)


DROPPING_CHANGES = [
    # question, before, after, the file the user edits, a file they leave as generated
    ("autoscaling", "kubernetes", "ecs",
     "deploy/kubernetes/hpa.yaml", "deploy/kubernetes/api.yaml"),
    ("queue_backend", "celery", "arq", "src/PKG/jobs/celery_app.py", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("question", "before", "after", "edited", "untouched"),
    DROPPING_CHANGES,
    ids=[f"{q}-{b}-to-{a}" for q, b, a, *_ in DROPPING_CHANGES],
)
def test_an_answer_change_names_the_edited_files_it_deletes(
    template: Template,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    question: str,
    before: str,
    after: str,
    edited: str,
    untouched: str | None,
) -> None:
    project = tmp_path / "project"
    answers = {**VARIANT.answers(), "queue_backend": "none", question: before}
    if answers["queue_backend"] == "celery":
        answers["celery_broker"] = "redis"
    generate(template, project, answers, "HEAD")
    edited = edited.replace("PKG", answers["package_name"])
    ours = (project / edited).read_text() + "\n# Our tuning, not the template's.\n"
    (project / edited).write_text(ours)
    if untouched:
        assert (project / untouched).is_file()
    git(project, "commit", "--quiet", "--all", "-m", "user edit")
    capfd.readouterr()

    update(project, data={question: after}, vcs_ref="HEAD")

    err = capfd.readouterr().err
    assert not (project / edited).exists(), f"{edited} was not deleted"
    assert edited in err, err
    assert f"git checkout HEAD -- {edited}" in err, err
    if untouched:
        assert not (project / untouched).exists(), f"{untouched} was not deleted"
        assert untouched not in err, f"an untouched file got a warning:\n{err}"
    # The hint works: the user's version comes back.
    git(project, "checkout", "HEAD", "--", edited)
    assert (project / edited).read_text() == ours


def _migrate_module() -> Any:
    spec = importlib.util.spec_from_file_location("migrate", REPO_ROOT / "hooks" / "migrate.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BEFORE_THE_MOVE = '''"""Mentions tests.outage in a docstring: not reported."""
import os, tests.outage
import tests.quotes as q
from tests import outage, conftest as c
from . import (
    outage as o2,  # a comment
)
from .outage import (
    CuttableProxy,  # kept
)


def f():
    if True:
        from . import quotes, other
    return tests.outage.CuttableProxy, "tests.quotes.Quote", tests.other
x = 1; from . import outage
'''
AFTER_THE_MOVE = '''"""Mentions tests.outage in a docstring: not reported."""
import os, tests.support.outage
import tests.support.quotes as q
from tests import conftest as c
from tests.support import outage
from .support import (
    outage as o2,  # a comment
)
from .support.outage import (
    CuttableProxy,  # kept
)


def f():
    if True:
        from . import other
        from .support import quotes
    return tests.support.outage.CuttableProxy, "tests.quotes.Quote", tests.other
x = 1; from .support import outage
'''


def test_import_rewrites_keep_the_rest_of_the_statement() -> None:
    """The forms the update test does not cover: mixed names, parentheses, indents, `;`."""
    migrate = _migrate_module()
    moved = {"tests.outage": "tests.support.outage", "tests.quotes": "tests.support.quotes"}
    rewrite = migrate.ImportRewrite("tests/test_x.py", BEFORE_THE_MOVE.encode(), moved)
    rewrite.visit(ast.parse(BEFORE_THE_MOVE))
    assert rewrite.apply().decode() == AFTER_THE_MOVE
    assert rewrite.rewritten == moved
    assert rewrite.in_strings == [(16, "tests.quotes")]  # the string, not the docstring
    # From a subpackage, `..` still reaches the moved module's new place.
    nested = b"from ..outage import A\nfrom .. import quotes\nfrom .outage import B\n"
    rewrite = migrate.ImportRewrite("tests/sub/test_y.py", nested, moved)
    rewrite.visit(ast.parse(nested))
    assert rewrite.apply() == (
        b"from ..support.outage import A\nfrom ..support import quotes\nfrom .outage import B\n"
    )


BEFORE_THE_SPLIT = b"""from pkg.trades import (
    Request,  # the order
    repository,
)
from pkg import trades
import pkg.trades


def later() -> None:
    from .trades import Request as R, book, Unknown
"""
AFTER_THE_SPLIT = b"""from pkg.trades import repository
from pkg.trades.schemas import Request
from pkg import trades
import pkg.trades


def later() -> None:
    from .trades import Unknown
    from .trades.schemas import Request as R
    from .trades.service import book
"""


def test_a_split_module_s_names_are_imported_from_where_each_is_defined() -> None:
    """split: each name goes to its new module, a submodule or unknown name stays, and an
    import of the old module as a whole is named for the user (its attributes moved)."""
    migrate = _migrate_module()
    homes = {"Request": "pkg.trades.schemas", "book": "pkg.trades.service"}
    rewrite = migrate.ImportRewrite("src/pkg/tool.py", BEFORE_THE_SPLIT, {}, {"pkg.trades": homes})
    rewrite.visit(ast.parse(BEFORE_THE_SPLIT))
    assert rewrite.apply() == AFTER_THE_SPLIT
    assert sorted(rewrite.as_modules) == [(5, "pkg.trades"), (6, "pkg.trades")]
    assert rewrite.rewritten == {"pkg.trades": "pkg.trades.schemas and pkg.trades.service"}


SPLIT_BASE = b'''"""The feature, as the old version rendered it."""

LIMIT = 10


def check(amount: int) -> bool:
    return amount <= LIMIT
'''
SPLIT_OURS = SPLIT_BASE.replace(b"LIMIT = 10", b"LIMIT = 20  # ours").replace(
    b"return amount <= LIMIT", b"return 0 < amount <= LIMIT"
)
SPLIT_THEIRS_SCHEMAS = b"LIMIT = 10\n"
SPLIT_THEIRS_SERVICE = b"""from .schemas import LIMIT


def check(amount: int) -> bool:
    return amount < LIMIT
"""


def test_a_split_module_s_edits_merge_into_each_new_module_or_conflict_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """carry_edits: an edit the template did not touch lands cleanly in its new module; one
    it also changed is left inline with conflict markers, the file unmerged."""
    migrate = _migrate_module()
    project = tmp_path / "project"
    (project / "src" / "pkg" / "feature").mkdir(parents=True)
    (project / "src" / "pkg" / "feature.py").write_bytes(SPLIT_OURS)
    monkeypatch.chdir(project)
    git(project, "init", "--quiet")
    commit_all(project, "the old module")
    (project / "src" / "pkg" / "feature.py").unlink()
    for name, text in (("schemas", SPLIT_THEIRS_SCHEMAS), ("service", SPLIT_THEIRS_SERVICE)):
        (project / "src" / "pkg" / "feature" / f"{name}.py").write_bytes(text)
    old_render = tmp_path / "old"
    (old_render / "src" / "pkg").mkdir(parents=True)
    (old_render / "src" / "pkg" / "feature.py").write_bytes(SPLIT_BASE)
    homes = {"LIMIT": "pkg.feature.schemas", "check": "pkg.feature.service"}
    files = {module: f"src/{module.replace('.', '/')}.py" for module in set(homes.values())}

    assert migrate.carry_edits("src/pkg/feature.py", homes, files, old_render)

    assert (project / files["pkg.feature.schemas"]).read_bytes() == b"LIMIT = 20  # ours\n"
    service = (project / files["pkg.feature.service"]).read_text()
    assert "<<<<<<< before updating\n    return 0 < amount <= LIMIT\n" in service, service
    assert "\n    return amount < LIMIT\n>>>>>>> after updating\n" in service, service
    assert "src/pkg/feature/service.py" in git(project, "diff", "--name-only", "--diff-filter=U")
    err = capfd.readouterr().err
    assert "src/pkg/feature/schemas.py: your edits of LIMIT carried over" in err, err
    assert "src/pkg/feature/service.py: your edits of check conflict" in err, err
