"""The generated benchmarks that measure what no test asserts still run and print figures.

The relevance benchmark (graph_rag's bench/bench_relevance.py) is run on a small corpus: it
must print a row per configuration and query class, each measure a number in [0, 1], and the
hybrid-over-best-signal ratios. Its figures are judged by people reading them, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, SharedVenvs
from harness.processes import project_env, run, tail

GRAPH_RAG = next(v for v in V.covering_set() if v.flavor.startswith("graph_rag"))
CONFIGURATIONS = ("hybrid", "vector", "keyword", "graph", "bm25")
ANSWERED = ("single", "paraphrase", "multihop", "natural", "all")
ROW = re.compile(
    r"^  (?P<name>\w*)\s+(?P<kind>single|paraphrase|multihop|natural|all)\s+"
    r"(?P<ndcg>[\d.]+)\s+(?P<recall>[\d.]+)\s+(?P<mrr>[\d.]+)",
    re.MULTILINE,
)


@pytest.mark.generated
def test_the_relevance_benchmark_prints_every_configuration_and_class(
    render: Renderer, shared_venv: SharedVenvs, work_copy: Callable[[Path], Path]
) -> None:
    venv = shared_venv(GRAPH_RAG.python)
    project = work_copy(render(GRAPH_RAG))
    cmd = [str(venv / "bin" / "python"), "bench/bench_relevance.py", "--sizes", "300"]
    out = run([*cmd, "--queries", "8"], cwd=project, env=project_env(project, venv), timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, tail(text, 60)

    rows = list(ROW.finditer(text))
    assert len(rows) == len(CONFIGURATIONS) * len(ANSWERED), text
    names = [row["name"] for row in rows if row["name"]]
    assert names == list(CONFIGURATIONS), text
    for row in rows:
        assert all(0.0 <= float(row[m]) <= 1.0 for m in ("ndcg", "recall", "mrr")), row.group()
    assert len(re.findall(r"noanswer\s+no hit \d+%", text)) == len(CONFIGURATIONS), text
    assert re.search(r"hybrid / best single signal \(\w+\) on nDCG@10, all: [\d.]+", text), text
    assert re.search(r"on nDCG@10, multihop: [\d.]+", text), text
