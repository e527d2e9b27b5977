"""The template's answer matrix, computed from copier.yml.

A *variant* is one combination of the five answers that change what is generated:

    flavor (graph_rag split by graph_store) x queue (queue_backend, with celery split by
    celery_broker) x cache x autoscaling x python_version

Every choice list is read from copier.yml, so a new choice there shows up here (and in CI)
without editing this file. Two sets are derived:

- ``all_variants()``: the full cartesian product (4 x 4 x 3 x 3 x 3 = 432 today).
- ``covering_set()``: the pairwise covering set, checked in below as data (``COVERING``):
  every value of every factor and every pair of values of any two factors appears in at least
  one variant, in the fewest rows possible (the product of the two largest factors: 4 x 4 = 16
  today). ``tests/test_render.py`` checks both; when a new choice breaks the cover, the failure
  lists the pairs no row has, and a row or two added here (or a changed cell) restores it.

Each variant has a short, stable id (``fintech-celery_redis-redis-k8s-py311``) and its own
project/package name, so rendered projects never collide (in a shared venv, a shared mypy cache,
or one PostgreSQL server).

Run as a script for CI: ``python tests/variants.py matrix`` prints the GitHub Actions matrix;
``python tests/variants.py list [--covering]`` prints the ids.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIER_YML = REPO_ROOT / "copier.yml"

#: The factors, in id order: (factor name, copier question it comes from).
FACTORS: tuple[tuple[str, str], ...] = (
    ("flavor", "flavor"),
    ("queue", "queue_backend"),
    ("cache", "cache"),
    ("autoscaling", "autoscaling"),
    ("python", "python_version"),
)

#: Short spellings used in ids; anything not listed is used as is.
_SHORT = {
    ("autoscaling", "kubernetes"): "k8s",
    ("queue", "none"): "noqueue",
    ("cache", "none"): "nocache",
    ("autoscaling", "none"): "noscale",
    # The default graph store keeps the ids (and project names) graph_rag had before the split.
    ("flavor", "graph_rag_sql"): "graph_rag",
}


# ---------------------------------------------------------------------------------------------
# copier.yml
# ---------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that tolerates Copier's ``!include`` tag (kept as a plain string)."""


_Loader.add_constructor("!include", lambda loader, node: loader.construct_scalar(node))


@functools.cache
def load_questions(path: Path = COPIER_YML) -> dict[str, Any]:
    """copier.yml as a dict (one document; settings keys start with ``_``)."""
    data: dict[str, Any] = {}
    for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
        if isinstance(doc, dict):
            data.update(doc)
    return data


def choice_values(question: str, questions: Mapping[str, Any] | None = None) -> list[str]:
    """The stored values of a choice question (``choices`` may map label -> value)."""
    questions = questions if questions is not None else load_questions()
    spec = questions[question]
    choices = spec["choices"]
    if isinstance(choices, Mapping):
        values = list(choices.values())
    else:
        values = [c[1] if isinstance(c, list | tuple) else c for c in choices]
    return [str(v) for v in values]


def question_default(question: str, questions: Mapping[str, Any] | None = None) -> Any:
    questions = questions if questions is not None else load_questions()
    spec = questions[question]
    return spec.get("default") if isinstance(spec, Mapping) else spec


def factor_levels(questions: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Factor name -> its levels. ``queue`` is queue_backend with celery split by broker;
    ``flavor`` has graph_rag split by graph store (graph_rag_sql, graph_rag_memgraph,
    graph_rag_falkordb)."""
    questions = questions if questions is not None else load_questions()
    levels: dict[str, list[str]] = {}
    for factor, question in FACTORS:
        values = choice_values(question, questions)
        if factor == "queue" and "celery_broker" in questions:
            split: list[str] = []
            for value in values:
                if value == "celery":
                    split += [f"celery_{b}" for b in choice_values("celery_broker", questions)]
                else:
                    split.append(value)
            values = split
        if factor == "flavor" and "graph_store" in questions:
            split = []
            for value in values:
                if value == "graph_rag":
                    split += [f"graph_rag_{g}" for g in choice_values("graph_store", questions)]
                else:
                    split.append(value)
            values = split
        levels[factor] = values
    return levels


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Variant:
    flavor: str
    queue: str
    cache: str
    autoscaling: str
    python: str

    @property
    def id(self) -> str:
        parts = [
            _SHORT.get((name, getattr(self, name)), getattr(self, name))
            for name, _ in FACTORS
            if name != "python"
        ]
        return "-".join([*parts, "py" + self.python.replace(".", "")])

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.id.encode()).hexdigest()[:8]

    @property
    def package_name(self) -> str:
        return f"svc_{self.digest}"

    @property
    def project_slug(self) -> str:
        return f"svc-{self.digest}"

    @property
    def project_name(self) -> str:
        return f"Svc {self.digest}"

    def answers(self) -> dict[str, Any]:
        """The data to pass to copier: only questions that are asked for this combination."""
        data: dict[str, Any] = {
            "project_name": self.project_name,
            "project_slug": self.project_slug,
            "package_name": self.package_name,
            "cache": self.cache,
            "autoscaling": self.autoscaling,
            "python_version": self.python,
        }
        if self.flavor.startswith("graph_rag_"):
            data["flavor"] = "graph_rag"
            data["graph_store"] = self.flavor.removeprefix("graph_rag_")
        else:
            data["flavor"] = self.flavor
        if self.queue.startswith("celery_"):
            data["queue_backend"] = "celery"
            data["celery_broker"] = self.queue.removeprefix("celery_")
        else:
            data["queue_backend"] = self.queue
        return data

    def __str__(self) -> str:
        return self.id


def all_variants(questions: Mapping[str, Any] | None = None) -> list[Variant]:
    levels = factor_levels(questions)
    return [Variant(*combo) for combo in itertools.product(*(levels[name] for name, _ in FACTORS))]


# The pairwise covering set: (flavor, queue, cache, autoscaling, python) per row. Each row is
# a project CI generates, type-checks and tests twice, so keep it minimal.
COVERING = (
    ("graph_rag_sql", "celery_redis", "none", "none", "3.12"),
    ("graph_rag_sql", "celery_rabbitmq", "redis", "kubernetes", "3.13"),
    ("graph_rag_sql", "arq", "memory", "ecs", "3.12"),
    ("graph_rag_sql", "none", "none", "ecs", "3.11"),
    ("graph_rag_memgraph", "celery_redis", "redis", "ecs", "3.13"),
    ("graph_rag_memgraph", "celery_rabbitmq", "memory", "none", "3.11"),
    ("graph_rag_memgraph", "arq", "none", "kubernetes", "3.13"),
    ("graph_rag_memgraph", "none", "redis", "kubernetes", "3.12"),
    ("graph_rag_falkordb", "celery_redis", "memory", "none", "3.12"),
    ("graph_rag_falkordb", "celery_rabbitmq", "none", "kubernetes", "3.11"),
    ("graph_rag_falkordb", "arq", "redis", "ecs", "3.11"),
    ("graph_rag_falkordb", "none", "memory", "kubernetes", "3.13"),
    ("fintech", "celery_redis", "memory", "kubernetes", "3.11"),
    ("fintech", "celery_rabbitmq", "none", "ecs", "3.12"),
    ("fintech", "arq", "redis", "none", "3.11"),
    ("fintech", "none", "memory", "none", "3.13"),
)


def covering_set() -> list[Variant]:
    """The pairwise covering set (COVERING), 16 variants for 4x4x3x3x3."""
    return [Variant(*row) for row in COVERING]


# The rows of COVERING whose suites also run on the embedded defaults (no service URL). Without
# services the queue, the cache and the graph server fall back to the same in-process code in
# every variant, so what changes between embedded runs is the rendered code and the Python:
# every level of every factor is here once at least, and each flavor family (fintech,
# graph_rag) on each Python. The other rows' suites run on the real services only.
EMBEDDED = (
    ("graph_rag_sql", "arq", "memory", "ecs", "3.12"),
    ("graph_rag_memgraph", "celery_redis", "redis", "ecs", "3.13"),
    ("graph_rag_falkordb", "celery_rabbitmq", "none", "kubernetes", "3.11"),
    ("fintech", "celery_redis", "memory", "kubernetes", "3.11"),
    ("fintech", "celery_rabbitmq", "none", "ecs", "3.12"),
    ("fintech", "none", "memory", "none", "3.13"),
)


def embedded_set() -> list[Variant]:
    """The variants of the covering set tested on the embedded defaults too (EMBEDDED)."""
    return [Variant(*row) for row in EMBEDDED]


def check_each_level(variants: Sequence[Variant], levels: Mapping[str, Sequence[str]]) -> list[str]:
    """What ``variants`` leaves out: a level of a factor, or a flavor family on a Python."""
    missing = [
        f"{name}={level}"
        for name, _ in FACTORS
        for level in levels[name]
        if all(getattr(v, name) != level for v in variants)
    ]
    for family in sorted({_family(flavor) for flavor in levels["flavor"]}):
        for python in levels["python"]:
            if not any(_family(v.flavor) == family and v.python == python for v in variants):
                missing.append(f"{family} on Python {python}")
    return missing


def _family(flavor: str) -> str:
    """The flavor question's answer: graph_rag_sql, graph_rag_memgraph, ... -> graph_rag."""
    return "graph_rag" if flavor.startswith("graph_rag") else flavor


def check_pairwise(variants: Sequence[Variant], levels: Mapping[str, Sequence[str]]) -> list[str]:
    """Human-readable list of what ``variants`` fails to cover (empty when pairwise)."""
    names = [name for name, _ in FACTORS]
    present = {
        (names[i], getattr(v, names[i]), names[j], getattr(v, names[j]))
        for v in variants
        for i, j in itertools.combinations(range(len(names)), 2)
    }
    missing = []
    for i, j in itertools.combinations(range(len(names)), 2):
        for a in levels[names[i]]:
            for b in levels[names[j]]:
                if (names[i], a, names[j], b) not in present:
                    missing.append(f"{names[i]}={a} with {names[j]}={b}")
    return missing


# ---------------------------------------------------------------------------------------------
# CLI (used by .github/workflows/template-ci.yml)
# ---------------------------------------------------------------------------------------------
#: GitHub Actions refuses a matrix of more than this many jobs.
GITHUB_MATRIX_LIMIT = 256


def github_matrix(shard_by: Sequence[str] | None = None) -> dict[str, Any]:
    """One matrix entry per group of variants sharing ``shard_by``. By default every field (one
    render-and-lint job per variant) while that fits GitHub's 256-job limit, else every field
    but the Python version (432 variants today: 144 jobs of 3)."""
    if shard_by is None:
        every = ("flavor", "queue", "cache", "autoscaling", "python")
        fits = len(all_variants()) <= GITHUB_MATRIX_LIMIT
        shard_by = every if fits else every[:-1]
    groups: dict[str, list[str]] = {}
    for v in all_variants():
        key = "-".join(str(getattr(v, f)).replace(".", "") for f in shard_by)
        groups.setdefault(key, []).append(v.id)
    return {
        "include": [
            {"name": key, "variants": ",".join(ids), "count": len(ids)}
            for key, ids in sorted(groups.items())
        ]
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="print variant ids, one a line")
    lst.add_argument("--covering", action="store_true", help="only the pairwise covering set")
    lst.add_argument("--answers", action="store_true", help="print the answers as JSON lines")
    sub.add_parser("matrix", help="print the GitHub Actions matrix (JSON) for the render job")
    args = parser.parse_args(argv)
    if args.command == "matrix":
        print(json.dumps(github_matrix(), separators=(",", ":")))
        return 0
    variants = covering_set() if args.covering else all_variants()
    for v in variants:
        print(json.dumps({"id": v.id, **v.answers()}) if args.answers else v.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
