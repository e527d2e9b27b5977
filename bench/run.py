"""Measure every flavor of the template on its production backends, in one command.

    uv run python bench/run.py            # the full run: ~15 minutes on 2 cores
    uv run python bench/run.py --quick    # smaller corpora and shorter rounds: ~3 minutes

For each flavor it renders a project from this checkout (uncommitted edits too) with the
backends a production service runs (PostgreSQL, Redis, Celery on Redis for fintech, arq for
graph_rag), installs it with `uv sync`, and runs the project's own benchmarks (`bench/` in
the generated project) against the PostgreSQL and Redis servers of this machine, each on a
scratch database created for it and dropped after:

- each flavor's hot endpoints served by the service's own `serve` process (one uvicorn
  worker) beside its `worker`, loaded by wrk, against a bare FastAPI app and a raw ASGI app
  replaying the same responses with the same uvicorn options: requests/s, p50/p95/p99, and
  the memory (RSS) of the service's processes at rest and under load;
- the middleware stack: the service against a bare FastAPI app (and a raw ASGI app) serving
  the same endpoints, in-process and served; resources reached by typed dependencies against
  app.state (the DI-chain lesson);
- the cache: a hit against a miss, and behind the rate limiter;
- the flavor's hot paths in-process against separate bare apps doing the same work:
  fintech's portfolio reads (cache hit rate, average response), trades and market data (gzip
  bytes saved); graph_rag's bulk ingest per 1,000 documents and search at two corpus sizes
  (100,000 documents in the full run), and its relevance table (nDCG@10 per query class
  beside latency);
- background jobs: enqueue latency against a bare INSERT + enqueue, and jobs/s through a real
  worker.

Each benchmark writes its figures as JSON (`--json`); `bench/report.py` turns them into
`report.md` with PNG plots, beside the figures the source articles published. Everything goes
to `results/<UTC time>/` (or `--out`). Absolute times on a shared machine drift between runs:
read the ratios to the baselines, measured in the same run.

Needs wrk (`apt install wrk`, `brew install wrk`) and the servers: BENCH_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres, a server where scratch databases may be
created) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/8; only keys the benchmarks
create are written, none is flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/8"

# The answers of each flavor's production shape; the package names are the report's labels.
FLAVORS: dict[str, dict[str, str | bool]] = {
    "fintech": {
        "project_name": "Bench Fintech",
        "flavor": "fintech",
        "queue_backend": "celery",
        "celery_broker": "redis",
        "cache": "redis",
    },
    "graph_rag": {
        "project_name": "Bench Graph RAG",
        "flavor": "graph_rag",
        "graph_store": "sql",
        "queue_backend": "arq",
        "cache": "redis",
    },
}
COMMON_ANSWERS: dict[str, str | bool] = {
    "autoscaling": "none",
    "git_init": False,
    "lock_dependencies": False,
}


@dataclass(frozen=True)
class Step:
    """One benchmark of one flavor, with its arguments for the full and the quick run."""

    flavor: str
    bench: str  # the generated project's bench/<bench>.py
    full: str  # its arguments
    quick: str
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.flavor}-{self.label or self.bench.removeprefix('bench_')}"


STEPS = [
    Step("fintech", "bench_served", "--rounds 3 --duration 5 --size 2000",
         "--rounds 1 --duration 1 --warmup 0 --size 200"),
    Step("fintech", "bench_stack", "--rounds 3 --duration 3 --requests 2000",
         "--rounds 1 --duration 1 --requests 200 --endpoints live", label="stack"),
    Step("fintech", "bench_cache", "--rounds 2 --requests 2000", "--rounds 1 --requests 300"),
    Step("fintech", "bench_fintech",
         "--users 10000 --instruments 5000 --requests 2000 --trades 500 --rounds 2",
         "--users 1000 --instruments 500 --requests 300 --trades 100 --rounds 1"),
    Step("fintech", "bench_jobs", "--jobs 500 --rounds 5 --calls 100",
         "--jobs 30 --rounds 1 --calls 20", label="jobs-celery"),
    Step("graph_rag", "bench_served", "--rounds 3 --duration 4 --size 10000",
         "--rounds 1 --duration 1 --warmup 0 --size 500"),
    Step("graph_rag", "bench_graph_rag", "--rounds 3 --sizes 10000,100000 --requests 300",
         "--rounds 1 --sizes 500,2000 --requests 50"),
    Step("graph_rag", "bench_relevance", "--sizes 10000 --queries 50",
         "--sizes 500 --queries 5"),
    Step("graph_rag", "bench_jobs", "--jobs 500 --rounds 5 --calls 100",
         "--jobs 30 --rounds 1 --calls 20", label="jobs-arq"),
]  # fmt: skip


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise SystemExit("uv is not on PATH: run this with `uv run python bench/run.py`")
    return found


def template_copy(destination: Path) -> Path:
    """What Copier reads, copied out of this checkout: rendered as it stands, uncommitted
    edits included, without a clone."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py[co]", ".*_cache", ".venv")
    destination.mkdir(parents=True)
    shutil.copy2(ROOT / "copier.yml", destination / "copier.yml")
    for name in ("template", "hooks"):
        shutil.copytree(ROOT / name, destination / name, ignore=ignore, symlinks=True)
    return destination


def render(template: Path, flavor: str, destination: Path) -> Path:
    """The flavor rendered from `template`, installed with `uv sync`."""
    from copier import run_copy

    answers = {**COMMON_ANSWERS, **FLAVORS[flavor]}
    project = destination / flavor
    run_copy(str(template), str(project), data=answers, defaults=True, unsafe=True, quiet=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}
    subprocess.run([uv(), "sync", "--quiet"], cwd=project, env=env, check=True)
    return project


def postgres(project: Path, server_url: str, statement: str) -> None:
    """Run one statement on `server_url`'s server with the project's own driver (asyncpg)."""
    code = (
        "import asyncio, sys, asyncpg\n"
        "async def main():\n"
        "    connection = await asyncpg.connect(sys.argv[1])\n"
        "    try:\n"
        "        await connection.execute(sys.argv[2])\n"
        "    finally:\n"
        "        await connection.close()\n"
        "asyncio.run(main())\n"
    )
    python = project / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-c", code, server_url, statement], check=True)


@contextlib.contextmanager
def scratch_database(project: Path, server_url: str) -> Iterator[str]:
    """A new PostgreSQL database on `server_url`'s server, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    postgres(project, server_url, f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        postgres(project, server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_step(step: Step, project: Path, args: argparse.Namespace, results: Path) -> bool:
    """The step's benchmark with `--json`, its output kept beside the figures."""
    figures = results / "figures" / f"{step.name}.json"
    output = results / "logs" / f"{step.name}.txt"
    arguments = (step.quick if args.quick else step.full).split()
    command = [str(project / ".venv" / "bin" / "python"), f"bench/{step.bench}.py", *arguments]
    command += ["--json", str(figures)]
    with scratch_database(project, args.database_url) as database_url:
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            # Cache entries, rate-limit counters and a job queue of the step's own: none of
            # another step's or run's (same ids, another database; an arq queue where Celery
            # expects a list) is read as this one's.
            "CACHE_NAMESPACE": f"bench-{uuid.uuid4().hex[:10]}",
            "QUEUE_NAME": f"bench-{uuid.uuid4().hex[:10]}",
            "PYTHONUNBUFFERED": "1",  # the log shows how far a step got
        }
        log(f"{step.name}: {' '.join(command[1:])}")
        started = time.monotonic()
        with output.open("w") as sink:
            finished = subprocess.run(
                command, cwd=project, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False
            )
    seconds = time.monotonic() - started
    if finished.returncode != 0 or not figures.is_file():
        log(f"{step.name}: FAILED (exit {finished.returncode}) after {seconds:.0f} s; see {output}")
        tail = output.read_text().splitlines()[-30:]
        print("\n".join(f"    {line}" for line in tail), flush=True)
        return False
    log(f"{step.name}: {seconds:.0f} s")
    return True


def preflight(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt install wrk (or brew install wrk)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, shorter rounds")
    parser.add_argument("--out", type=Path, help="results folder (default results/<UTC time>)")
    parser.add_argument(
        "--flavors", default=",".join(FLAVORS), help=f"comma-separated, of {', '.join(FLAVORS)}"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated step names (e.g. fintech-stack)"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    args = parser.parse_args()
    flavors = [name for name in args.flavors.split(",") if name]
    if unknown := set(flavors) - set(FLAVORS):
        parser.error(f"unknown flavors: {', '.join(sorted(unknown))}")
    only = {name for name in args.only.split(",") if name}
    steps = [s for s in STEPS if s.flavor in flavors and (not only or s.name in only)]
    if only - {s.name for s in STEPS}:
        parser.error(f"unknown steps: {', '.join(sorted(only - {s.name for s in STEPS}))}")
    preflight(args)

    started = datetime.now(UTC)
    results = args.out or ROOT / "results" / started.strftime("%Y%m%dT%H%M%SZ")
    for folder in ("figures", "logs", "projects"):
        (results / folder).mkdir(parents=True, exist_ok=True)
    log(f"results in {results} ({'quick' if args.quick else 'full'} run)")
    clock = time.monotonic()
    projects = {}
    template = template_copy(results / "projects" / "template")
    for flavor in dict.fromkeys(step.flavor for step in steps):
        log(f"rendering and installing {flavor}")
        projects[flavor] = render(template, flavor, results / "projects")
    failed = [s.name for s in steps if not run_step(s, projects[s.flavor], args, results)]
    run = {
        "mode": "quick" if args.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "seconds": time.monotonic() - clock,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "steps": [step.name for step in steps],
        "failed": failed,
    }
    (results / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    written = report.write(results)
    log(f"report: {written} ({run['seconds']:.0f} s in all)")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
