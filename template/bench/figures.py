"""Figures a benchmark writes with `--json`, in one shape for every benchmark.

Each benchmark prints its figures for a person and, given `--json PATH`, writes them here for
a program: the template's benchmark report reads every benchmark's file the same way. A file
holds what ran (the benchmark, its settings, when, the load average at the start and at the
end), a list of figures and, for plots, latency samples:

    {"bench": "fintech", "settings": {...}, "load_average": {"start": 0.8, "end": 1.1},
     "figures": [{"name": "portfolio read, warm cache", "value": 0.41, "unit": "ms",
                  "stat": "p50", "baseline": "bare route", "baseline_value": 0.22,
                  "ratio": 0.54}, ...],
     "samples": {"portfolio read, warm cache": [0.39, 0.40, ...]}}

`ratio` is the service's throughput as a share of its baseline's doing the same work (1.0: the
service costs nothing over it): the baseline's value over the service's for a cost (time,
instructions, bytes), the service's over the baseline's for a rate (anything "/s").
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

# Latency samples kept per series: enough for a distribution plot, few enough for a small file.
SAMPLES_KEPT = 2000


def higher_is_better(unit: str) -> bool:
    """A rate ("requests/s", "documents/s") or a share ("%"): more is better; else a cost."""
    return unit.endswith("/s") or unit == "%"


class Figures:
    """The figures of one benchmark run, written as JSON by `write`."""

    def __init__(self, bench: str, settings: dict[str, Any] | None = None) -> None:
        self.bench = bench
        self.settings = dict(settings or {})
        self.started = time.time()
        self.load_at_start = os.getloadavg()[0]
        self.figures: list[dict[str, Any]] = []
        self.samples: dict[str, list[float]] = {}

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        stat: str = "",
        *,
        baseline: str = "",
        baseline_value: float | None = None,
    ) -> None:
        """One figure; with a baseline's value for the same work, also their ratio."""
        figure: dict[str, Any] = {"name": name, "value": value, "unit": unit, "stat": stat}
        if baseline_value is not None:
            figure["baseline"] = baseline
            figure["baseline_value"] = baseline_value
            if value and baseline_value:
                better = higher_is_better(unit)
                figure["ratio"] = value / baseline_value if better else baseline_value / value
        self.figures.append(figure)

    def add_samples(self, name: str, values: list[float]) -> None:
        """A latency distribution (ms) for plots, thinned evenly to SAMPLES_KEPT sorted values."""
        ordered = sorted(values)
        if len(ordered) > SAMPLES_KEPT:
            step = (len(ordered) - 1) / (SAMPLES_KEPT - 1)
            ordered = [ordered[round(i * step)] for i in range(SAMPLES_KEPT)]
        self.samples[name] = ordered

    def as_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "settings": self.settings,
            "started": self.started,
            "seconds": time.time() - self.started,
            "load_average": {"start": self.load_at_start, "end": os.getloadavg()[0]},
            "python": platform.python_version(),
            "figures": self.figures,
            "samples": self.samples,
        }

    def write(self, path: Path | None, extra: dict[str, Any] | None = None) -> None:
        """Write the figures (and any `extra` top-level keys) to `path`; nothing without one."""
        if path is None:
            return
        path.write_text(json.dumps({**(extra or {}), **self.as_dict()}, indent=2) + "\n")
        print(f"\nFigures written to {path}")
