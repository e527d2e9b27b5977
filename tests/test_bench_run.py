"""The template's benchmark command (bench/run.py) and its report (bench/report.py).

The quick run renders both flavors, runs every benchmark step on the real PostgreSQL and Redis
and must write a report whose figures are the benchmarks' own: each step's JSON, the articles'
table filled from them, the plots as PNG files. Its figures are judged by people; here only
that they exist, are numbers and come from the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import variants as V
from harness.processes import run, tail

sys.path.insert(0, str(V.REPO_ROOT))

from bench import report
from bench import run as bench_run

PNG = b"\x89PNG\r\n\x1a\n"


def figure(name: str, value: float, unit: str, stat: str = "", **baseline: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit, "stat": stat, **baseline}


def write_step(
    results: Path, name: str, bench: str, figures: list[dict[str, Any]], **extra: Any
) -> None:
    folder = results / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"bench": bench, "seconds": 12.5, "load_average": {"start": 1.0, "end": 1.5}}
    data |= {"figures": figures, **extra}
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_the_report_sets_measured_figures_beside_the_articles_and_plots_them(
    tmp_path: Path,
) -> None:
    write_step(
        tmp_path,
        "graph_rag-graph_rag",
        "bench_graph_rag",
        [
            figure("search at 10000 documents, 1 caller", 5.5, "ms", "p95"),
            figure("search at 100000 documents, 1 caller", 31.25, "ms", "p95"),
            figure("search at 100000 documents, 1 caller", 20.0, "ms", "p50"),
        ],
        samples={"search at 100000 documents, 1 caller": [1.0, 2.0, 3.0, 30.0]},
    )
    write_step(
        tmp_path,
        "fintech-served",
        "bench_served",
        [
            figure(
                "portfolio read", 900.0, "requests/s", "served",
                baseline="bare FastAPI", baseline_value=3600.0, ratio=0.25,
            ),
            figure("service memory at rest", 114.2, "MB", "RSS"),
        ],
        samples={"portfolio read, service": [2.0, 3.0], "portfolio read, bare FastAPI": [1.0]},
    )  # fmt: skip
    (tmp_path / "run.json").write_text(
        json.dumps({"mode": "quick", "started": "2026-12-07T10:00:00+00:00", "seconds": 170,
                    "cores": 2, "load_average": 1.2, "failed": ["fintech-jobs-celery"]})
    )  # fmt: skip

    path = report.write(tmp_path)
    text = path.read_text()

    # The largest corpus's p95 (the last figure of that name and statistic).
    search = "31.2 ms p95 (in-process, one caller: search at 100000 documents, 1 caller)"
    assert f"| search latency, p95 | 200 ms | {search} |" in text, text
    assert "| bulk ingest of 1,000 documents | 300 ms | not measured in this run |" in text
    assert "**Failed steps:** fintech-jobs-celery" in text
    assert "| portfolio read | served | 900 requests/s | bare FastAPI | 3,600 | 0.25 |" in text
    assert "| service memory at rest | RSS | 114 MB |  |  |  |" in text
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == [
        "fintech-served-latency.png",
        "fintech-served-throughput.png",
        "graph_rag-graph_rag-latency.png",
        "ratios.png",
    ]
    for name in plots:
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG), name
        assert f"(plots/{name})" in text


def test_every_step_names_a_benchmark_the_flavor_ships() -> None:
    """A step whose benchmark a flavor does not render would fail only in the full run."""
    shipped = {p.name.split(".")[0] for p in (V.REPO_ROOT / "template" / "bench").iterdir()}
    for step in bench_run.STEPS:
        names = {step.bench, f"{{% if flavor == '{step.flavor}' %}}{step.bench}"}
        assert names & shipped, step
        assert "--json" not in step.full + step.quick  # the runner adds it
    assert len({step.name for step in bench_run.STEPS}) == len(bench_run.STEPS)


SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_each_step_runs_on_a_database_cache_namespace_and_queue_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps share the PostgreSQL and Redis servers, not their contents: each runs on a scratch
    database dropped after it, with a cache namespace and a job queue of its own, so none reads
    another's cache entries, rate-limit counters or jobs. (The servers are faked: a step's
    benchmark is a recorder writing the figures it was asked for, or not.) A step that exits
    with an error, or without its figures, fails, says so and prints the end of its log."""
    for variable in ("CACHE_NAMESPACE", "QUEUE_NAME", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.setenv(variable, "inherited")  # the caller's own, never a step's
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    databases: dict[str, str] = {}  # scratch database: "open" or "dropped"

    @contextlib.contextmanager
    def scratch_database(project: Path, server_url: str) -> Iterator[str]:
        assert server_url == SERVER
        url = f"postgresql://postgres@127.0.0.1:5432/bench_{len(databases)}"
        databases[url] = "open"
        yield url
        databases[url] = "dropped"

    environments: dict[str, dict[str, str]] = {}

    def benchmark(command: list[str], **options: Any) -> subprocess.CompletedProcess[bytes]:
        env = options["env"]
        assert databases.get(env["DATABASE_URL"]) == "open", env["DATABASE_URL"]  # its own
        environments[command[1]] = env
        options["stdout"].write(f"{command[1]} started\n")
        if command[1] == "bench/bench_stack.py":  # exits 0, its figures unwritten
            return subprocess.CompletedProcess(command, 0)
        figures = Path(command[command.index("--json") + 1])
        figures.write_text(json.dumps({"bench": command[1], "figures": []}))
        if command[1] == "bench/bench_jobs.py":  # its figures written, then a crash
            options["stdout"].write("Traceback (most recent call last):\nboom\n")
            return subprocess.CompletedProcess(command, 1)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(bench_run, "scratch_database", scratch_database)
    monkeypatch.setattr(bench_run.subprocess, "run", benchmark)
    for folder in ("figures", "logs"):
        (tmp_path / folder).mkdir()
    args = argparse.Namespace(quick=True, database_url=SERVER, redis_url="redis://r:6379/8")
    project = tmp_path / "fintech"

    def run_step(bench: str) -> bool:
        step = bench_run.Step("fintech", f"bench_{bench}", "", "")
        return bench_run.run_step(step, project, args, tmp_path)

    ran = {bench: run_step(bench) for bench in ("served", "cache", "jobs", "stack")}

    assert ran == {"served": True, "cache": True, "jobs": False, "stack": False}
    assert set(databases.values()) == {"dropped"}
    steps = list(environments.values())
    assert len(steps) == 4
    for variable in ("DATABASE_URL", "CACHE_NAMESPACE", "QUEUE_NAME"):
        values = [env[variable] for env in steps]
        assert len(set(values)) == 4, (variable, values)
        assert "inherited" not in values, (variable, values)
    assert [env["DATABASE_URL"] for env in steps] == list(databases)
    assert {env["REDIS_URL"] for env in steps} == {"redis://r:6379/8"}
    assert not any("VIRTUAL_ENV" in env for env in steps)  # the project's venv, not ours
    out = capsys.readouterr().out
    assert "fintech-jobs: FAILED (exit 1)" in out, out
    assert "    boom" in out, out
    assert "fintech-stack: FAILED (exit 0)" in out, out
    assert "    bench/bench_stack.py started" in out, out
    assert "fintech-served: FAILED" not in out, out
    assert "fintech-cache: FAILED" not in out, out


@pytest.mark.generated
def test_the_quick_run_measures_both_flavors_and_writes_the_report(
    tmp_path: Path, service_urls: dict[str, str]
) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed (.ci/run installs it: apt install wrk)")
    results = tmp_path / "run"
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": service_urls["DATABASE_URL"],
        "BENCH_REDIS_URL": service_urls["REDIS_URL"],
    }
    command = [sys.executable, "bench/run.py", "--quick", "--out", str(results)]
    out = run(command, cwd=V.REPO_ROOT, env=env, timeout=900)
    assert out.returncode == 0, tail(out.stdout + out.stderr, 80)

    steps = {json.loads(p.read_text())["bench"]: p for p in (results / "figures").glob("*.json")}
    assert len(list((results / "figures").glob("*.json"))) == len(bench_run.STEPS)
    assert set(steps) >= {"served", "stack", "cache", "fintech", "graph_rag", "relevance", "jobs"}
    for path in (results / "figures").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["figures"], path.name
        for item in data["figures"]:
            assert isinstance(item["value"], int | float), (path.name, item)
            if "ratio" in item:
                assert 0 < item["ratio"] < 1000, (path.name, item)
    served = json.loads((results / "figures" / "fintech-served.json").read_text())
    rates = {f["name"]: f for f in served["figures"] if f["unit"] == "requests/s"}
    assert {"liveness probe", "portfolio read", "market data, gzip"} <= set(rates)
    # bench_stack reads wrk's percentiles as bench_served does: p95 too, against bare FastAPI's.
    stack = json.loads((results / "figures" / "fintech-stack.json").read_text())
    probe = "live, full stack, latency under load"
    latency = {f["stat"]: f for f in stack["figures"] if f["name"] == probe}
    assert set(latency) == {"p50", "p95", "p99"}, stack["figures"]
    assert latency["p95"]["baseline"] == "bare FastAPI", latency
    assert set(stack["under_load"]["full/live"]) >= {"requests_per_second", "p95_ms"}
    text = (results / "report.md").read_text()
    measured = re.findall(r"^\| [^|]+ \| [^|]+ \| (.+) \|$", text.split("## fintech")[0], re.M)
    assert measured, text
    assert "not measured in this run" not in measured, text
    assert (results / "plots" / "ratios.png").read_bytes().startswith(PNG)
    run_info = json.loads((results / "run.json").read_text())
    assert run_info["failed"] == []
    print(f"quick run: {run_info['seconds']:.0f} s")
