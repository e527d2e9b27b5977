"""The capacity and cost plan behind `plan-capacity`: instances over a day, and what they cost.

From the requests/s one worker process serves with a core to itself (the benchmark's figure),
an instance (a pod or a task) serves `rps_per_worker * min(vCPU, workers)` with its CPU busy.
The autoscaler keeps the CPU near its target, so an instance is planned to carry that share of
it, or less when the p95 latency target asks for more headroom: taking an instance as one
M/M/1 queue (Poisson arrivals, exponential service times), its response time is exponential
with rate `capacity - load`, so p95 = ln(20) / (capacity - load), and the load may be at most
`capacity - ln(20) / p95_target`. That is an approximation, on the cautious side for an
instance with several workers; the alerts measure the real p95.

The day's traffic is one peak: a smooth curve whose mean is the average rate
(requests per day / 86,400) and whose highest point is `peak_factor` times it. Instances
follow it between the autoscaler's min and max replicas, and the month is 730 hours. Memory is
not modelled: the plan sizes for CPU, and the dashboard's resident memory panel shows whether
the autoscaler's memory target is reached first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

SECONDS_PER_DAY = 86_400
HOURS_PER_MONTH = 730
# A day in 15-minute steps: the autoscaler reacts within minutes, the plan needs no finer.
STEPS_PER_DAY = 96
PEAK_HOUR = 14.0
MAX_PEAK_FACTOR = 10.0
# Instances the minimum may keep beyond what the quietest hour needs without being called
# wasteful: two keep one serving through a rollout or the loss of a node.
REDUNDANT_INSTANCES = 2
# p95 of an exponential response time: -ln(1 - 0.95) / rate.
P95_FACTOR = math.log(20)


class PlanError(ValueError):
    """An input the plan cannot use; `flag` names the option or setting to change."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class PlanInputs:
    rps_per_worker: float
    requests_per_day: float
    peak_factor: float
    p95_target: float
    workers: int
    cpu_target: int
    min_replicas: int
    max_replicas: int
    instance_vcpu: float
    instance_memory_gb: float
    price_vcpu_hour: float
    price_gb_hour: float

    def check(self) -> None:
        positive = {
            "--rps-per-worker": self.rps_per_worker,
            "--requests-per-day": self.requests_per_day,
            "--p95-target": self.p95_target,
            "--workers": self.workers,
            "INSTANCE_VCPU": self.instance_vcpu,
            "INSTANCE_MEMORY_GB": self.instance_memory_gb,
        }
        for flag, value in positive.items():
            if not value > 0 or not math.isfinite(value):
                raise PlanError(flag, f"must be a positive number, got {value}")
        if not 1 <= self.peak_factor <= MAX_PEAK_FACTOR:
            raise PlanError(
                "--peak-factor",
                f"the peak's multiple of the average rate must be between 1 and "
                f"{MAX_PEAK_FACTOR:g}, got {self.peak_factor}",
            )
        if not 1 <= self.cpu_target <= 100:
            raise PlanError("SCALING_CPU_TARGET", f"must be a percentage, got {self.cpu_target}")
        if self.max_replicas < self.min_replicas:
            raise PlanError(
                "SCALING_MAX_REPLICAS",
                f"{self.max_replicas} is below SCALING_MIN_REPLICAS ({self.min_replicas})",
            )


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    average_rps: float
    peak_rps: float
    instance_capacity_rps: float  # one instance with its CPU busy
    instance_planned_rps: float  # what one instance is planned to carry
    utilisation: float  # the planned share of an instance's capacity
    latency_bound: bool  # the p95 target, not the CPU target, set the share
    traffic: tuple[float, ...]  # requests/s per step of the day
    instances: tuple[int, ...]  # instances per step, within the replica bounds
    peak_instances: int  # instances the peak needs, bounds aside
    trough_instances: int  # instances the quietest step needs, bounds aside
    monthly_cost: float
    fixed_monthly_cost: float  # peak_instances all day, every day

    @property
    def warnings(self) -> list[str]:
        found = []
        inputs = self.inputs
        if self.peak_instances > inputs.max_replicas:
            found.append(
                f"SCALING_MAX_REPLICAS={inputs.max_replicas} cannot carry the peak: "
                f"{self.peak_rps:,.1f} requests/s needs {self.peak_instances} instances at "
                f"{self.instance_planned_rps:,.1f} requests/s each"
            )
        if inputs.min_replicas > max(self.trough_instances, REDUNDANT_INSTANCES):
            found.append(
                f"SCALING_MIN_REPLICAS={inputs.min_replicas} is wasteful: the quietest hour "
                f"needs {self.trough_instances} (and {REDUNDANT_INSTANCES} keep one serving "
                "through a rollout)"
            )
        return found


def bench_rps(path: Path, endpoint: str | None = None) -> tuple[str, float]:
    """The full stack's requests/s per worker from `bench/bench_stack.py --json`'s file: the
    endpoint named, or the slowest one measured (a plan for the costliest request is safe)."""
    try:
        figures = json.loads(path.read_text())["under_load"]
        measured = {
            key.partition("/")[2]: float(values["requests_per_second"])
            for key, values in figures.items()
            if key.startswith("full/")
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlanError(
            "--from-bench", f"{path} is not a file of `bench/bench_stack.py --json`: {exc}"
        ) from exc
    if not measured:
        raise PlanError(
            "--from-bench",
            f"{path} has no requests/s under load (wrk was not installed when it ran); "
            "install wrk and run the benchmark again, or pass --rps-per-worker",
        )
    if endpoint is None:
        endpoint = min(measured, key=measured.__getitem__)
    elif endpoint not in measured:
        raise PlanError("--endpoint", f"{endpoint!r} is not in {path}: {', '.join(measured)}")
    return endpoint, measured[endpoint]


def daily_curve(peak_factor: float, steps: int = STEPS_PER_DAY) -> list[float]:
    """Multiples of the average rate through one day: mean exactly 1, highest `peak_factor`.

    The shape is `c**k` with `c` a cosine rising from 0 at night to 1 at PEAK_HOUR; the
    smallest power `k` whose curve never goes below zero is used, so a higher peak is also a
    narrower one (a day's total is fixed by the requests per day).
    """
    hours = [24 * step / steps for step in range(steps)]
    base = [(1 + math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24)) / 2 for hour in hours]
    power = 1
    while True:
        shape = [value**power for value in base]
        mean = sum(shape) / steps
        # Lowest value of the curve is 1 - (peak_factor - 1) * mean / (1 - mean).
        if (peak_factor - 1) * mean <= 1 - mean:
            break
        power += 1
    return [1 + (peak_factor - 1) * (value - mean) / (1 - mean) for value in shape]


def plan(inputs: PlanInputs) -> Plan:
    inputs.check()
    capacity = inputs.rps_per_worker * min(inputs.instance_vcpu, inputs.workers)
    cpu_share = inputs.cpu_target / 100
    # Headroom the latency target needs: load <= capacity - ln(20) / p95_target.
    latency_share = 1 - P95_FACTOR / (inputs.p95_target * capacity)
    if latency_share <= 0:
        raise PlanError(
            "--p95-target",
            f"{inputs.p95_target:g} s is out of reach: an idle instance serving "
            f"{capacity:,.1f} requests/s answers in {P95_FACTOR / capacity:.3f} s at p95",
        )
    share = min(cpu_share, latency_share)
    planned = capacity * share
    average = inputs.requests_per_day / SECONDS_PER_DAY
    traffic = [average * multiple for multiple in daily_curve(inputs.peak_factor)]
    needed = [math.ceil(rps / planned) for rps in traffic]
    instances = [min(max(n, inputs.min_replicas), inputs.max_replicas) for n in needed]
    peak_instances = math.ceil(average * inputs.peak_factor / planned)
    hourly = (
        inputs.instance_vcpu * inputs.price_vcpu_hour
        + inputs.instance_memory_gb * inputs.price_gb_hour
    )
    mean_instances = sum(instances) / len(instances)
    return Plan(
        inputs=inputs,
        average_rps=average,
        peak_rps=average * inputs.peak_factor,
        instance_capacity_rps=capacity,
        instance_planned_rps=planned,
        utilisation=share,
        latency_bound=latency_share < cpu_share,
        traffic=tuple(traffic),
        instances=tuple(instances),
        peak_instances=peak_instances,
        trough_instances=min(needed),
        monthly_cost=mean_instances * hourly * HOURS_PER_MONTH,
        fixed_monthly_cost=max(peak_instances, inputs.min_replicas) * hourly * HOURS_PER_MONTH,
    )


def report(result: Plan) -> str:
    inputs = result.inputs
    bound = (
        f"the p95 target of {inputs.p95_target:g} s (CPU target {inputs.cpu_target}%)"
        if result.latency_bound
        else f"the CPU target of {inputs.cpu_target}%"
    )
    lines = [
        f"traffic: {inputs.requests_per_day:,.0f} requests/day, "
        f"average {result.average_rps:,.1f}/s, peak {result.peak_rps:,.1f}/s "
        f"(x{inputs.peak_factor:g})",
        f"one instance: {inputs.instance_vcpu:g} vCPU, {inputs.instance_memory_gb:g} GB, "
        f"{inputs.workers} worker(s); serves {result.instance_capacity_rps:,.1f} requests/s "
        f"with its CPU busy, planned at {result.utilisation:.0%} ({bound}): "
        f"{result.instance_planned_rps:,.1f} requests/s",
        f"instances: {result.trough_instances} at the quietest hour, {result.peak_instances} "
        f"at the peak; run {min(result.instances)}-{max(result.instances)} within the "
        f"replica bounds {inputs.min_replicas}-{inputs.max_replicas}",
        f"monthly estimate: {result.monthly_cost:,.2f} autoscaled, "
        f"{result.fixed_monthly_cost:,.2f} with {max(result.peak_instances, inputs.min_replicas)}"
        f" fixed instances ({HOURS_PER_MONTH} h at {inputs.price_vcpu_hour:g} per vCPU-hour "
        f"and {inputs.price_gb_hour:g} per GB-hour)",
    ]
    lines += [f"WARNING: {warning}" for warning in result.warnings]
    return "\n".join(lines)


def write_plot(result: Plan, path: Path) -> None:
    """A PNG of the day's traffic and the instances that carry it (matplotlib, a dev tool)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError(
            "the plot needs matplotlib, a development dependency: `uv sync` installs it "
            "(or pass --no-plot)"
        ) from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot

    hours = [24 * step / len(result.traffic) for step in range(len(result.traffic))]
    figure, traffic_axis = pyplot.subplots(figsize=(9, 4.5), dpi=100)
    try:
        traffic_axis.plot(hours, result.traffic, color="tab:blue", label="requests/s")
        traffic_axis.set_xlabel("hour of the day (UTC)")
        traffic_axis.set_ylabel("requests/s", color="tab:blue")
        traffic_axis.set_xlim(0, 24)
        traffic_axis.set_ylim(bottom=0)
        instance_axis = traffic_axis.twinx()
        instance_axis.step(hours, result.instances, where="post", color="tab:orange")
        for bound in (result.inputs.min_replicas, result.inputs.max_replicas):
            instance_axis.axhline(bound, color="tab:gray", linestyle=":", linewidth=1)
        instance_axis.set_ylabel("instances (min and max dotted)", color="tab:orange")
        instance_axis.set_ylim(0, max(result.inputs.max_replicas, result.peak_instances) + 1)
        traffic_axis.set_title(
            f"{result.inputs.requests_per_day:,.0f} requests/day: "
            f"{result.monthly_cost:,.2f} a month autoscaled"
        )
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)
