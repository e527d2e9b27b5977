"""CI definitions: schema-valid workflows, pinned actions, and .ci/run running the README command.

Workflows are validated offline with ``check-jsonschema --builtin-schema
vendor.github-workflows`` (the schema ships inside the PyPI package). The covering set's
generated workflows, when the template produces any, are validated the same way.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import variants as V
import yaml
from conftest import REPO_ROOT, Renderer
from harness.processes import tail
from harness.readme import fenced_block

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
TEMPLATE_CI = REPO_ROOT / ".github" / "workflows" / "template-ci.yml"


def check_jsonschema(files: list[Path]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, files),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"schema check failed:\n{tail(out.stdout + out.stderr)}"


def test_template_workflows_are_schema_valid() -> None:
    assert TEMPLATE_CI in WORKFLOWS
    check_jsonschema(WORKFLOWS)


def _workflow() -> dict:
    # YAML 1.1 reads the key `on` as True.
    return yaml.safe_load(TEMPLATE_CI.read_text(encoding="utf-8"))


def test_template_ci_shape() -> None:
    wf = _workflow()
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert {"render", "covering"} <= set(jobs)
    assert "fromJSON" in str(jobs["render"]["strategy"]["matrix"])
    services = jobs["covering"]["services"]
    images = {svc["image"].split(":")[0] for svc in services.values()}
    assert images == {"postgres", "redis", "rabbitmq"}
    for name, svc in services.items():
        assert "--health-cmd" in svc.get("options", ""), f"service {name} has no health check"


def test_actions_are_pinned_by_version() -> None:
    for wf in WORKFLOWS:
        for uses in re.findall(r"uses:\s*([^\s#]+)", wf.read_text(encoding="utf-8")):
            assert re.search(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$", uses), f"{wf.name}: unpinned {uses}"
            assert "setup-python" not in uses, "use astral-sh/setup-uv for Python"


def test_matrix_covers_every_variant() -> None:
    matrix = V.github_matrix()
    ids = [i for entry in matrix["include"] for i in entry["variants"].split(",")]
    assert sorted(ids) == sorted(v.id for v in V.all_variants())
    assert len(matrix["include"]) <= 256


def test_ci_run_uses_the_readme_command() -> None:
    (command,) = fenced_block("template-tests")
    script = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in script
    lines = [line.strip() for line in script.splitlines()]
    assert command in lines, f".ci/run does not run the README's test command `{command}`"


@pytest.mark.generated
def test_generated_workflows_are_schema_valid(render: Renderer) -> None:
    files: list[Path] = []
    for variant in V.covering_set():
        project = render(variant)
        files += sorted((project / ".github" / "workflows").glob("*.y*ml"))
    if files:
        check_jsonschema(files)
