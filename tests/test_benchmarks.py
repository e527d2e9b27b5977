"""The generated benchmarks that measure what no test asserts still run and print figures.

The relevance benchmark (graph_rag's bench/bench_relevance.py) is run on a small corpus: it
must print a row per configuration and query class, each measure a number in [0, 1], and the
hybrid-over-best-signal ratios. Its figures are judged by people reading them, not here.

With `--json PATH` a benchmark also writes its figures (bench/figures.py) for the report
program: the relevance benchmark's must be the numbers it prints, and the cache benchmark's,
run on a few requests, each read's with its baseline.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import random
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import variants as V
from conftest import Renderer, SharedVenvs
from harness.processes import project_env, run, tail, template_bench_module

GRAPH_RAG = next(v for v in V.covering_set() if v.flavor.startswith("graph_rag"))
CONFIGURATIONS = ("hybrid", "vector", "lexical", "graph", "bm25")
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
    figures_file = project / "relevance.json"
    cmd = [str(venv / "bin" / "python"), "bench/bench_relevance.py", "--sizes", "300"]
    cmd += ["--queries", "8", "--json", str(figures_file)]
    out = run(cmd, cwd=project, env=project_env(project, venv), timeout=300)
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
    # The answers through /ask's service: per answerable class, cited and contains shares.
    for kind in ("single", "paraphrase", "multihop", "natural"):
        assert re.search(rf"answers {kind}\s+cited\s+\d+%", text), text

    # The JSON figures: one per configuration, class and measure, the numbers printed.
    written = json.loads(figures_file.read_text())
    assert written["bench"] == "relevance"
    scores = {
        (figure["name"], figure["stat"]): figure["value"]
        for figure in written["figures"]
        if figure["unit"] == "score"
    }
    configuration = ""
    for row in rows:
        configuration = row["name"] or configuration
        name = f"300 documents, {configuration}, {row['kind']}"
        for group, stat in (("ndcg", "nDCG@10"), ("recall", "recall@10"), ("mrr", "MRR")):
            assert f"{scores[name, stat]:.3f}" == row[group], (name, stat, row.group())
    ndcg = [value for (_, stat), value in scores.items() if stat == "nDCG@10"]
    assert len(ndcg) == len(CONFIGURATIONS) * len(ANSWERED)
    assert all(0.0 <= value <= 1.0 for value in ndcg)


@pytest.mark.generated
def test_the_cache_benchmark_writes_each_read_with_its_baseline_as_json(
    render: Renderer, shared_venv: SharedVenvs, work_copy: Callable[[Path], Path]
) -> None:
    """bench_cache.py --json on a few requests (process memory: no REDIS_URL): the cached read
    against the uncached one, the rate-limited read against the cached one, and the samples."""
    venv = shared_venv(GRAPH_RAG.python)
    project = work_copy(render(GRAPH_RAG))
    figures_file = project / "cache.json"
    cmd = [str(venv / "bin" / "python"), "bench/bench_cache.py", "--rounds", "1"]
    cmd += ["--requests", "50", "--concurrency", "2", "--json", str(figures_file)]
    out = run(cmd, cwd=project, env=project_env(project, venv), timeout=120)
    assert out.returncode == 0, tail(out.stdout + out.stderr, 60)

    written = json.loads(figures_file.read_text())
    assert written["bench"] == "cache"
    assert written["settings"] == {"rounds": 1, "requests": 50, "concurrency": 2}
    figures = {(figure["name"], figure["stat"]): figure for figure in written["figures"]}
    printed = re.search(r"^  cached\s+(\d+) us CPU\s+(\d+) requests/s", out.stdout, re.MULTILINE)
    assert printed is not None, out.stdout
    cached = figures["memory backend, cached, throughput", "median"]
    assert f"{cached['value']:.0f}" == printed[2]
    for read, baseline in (("cached", "uncached"), ("cached + rate limit", "cached")):
        for what, stat in (("CPU per request", "median"), ("throughput", "median")):
            figure = figures[f"memory backend, {read}, {what}", stat]
            assert figure["value"] > 0, figure
            assert figure["baseline"] == baseline, figure
            assert figure["baseline_value"] > 0, figure
            assert figure["ratio"] > 0, figure
    limited = figures["memory backend, cached + rate limit, CPU per request", "median"]
    assert 0 < limited["ratio"] < 2, limited  # the limiter costs something, not everything
    assert figures["memory backend, served unchecked", "count"]["value"] == 0
    assert len(written["samples"]["memory backend, cached"]) == 50


def test_the_relevance_corpus_reaches_its_largest_size_with_names_never_reused() -> None:
    """generate() at 100,000 documents: it once ran out of made-up names there and looped."""
    path = V.REPO_ROOT / "template" / "bench"
    path /= "{% if flavor == 'graph_rag' %}relevance_corpus.py{% endif %}"
    # The template's name for it does not end in .py: give the loader explicitly.
    loader = importlib.machinery.SourceFileLoader("relevance_corpus", str(path))
    spec = importlib.util.spec_from_loader("relevance_corpus", loader)
    assert spec is not None
    assert spec.loader is not None
    corpus_module = importlib.util.module_from_spec(spec)
    sys.modules["relevance_corpus"] = corpus_module  # dataclasses look their module up
    try:
        spec.loader.exec_module(corpus_module)
        corpus = corpus_module.generate(100_000, queries_per_class=5)
    finally:
        del sys.modules["relevance_corpus"]
    assert 99_000 <= len(corpus.documents) <= 100_000
    assert len({d.key for d in corpus.documents}) == len(corpus.documents)
    # Every story's names are its own: no two fact documents share a title (a person).
    facts = [d.title for d in corpus.documents if d.key.endswith("-f")]
    assert len(set(facts)) == len(facts)
    kinds = [q.kind for q in corpus.queries]
    assert {kind: kinds.count(kind) for kind in ("single", "multihop", "noanswer")} == {
        "single": 5,
        "multihop": 5,
        "noanswer": 7,  # five generated, two hand-written
    }


def test_a_benchmark_whose_service_or_worker_exited_fails_naming_it() -> None:
    """bench_served checks its `serve` and `worker` after the load (bench/processes.py's
    require_running): one that exited meanwhile fails the run, named with its exit status,
    rather than the figures of a dead service being reported. Running ones pass."""
    processes = template_bench_module("processes")
    require_running: Callable[..., None] = processes.require_running  # type: ignore[attr-defined]
    python = [sys.executable, "-I", "-S", "-c"]
    worker = subprocess.Popen([*python, "raise SystemExit(3)"])
    service = subprocess.Popen([*python, "import time; time.sleep(60)"])
    try:
        worker.wait(timeout=30)
        require_running({"service": service})
        with pytest.raises(RuntimeError) as failure:
            require_running({"service": service, "worker": worker})
        assert str(failure.value) == "worker exited during the benchmark (status 3)"
        service.kill()
        service.wait(timeout=30)
        with pytest.raises(RuntimeError, match=r"^service exited during the benchmark"):
            require_running({"service": service})
    finally:
        service.kill()
        service.wait()


def test_free_ports_are_below_the_ephemeral_range_and_free() -> None:
    """bench/processes.py's free_port (the generated tests' too) never hands out a port an
    outgoing connection could take as its source port first, nor one a server listens on."""
    processes = template_bench_module("processes")
    floor: int = processes._ephemeral_floor()  # type: ignore[attr-defined]
    free_port: Callable[[], int] = processes.free_port  # type: ignore[attr-defined]
    ports = {free_port() for _ in range(50)}
    assert all(10_000 <= port < floor for port in ports), (floor, sorted(ports))
    assert len(ports) > 10, "not random: concurrent test runs would pick the same ports"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        taken = listener.getsockname()[1]
        first = free_port()
        with mock.patch.object(random, "randrange", side_effect=[taken, first]):
            assert free_port() == first, "handed out a port a server listens on"


# A scenario as bench/callgrind.py drives one: set-up, then `--calls N` calls of some work.
SCENARIO = """
import sys
calls, work = int(sys.argv[sys.argv.index("--calls") + 1]), int(sys.argv[1])
table = [str(n) for n in range(5000)]  # set-up: counted in both runs, cancelled out
for _ in range(calls):
    sum(len(s) for s in table[:work])
"""


@pytest.mark.skipif(not Path("/usr/bin/valgrind").exists(), reason="valgrind is not installed")
def test_instruction_counts_per_call_cancel_set_up_and_scale_with_the_work() -> None:
    """bench/callgrind.py's figure is the work of one call: the same twice (to 1%), twice as
    large for twice the work, whatever the set-up costs."""
    callgrind = template_bench_module("callgrind")
    per_call: Callable[..., float] = callgrind.per_call  # type: ignore[attr-defined]
    command = [sys.executable, "-I", "-S", "-c", SCENARIO]
    small = per_call([*command, "200"], 200)
    again = per_call([*command, "200"], 200)
    large = per_call([*command, "400"], 200)
    assert small > 10_000
    assert abs(again - small) / small < 0.01
    assert 1.8 < large / small < 2.2


# Run inside the rendered project: a server answering 200 on /ok (/ok/slow 100 ms late), 500
# on /broken and echoing a POST, loaded through bench/processes.py's wrk script (which
# bench_served and bench_stack both use): ten paths cycled, a POST with a body sent every
# time, and a path answered with errors.
WRK_LOAD = """
import http.server, json, sys, threading, time
from bench import processes

received = []

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    def answer(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/ok/slow"):
            time.sleep(0.1)
        self.answer(200 if self.path.startswith("/ok") else 500)
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        received.append([self.path, self.headers["content-type"], body.decode()])
        self.answer(201, body)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
directory = sys.argv[1]
# One call in ten 100 ms late: p50 fast, p95 slow.
calls = [
    processes.Call("/ok/slow" if n == 0 else f"/ok?n={n}", {"X-Forwarded-For": f"10.0.0.{n}"})
    for n in range(10)
]
load = processes.wrk(port, processes.wrk_script(calls, directory, "ok"), 2, 2)
print(json.dumps({"rps": load.requests_per_second, "percentiles": load.percentiles_ms}))
print(json.dumps([load.at(p) for p in (50, 95, 99)]))
post = processes.Call("/echo", {"Content-Type": "application/json"}, "POST", '{"a": [1, 2]}')
processes.wrk(port, processes.wrk_script([post], directory, "post"), 1, 1)
print(json.dumps(received[0]))
broken = processes.Call("/broken", {})
try:
    processes.wrk(port, processes.wrk_script([broken], directory, "no"), 1, 2)
except RuntimeError as error:
    print("refused:", str(error).splitlines()[0])
"""


@pytest.mark.generated
def test_the_wrk_script_reports_percentiles_sends_bodies_and_refuses_errors(
    render: Renderer, shared_venv: SharedVenvs, work_copy: Callable[[Path], Path], tmp_path: Path
) -> None:
    """bench/processes.py's wrk script cycles the calls (or sends one every time, with its
    method and body) and reports requests/s and 100 percentiles, in ms: with one call in ten
    100 ms late, p50 is fast and p95 and p99 are late. A load answered with errors fails
    instead of being measured."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed (.ci/run installs it: apt install wrk)")
    venv = shared_venv(GRAPH_RAG.python)
    project = work_copy(render(GRAPH_RAG))
    cmd = [str(venv / "bin" / "python"), "-c", WRK_LOAD, str(tmp_path)]
    out = run(cmd, cwd=project, env=project_env(project, venv), timeout=120)
    assert out.returncode == 0, tail(out.stdout + out.stderr, 60)
    lines = out.stdout.splitlines()
    measured = json.loads(lines[0])
    assert measured["rps"] > 5, measured
    percentiles = measured["percentiles"]
    assert len(percentiles) == 100, percentiles  # p1 .. p99, then p99.9
    assert percentiles == sorted(percentiles)
    p50, p95, p99 = json.loads(lines[1])
    assert (p50, p95, p99) == (percentiles[49], percentiles[94], percentiles[98])
    assert 0 < p50 < 50, percentiles  # in ms
    assert 90 < p95 <= p99 < 1000, percentiles
    assert json.loads(lines[2]) == ["/echo", "application/json", '{"a": [1, 2]}']
    assert "refused: " in out.stdout, out.stdout
    assert "not 2xx/3xx" in out.stdout, out.stdout
