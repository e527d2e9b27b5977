"""Each process a deployment manifest starts runs as that manifest starts it, without Docker.

For every covering-set project with a deployment (Kubernetes or ECS), and for its compose.yaml,
this starts `migrate`, then the api and the worker, the way the platform would:

- the command: the manifest's `command` / `Command`, or else the image's `CMD` for the target
  the manifest runs (the Dockerfile's `api` or `worker` stage). The console script is run as
  `python -m <package>` (the same `cli.main`) from the shared venv;
- the environment: the image's `ENV`, overridden by the manifest's (the ConfigMap's data, the
  task definition's `Environment`, compose's `environment`); the secrets (DATABASE_URL,
  REDIS_URL, RABBITMQ_URL) point at this machine's services. Three values are the test's own,
  for isolation from other runs on this machine: PORT (a pod has its own network namespace),
  QUEUE_NAME (a deployment has its own broker) and DATABASE_URL's database (a fresh one);
- the file system: read-only everywhere but the declared volumes. In a private mount
  namespace (`unshare -m`, so nothing changes outside the process) every mount but /proc, /sys
  and /dev is remounted read-only, as `readOnlyRootFilesystem: true` makes a container's root.
  Each volume is an empty directory of this test (an `emptyDir` starts empty), bind-mounted
  writable; container paths in the environment that fall inside a volume are rewritten to it
  (`/tmp/prometheus` -> `<volume>/prometheus`), and so is TMPDIR. Where no manifest says
  read-only (ECS, compose), the image's user 10001 can write only to /tmp and to what the
  Dockerfile chowns to it, so those are the volumes and the rest is read-only just the same.
  The working directory is an empty stand-in for the image's WORKDIR, /app.

It passes when migrate exits 0, /health/ready answers 200 while the worker runs, and both then
exit 0 on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import variants as V
import yaml
from conftest import IN_CI, Renderer, SharedVenvs
from harness.processes import (
    NOT_ON_THIS_MACHINE,
    READY_TIMEOUT,
    USER_SECRETS,
    free_port,
    fresh_database,
    interpolate,
    project_env,
    tail,
    wait_ready,
)

STOP_TIMEOUT = 60
SECRETS = ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "API_KEY_DIGESTS")
WORKDIR = Path("/app")
ORDER = ("migrate", "api", "worker")  # the order a release runs them: migrate must finish first
# Run as root in a private mount namespace: remount all but the kernel's file systems
# read-only, then each volume (the arguments before --) writable, then exec the command.
READ_ONLY_ROOT = r"""
set -e
while [ "$1" != "--" ]; do volumes="$volumes $1"; shift; done; shift
for target in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$target"
done
for volume in $volumes; do
  mount --bind "$volume" "$volume"
  mount -o remount,bind,rw "$volume"
done
exec "$@"
"""


@dataclass
class Container:
    name: str  # migrate, api or worker
    argv: list[str]
    env: dict[str, str]
    volumes: list[Path]  # container paths where something may be written
    origin: str
    read_only_root: bool = True
    probe: list[str] = field(default_factory=list)  # the liveness check's command, if any


@dataclass
class Image:
    env: dict[str, str]
    cmd: list[str]
    writable: list[Path]
    healthcheck: list[str] = field(default_factory=list)


def _params() -> list[pytest.ParameterSet]:
    """Every covering-set variant's manifests; the compose file for one variant per flavor
    (its processes vary less, and tests/test_compose_processes.py starts another)."""
    deployed = [v for v in V.covering_set() if v.autoscaling != "none"]
    composed = {
        next(v for v in deployed if v.flavor.startswith(f)).id for f in ("fintech", "graph")
    }
    return [
        pytest.param(v, platform, id=f"{v.id}-{platform}", marks=pytest.mark.xdist_group(v.id))
        for v in deployed
        for platform in ("manifests", "compose")
        if platform == "manifests" or v.id in composed
    ]


def dockerfile_stages(project: Path) -> dict[str, Image]:
    """ENV, CMD and the user's writable directories of each stage (`FROM x AS y` inherits)."""
    text = (project / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, Image] = {}
    current: Image | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "FROM":
            parent = stages.get(words[1])
            current = Image(
                dict(parent.env) if parent else {},
                list(parent.cmd) if parent else [],
                list(parent.writable) if parent else [Path("/tmp")],
            )
            stages[words[-1]] = current
        elif current is None:
            continue
        elif instruction == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line):
                current.env[key] = value.strip('"')
        elif instruction == "CMD":
            current.cmd = json.loads(line.split(None, 1)[1])
        elif instruction == "HEALTHCHECK":
            check = re.search(r"CMD (\[.*\])", line)
            current.healthcheck = json.loads(check.group(1)) if check else []
        elif instruction == "RUN":
            chowned = re.search(r"mkdir -p (\S+) && chown -R 10001:10001 (\S+)", line)
            if chowned:
                current.writable.append(Path(chowned.group(2)))
    return stages


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads the template's shape; intrinsic functions (!Ref, !Sub, ...) load as None."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def kubernetes_containers(project: Path, images: dict[str, Image]) -> list[Container]:
    deploy = project / "deploy" / "kubernetes"
    config = yaml.safe_load((deploy / "configmap.yaml").read_text())["data"]
    containers = []
    for manifest in ("migrate-job.yaml", "api.yaml", "worker.yaml"):
        if not (deploy / manifest).exists():
            continue
        for doc in yaml.safe_load_all((deploy / manifest).read_text()):
            if doc["kind"] not in {"Deployment", "Job"}:
                continue
            pod = doc["spec"]["template"]["spec"]
            (spec,) = pod["containers"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            mounts = [
                Path(m["mountPath"])
                for m in spec.get("volumeMounts", [])
                if "emptyDir" in volumes[m["name"]]
            ]
            assert spec["envFrom"][0]["configMapRef"]["name"].endswith("-config"), manifest
            image = images["worker" if spec["name"] == "worker" else "api"]
            containers.append(
                Container(
                    name=spec["name"],
                    argv=spec.get("command", image.cmd),
                    env={**image.env, **{k: str(v) for k, v in config.items()}},
                    volumes=mounts,
                    origin=f"deploy/kubernetes/{manifest}",
                    read_only_root=spec["securityContext"].get("readOnlyRootFilesystem", False),
                    probe=spec.get("livenessProbe", {}).get("exec", {}).get("command", []),
                )
            )
    return containers


def ecs_containers(project: Path, images: dict[str, Image]) -> list[Container]:
    template = yaml.load(
        (project / "deploy" / "ecs" / "service.yaml").read_text(), _CloudFormationLoader
    )
    containers = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        (spec,) = resource["Properties"]["ContainerDefinitions"]
        image = images["worker" if spec["Name"] == "worker" else "api"]
        env = {e["Name"]: str(e["Value"]) for e in spec.get("Environment", [])}
        # An optional secret (`!If`, loaded as None) is absent when its parameter is empty,
        # as these processes start: without it.
        secrets = {s["Name"] for s in spec.get("Secrets", []) if s is not None}
        assert secrets <= set(SECRETS), spec["Name"]
        writable = [] if spec.get("ReadonlyRootFilesystem") else image.writable
        containers.append(
            Container(
                name=spec["Name"],
                argv=spec.get("Command", image.cmd),
                env={**image.env, **env},
                volumes=writable,
                origin=f"deploy/ecs/service.yaml {spec['Name']}",
                probe=spec.get("HealthCheck", {}).get("Command", [])[1:],  # after "CMD"
            )
        )
    return containers


def compose_containers(project: Path, images: dict[str, Image]) -> list[Container]:
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    containers = []
    for name in ORDER:
        if name not in services:
            continue
        service = services[name]
        image = images[service["build"]["target"]]
        argv = service.get("command", image.cmd)
        containers.append(
            Container(
                name=name,
                argv=shlex.split(argv) if isinstance(argv, str) else list(argv),
                env={
                    **image.env,
                    **{
                        k: interpolate(str(v))
                        for k, v in service["environment"].items()
                        if k not in NOT_ON_THIS_MACHINE
                    },
                },
                volumes=image.writable,
                origin=f"compose.yaml {name}",
                probe=image.healthcheck,
            )
        )
    return containers


@pytest.fixture
def database(service_urls: dict[str, str]) -> Iterator[str]:
    with fresh_database(service_urls["DATABASE_URL"], "manifest") as url:
        yield url


def _read_only_root_available() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


class Sandbox:
    """Host directories standing in for one container's volumes and working directory."""

    def __init__(self, root: Path, container: Container) -> None:
        self.container = container
        self.workdir = root / "app"
        self.workdir.mkdir(parents=True)
        self.mounts: dict[Path, Path] = {}
        for volume in container.volumes:
            host = (
                self.workdir / volume.relative_to(WORKDIR)
                if volume.is_relative_to(WORKDIR)
                else root / "volumes" / volume.relative_to("/")
            )
            host.mkdir(parents=True)
            self.mounts[volume] = host

    def host_path(self, value: str) -> str:
        if not value.startswith("/"):
            return value
        path = Path(value)
        for volume, host in self.mounts.items():
            if path.is_relative_to(volume):
                return str(host / path.relative_to(volume))
        return value

    def command(self, python: str, package: str, slug: str) -> list[str]:
        argv = self.container.argv
        assert argv[0] == slug, f"{self.container.origin} runs {argv}, not {slug}"
        volumes = [str(host) for host in self.mounts.values()]
        shell = ["sh", "-c", READ_ONLY_ROOT, "read-only-root", *volumes, "--"]
        return ["unshare", "-m", "--propagation", "private", *shell, python, "-m", package,
                *argv[1:]]  # fmt: skip


def _environment(
    sandbox: Sandbox, project: Path, venv: Path, local: dict[str, str], own: dict[str, str]
) -> dict[str, str]:
    env = {k: sandbox.host_path(v) for k, v in sandbox.container.env.items()}
    env.pop("PATH", None)  # the image's venv PATH; the shared venv's python runs instead
    env.update({k: v for k, v in local.items() if k in SECRETS})
    env.update(own)
    tmp = sandbox.host_path("/tmp")
    env["TMPDIR"] = tmp if tmp != "/tmp" else str(sandbox.workdir)
    env["HOME"] = str(sandbox.workdir)
    return project_env(project, venv, env)


def _check_liveness(
    sandbox: Sandbox, project: Path, venv: Path, local: dict[str, str], own: dict[str, str]
) -> None:
    """The container's liveness probe, run in its environment, passes while it runs."""
    probe = sandbox.container.probe
    if not probe:
        return
    assert probe[0] == "python", f"{sandbox.container.origin}: probe {probe}"
    env = _environment(sandbox, project, venv, local, own)
    argv = [str(venv / "bin" / "python"), *probe[1:]]
    # The probes wait for the process to come up (initialDelaySeconds, StartPeriod): so does
    # this, retrying until it passes or the start-up limit is spent.
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        done = subprocess.run(
            argv, env=env, cwd=sandbox.workdir, capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{sandbox.container.origin} probe: {done.stderr}"
        time.sleep(1)


def _check_metrics(port: int, metrics_port: str | None) -> None:
    """Production serves no metrics on the API port; the metrics port, where set, does."""
    api = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert api.status_code == 404, "metrics are public on the API port"
    if metrics_port is not None:
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert 'route="/health/ready"' in scraped.text, scraped.text[:2000]
        # Readiness ran against the manifest's database: its statements and pool are counted.
        assert 'db_query_duration_seconds_count{statement="select"}' in scraped.text
        assert "process_resident_memory_bytes" in scraped.text


def _check_worker_metrics(metrics_port: str) -> None:
    """The worker's own metrics port: its sweeper has counted the queue by the time it is
    scraped (it sweeps once at start), and its processes' memory is summed."""
    deadline = time.monotonic() + 60
    while True:
        try:
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        except httpx.TransportError:
            scraped = None
        if scraped is not None and "db_pool_size" in scraped.text:
            break
        assert time.monotonic() < deadline, "the worker's metrics port never served its pool"
        time.sleep(0.2)
    assert scraped.status_code == 200
    assert "process_resident_memory_bytes" in scraped.text


@pytest.mark.generated
@pytest.mark.services
@pytest.mark.parametrize(("variant", "platform"), _params())
def test_processes_start_as_the_manifests_start_them(
    variant: V.Variant,
    platform: str,
    render: Renderer,
    shared_venv: SharedVenvs,
    service_urls: dict[str, str],
    database: str,
    tmp_path: Path,
) -> None:
    if not _read_only_root_available():
        message = "unshare -m is not permitted here: no read-only root to run the manifests in"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    project = render(variant)
    slug = yaml.safe_load((project / "compose.yaml").read_text())["name"]
    package = next(p.name for p in (project / "src").iterdir() if p.is_dir())
    images = dockerfile_stages(project)
    if platform == "compose":
        containers = compose_containers(project, images)
    elif variant.autoscaling == "kubernetes":
        containers = kubernetes_containers(project, images)
    else:
        containers = ecs_containers(project, images)
    containers.sort(key=lambda c: ORDER.index(c.name))
    names = [c.name for c in containers]
    assert names[0] == "migrate", names
    assert "api" in names, names
    assert ("worker" in names) == (variant.queue != "none"), names

    venv = shared_venv(variant.python)
    python = str(venv / "bin" / "python")
    # The fresh database, not the server's shared one that service_urls names.
    local = {
        **{k: v for k, v in service_urls.items() if k in SECRETS},
        "DATABASE_URL": database,
        "API_KEY_DIGESTS": USER_SECRETS["API_KEY_DIGESTS"],
    }
    port = free_port()
    own = {"PORT": str(port), "QUEUE_NAME": f"manifest-{uuid.uuid4().hex[:10]}"}
    for name in ("METRICS_PORT", "WORKER_METRICS_PORT"):
        if any(name in c.env for c in containers):  # a pod has its own network namespace:
            own[name] = str(free_port())  # so has this run

    sandboxes = {c.name: Sandbox(tmp_path / c.name, c) for c in containers}
    migrate = sandboxes["migrate"]
    done = subprocess.run(
        migrate.command(python, package, slug), cwd=migrate.workdir, capture_output=True,
        env=_environment(migrate, project, venv, local, own), text=True, timeout=180,
    )  # fmt: skip
    (tmp_path / "migrate.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{migrate.container.origin}:\n{tail(done.stdout + done.stderr)}"

    logs = {name: tmp_path / f"{name}.log" for name in sandboxes}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("api", "worker"):
            if name not in sandboxes:
                continue
            sandbox = sandboxes[name]
            with open(logs[name], "wb") as log:
                processes[name] = subprocess.Popen(
                    sandbox.command(python, package, slug), cwd=sandbox.workdir, stdout=log,
                    env=_environment(sandbox, project, venv, local, own),
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        wait_ready(port, processes, logs)
        time.sleep(2)  # the worker has connected to its broker by now, or died trying
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited:\n{tail(logs[name].read_text())}"
        for name in processes:
            _check_liveness(sandboxes[name], project, venv, local, own)
        _check_metrics(port, own.get("METRICS_PORT"))
        if "worker" in processes and "WORKER_METRICS_PORT" in own:
            _check_worker_metrics(own["WORKER_METRICS_PORT"])
        # As the platform stops a container: SIGTERM to its main process only (the worker's
        # pool processes hear it from their parent).
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            code = process.wait(timeout=STOP_TIMEOUT)
            assert code == 0, f"{name} exited {code} on SIGTERM:\n{tail(logs[name].read_text())}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for name in processes:
        text = logs[name].read_text()
        errors = [line for line in text.splitlines() if '"level":"ERROR"' in line]
        origin = sandboxes[name].container.origin
        assert not errors, f"{origin} logged errors:\n" + "\n".join(errors)
        assert "Traceback" not in text, f"{origin}:\n{tail(text)}"
        # Something the service keeps (the vector index, metrics files) outside the volumes
        # the manifest declares: it works, and loses that on every start.
        assert "Read-only file system" not in text, f"{origin}:\n{tail(text)}"
