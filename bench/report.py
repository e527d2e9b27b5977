"""The benchmark report: the figures of one `bench/run.py` run as Markdown with PNG plots.

    uv run python bench/report.py results/<run>    # write the report again from the figures

Reads `<run>/figures/*.json` (one file per benchmark step, in the shape of the generated
project's `bench/figures.py`) and `<run>/run.json`, and writes `<run>/report.md` and
`<run>/plots/*.png`: the figures beside the ones the source articles published, every ratio
to a baseline measured in the same run, each step's figures in full, latency distributions
and throughput against the baselines.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

Figure = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One benchmark's figures file."""

    name: str
    data: dict[str, Any]

    @property
    def figures(self) -> list[Figure]:
        return list(self.data.get("figures", []))

    @property
    def samples(self) -> dict[str, list[float]]:
        return dict(self.data.get("samples", {}))


def load(results: Path, order: list[str]) -> list[Step]:
    """Each step's figures, in the order the run took them (others after, by name)."""
    steps = [
        Step(path.stem, json.loads(path.read_text()))
        for path in sorted((results / "figures").glob("*.json"))
    ]
    rank = {name: n for n, name in enumerate(order)}
    return sorted(steps, key=lambda step: rank.get(step.name, len(rank)))


# --- the source articles' figures ------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A figure an article published, and where the same thing is measured here."""

    what: str
    published: str
    step: str  # the step's name, as bench/run.py names it
    name: str  # a regular expression on the figure's name; the last figure matching counts
    stat: str = ""
    describe: Callable[[Figure], str] | None = None


def _value(figure: Figure) -> str:
    stat = f" {figure['stat']}" if figure.get("stat") else ""
    unit = figure["unit"] if figure["unit"] == "%" else f" {figure['unit']}"
    return f"{_number(figure['value'])}{unit}{stat}".strip()


def _singletons(figure: Figure) -> str:
    """Three resources through typed dependencies against the same three from app.state."""
    saving = (figure["baseline_value"] / figure["value"] - 1) * 100
    return (
        f"{saving:+.0f}% CPU per request: {_number(figure['baseline_value'])} us from app.state,"
        f" {_number(figure['value'])} us through typed dependencies (in-process)"
    )


def _saved(figure: Figure) -> str:
    return f"-{figure['value']:.0f}% bytes (market data, gzip level of the service)"


def _with_step(label: str) -> Callable[[Figure], str]:
    return lambda figure: f"{_value(figure)} ({label}: {figure['name']})"


CLAIMS = [
    Claim(
        "search latency, p95",
        "200 ms",
        "graph_rag-graph_rag",
        r"^search at \d+ documents, 1 caller$",
        "p95",
        _with_step("in-process, one caller"),
    ),
    Claim(
        "bulk ingest of 1,000 documents",
        "300 ms",
        "graph_rag-graph_rag",
        r"^ingest per 1000 documents, POST /ingest/batch$",
        "median",
    ),
    Claim(
        "singletons instead of a DI chain",
        "-40% latency",
        "fintech-stack",
        r"^three resources per request, typed dependencies$",
        "median",
        _singletons,
    ),
    Claim(
        "cache hit rate",
        "85%",
        "fintech-fintech",
        r"^mixed workload, portfolio cache hit rate$",
        describe=_with_step("mixed reads and trades"),
    ),
    Claim(
        "bandwidth saved by gzip", "-70%", "fintech-fintech", r"bytes saved by gzip$", "", _saved
    ),
    Claim(
        "average response",
        "240 ms",
        "fintech-fintech",
        r"^mixed workload$",
        "mean",
        _with_step("in-process, 16 callers"),
    ),
]


def find(steps: list[Step], step: str, pattern: str, stat: str = "") -> Figure | None:
    found = None
    for candidate in steps:
        if candidate.name == step:
            for figure in candidate.figures:
                if re.search(pattern, figure["name"]) and (not stat or figure["stat"] == stat):
                    found = figure
    return found


# --- plots ------------------------------------------------------------------------------------


def plot_latency(step: Step, folder: Path) -> Path | None:
    """Each latency series of the step as a distribution: latency at each percentile."""
    series = {name: values for name, values in step.samples.items() if values}
    if not series:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, values in sorted(series.items()):
        count = len(values)
        percentiles = [100 * (i + 0.5) / count for i in range(count)]
        axes.plot(percentiles, values, label=f"{name} (p50 {values[count // 2]:.2f} ms)")
    axes.set_yscale("log")
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms (log)")
    axes.set_title(f"{step.name}: latency distribution")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, folder / f"{step.name}-latency.png")


def plot_throughput(step: Step, folder: Path) -> Path | None:
    """Every rate of the step beside its baselines': one group of bars per figure."""
    groups: dict[str, dict[str, float]] = {}
    for f in step.figures:
        if f["unit"].endswith("/s") and f["value"]:
            group = groups.setdefault(f"{f['name']} ({f['unit']})", {"service": f["value"]})
            if f.get("baseline_value"):
                group[f["baseline"]] = f["baseline_value"]
    if not groups:
        return None
    kinds = list(dict.fromkeys(kind for group in groups.values() for kind in group))
    height = 0.8 / len(kinds)
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(groups) * len(kinds) + 1.5))
    for k, kind in enumerate(kinds):
        rows = [(i, group[kind]) for i, group in enumerate(groups.values()) if kind in group]
        offsets = [i - 0.4 + height * (k + 0.5) for i, _ in rows]
        axes.barh(offsets, [value for _, value in rows], height, label=kind)
    axes.set_yticks(range(len(groups)), list(groups), fontsize="small")
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("per second (log)")
    axes.set_title(f"{step.name}: throughput against the baselines")
    axes.legend(fontsize="small")
    return _save(figure, folder / f"{step.name}-throughput.png")


def plot_ratios(steps: list[Step], folder: Path) -> Path | None:
    """The throughput the service keeps against each baseline, every rate of the run."""
    rows = [
        (f"{s.name}: {f['name']} vs {f['baseline']}", f["ratio"])
        for s in steps
        for f in s.figures
        if f.get("ratio") and f["unit"].endswith("/s")
    ]
    if not rows:
        return None
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    axes.barh(range(len(rows)), [ratio for _, ratio in rows])
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize="x-small")
    axes.invert_yaxis()
    axes.set_xlabel("service / baseline, requests/s (log; 1.0: as fast as the baseline)")
    axes.set_title("Throughput against the baselines, same run")
    return _save(figure, folder / "ratios.png")


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# --- the Markdown ---------------------------------------------------------------------------------


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def figure_table(figures: list[Figure]) -> list[str]:
    lines = [
        "| figure | stat | value | baseline | baseline value | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        baseline_value = f.get("baseline_value")
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(f["name"]),
                    f.get("stat", ""),
                    f"{_number(f['value'])} {f['unit']}".strip(),
                    _cell(f.get("baseline", "")),
                    "" if baseline_value is None else _number(baseline_value),
                    f"{f['ratio']:.2f}" if f.get("ratio") else "",
                ]
            )
            + " |"
        )
    return lines


RELEVANCE = re.compile(r"^(?P<size>\d+) documents, (?P<config>\w+), (?P<kind>[\w ]+)$")


def relevance_table(step: Step) -> list[str]:
    """The relevance figures pivoted: a row per corpus size, configuration and query class,
    nDCG@10 / recall@10 / MRR (or the no-answer share), with the configuration's latency."""
    rows: dict[tuple[str, str, str], dict[str, float]] = {}
    for f in step.figures:
        if match := RELEVANCE.match(f["name"]):
            rows.setdefault((match["size"], match["config"], match["kind"]), {})[f["stat"]] = f[
                "value"
            ]
    if not rows:
        return []
    lines = [
        "| documents | configuration | class | nDCG@10 | recall@10 | MRR | latency p50 / p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for (size, config, kind), row in rows.items():
        if kind == "query latency" or config == "answers":
            continue
        latency = rows.get((size, config, "query latency"), {})
        timing = ""
        if kind == "all" and latency:
            timing = f"{latency.get('p50', 0):.1f} / {latency.get('p95', 0):.1f} ms"
        if "no hit" in row:
            scores = [f"no hit {row['no hit']:.0f}%", "", ""]
        else:
            scores = [f"{row.get(stat, 0):.3f}" for stat in ("nDCG@10", "recall@10", "MRR")]
        lines.append(f"| {int(size):,} | {config} | {kind} | {' | '.join(scores)} | {timing} |")
    return [*lines, ""]


def markdown(run: dict[str, Any], steps: list[Step], plots: dict[str, list[Path]]) -> str:
    lines = [
        f"# Benchmark report: {run.get('mode', '?')} run of {run.get('started', '?')}",
        "",
        f"{run.get('cores', '?')} cores; {_number(run.get('seconds', 0))} s in all; load "
        f"average {run.get('load_average', 0):.1f} at the end. Absolute figures drift between "
        "runs on a shared machine; the ratios compare the service with a baseline doing the "
        "same work in the same run (1.0: the service costs nothing over it).",
        "",
    ]
    if run.get("failed"):
        lines += [f"**Failed steps:** {', '.join(run['failed'])} (see `logs/`).", ""]
    lines += [
        "## Against the source articles",
        "",
        "| what | published | measured here |",
        "|---|---|---|",
    ]
    for claim in CLAIMS:
        figure = find(steps, claim.step, claim.name, claim.stat)
        if figure is None:
            measured = "not measured in this run"
        else:
            measured = (claim.describe or _value)(figure)
        lines.append(f"| {claim.what} | {claim.published} | {_cell(measured)} |")
    lines.append("")
    if "ratios" in plots:
        lines += ["![ratios](plots/ratios.png)", ""]
    for step in steps:
        load = step.data.get("load_average", {})
        lines += [
            f"## {step.name}",
            "",
            f"`bench/bench_{step.data.get('bench', '?')}.py`,"
            f" {_number(step.data.get('seconds', 0))} s, "
            f"load average {load.get('start', 0):.1f} at the start and "
            f"{load.get('end', 0):.1f} at the end.",
            "",
            *relevance_table(step),
            *figure_table(step.figures),
            "",
        ]
        for path in plots.get(step.name, []):
            lines += [f"![{path.stem}](plots/{path.name})", ""]
    return "\n".join(lines)


def write(results: Path) -> Path:
    """report.md and plots/ for the run in `results`; the report's path."""
    run_file = results / "run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    steps = load(results, run.get("steps", []))
    folder = results / "plots"
    folder.mkdir(exist_ok=True)
    plots: dict[str, list[Path]] = {}
    for step in steps:
        drawn = [plot_latency(step, folder), plot_throughput(step, folder)]
        plots[step.name] = [path for path in drawn if path is not None]
    if (ratios := plot_ratios(steps, folder)) is not None:
        plots["ratios"] = [ratios]
    path = results / "report.md"
    path.write_text(markdown(run, steps, plots) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(write(Path(sys.argv[1])))
