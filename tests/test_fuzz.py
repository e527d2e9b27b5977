"""Schemathesis against real `serve` processes: an unmigrated service answers no 5xx but its
"not migrated" 503s, and a migrated one passes every check.

The second test (`test_migrated_service_passes_every_schemathesis_check`) runs the schemathesis
CLI with `--checks all` in every phase against a migrated service with a user's credentials,
on SQLite and PostgreSQL, and fails on any finding; SCHEMATHESIS_CONFIG lists the few places
where the service refuses on purpose what a schema cannot express, each with its reason.

The rest of this docstring is about the first test.


For one fintech and one graph_rag variant of the covering set (Python 3.11), the generated
service runs as a real process (``python -m <package> serve``, uvicorn) on a database that has
never been migrated: a fresh, empty SQLite file, and, when TEST_DATABASE_URL is set, a fresh,
empty PostgreSQL database that the test creates and drops (the database the URL names is only
connected to). ``AUTO_MIGRATE=false``: ``serve`` would otherwise migrate any SQLite URL, the
explicit one too (``Settings.should_auto_migrate``). /health/ready must say so before the run
and still say so after it, or the run proved nothing.

Schemathesis (its Python API; Hypothesis drives the generation) then sends every operation of
the service's own /openapi.json valid and invalid requests, half of them with a random bearer
token, so authenticated routes reach their token lookup (a missing table) instead of stopping
at a 401. The run is bounded and deterministic: FUZZ_MAX_EXAMPLES per operation and generation
mode, a fixed seed (FUZZ_SEED), no shrinking, no example database, loopback only.

What fails the test, and why only that
    - a 5xx, except the 503 the service promises for this state: problem+json with
      ``code == "schema_not_migrated"``, a ``request_id`` equal to the X-Request-ID header and
      a Retry-After header; /health/ready's documented 503 must name SchemaNotMigratedError
      in ``checks.database``. A 500, or a 503 without those members, is a request that the
      service did not translate: the failure shows it as a curl command, with the service's
      log.
    - a body that is not valid JSON where JSON is declared (by the response's Content-Type,
      or by the operation's documented responses for that status): clients parse those.

    Schemathesis's other checks (documented status codes, response schemas, negative data
    rejection, ...) run too, but their findings are only listed in the output (``pytest -s``
    shows it): on an unmigrated database most operations answer a 503 that their OpenAPI
    entry does not list, so those checks report that state, not a bug of the request handling
    this test is about. Conformance of a migrated service is what the generated suites test.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import variants as V
from conftest import IN_CI, Renderer, SharedVenvs
from harness.processes import free_port, fresh_database, project_env, tail

COVERING = V.covering_set()
VARIANTS = [
    next(v for v in COVERING if v.python == "3.11" and v.answers()["flavor"] == flavor)
    for flavor in ("fintech", "graph_rag")
]
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", 20))
SEED = int(os.environ.get("FUZZ_SEED", 20261201))
READY_TIMEOUT = 60.0
REQUEST_TIMEOUT = 15.0
# AUTO_MIGRATE=false: see the module docstring. The service's own rate limit would turn most
# of the run into 429s.
SERVICE_ENV = {
    "AUTO_MIGRATE": "false",
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "LOG_FORMAT": "console",
    "ACCESS_LOG": "false",  # the log tail in a failure shows errors and tracebacks only
}


def _params() -> list[pytest.ParameterSet]:
    params = []
    for variant in VARIANTS:
        for backend in ("sqlite", "postgresql"):
            marks = [pytest.mark.xdist_group(variant.id)]
            if backend == "postgresql":
                marks.append(pytest.mark.services)
            params.append(pytest.param(variant, backend, id=f"{variant.id}-{backend}", marks=marks))
    return params


# ---------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------
@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False)  # loopback: no proxy


def get(url: str) -> httpx.Response:
    return _client().get(url)


@contextlib.contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        message = "TEST_DATABASE_URL not set: the PostgreSQL run needs a server (.ci/run sets it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with fresh_database(server, "fuzz") as url:
        yield url


@dataclass
class Service:
    url: str
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log.read_text(errors="replace"), lines)

    def readiness(self) -> tuple[int, dict[str, Any]]:
        response = get(f"{self.url}/health/ready")
        return response.status_code, response.json()


def package_of(project: Path) -> str:
    return next(p.name for p in (project / "src").iterdir() if (p / "__main__.py").is_file())


@contextlib.contextmanager
def running_service(
    project: Path,
    venv: Path,
    database_url: str,
    workdir: Path,
    settings: dict[str, str] = SERVICE_ENV,
) -> Iterator[Service]:
    package = package_of(project)
    port = free_port()
    env = project_env(project, venv, {**settings, "DATABASE_URL": database_url})
    cmd = [str(venv / "bin" / "python"), "-m", package, "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    log = workdir / "service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    service = Service(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"`{' '.join(cmd)}` exited {process.returncode}:\n{service.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                service.readiness()
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{service.url} did not answer in {READY_TIMEOUT:.0f}s")
            time.sleep(0.5)
        yield service
        assert process.poll() is None, f"the service died during the run:\n{service.log_tail()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def assert_not_migrated(service: Service, when: str) -> None:
    status, body = service.readiness()
    database = str(body.get("checks", {}).get("database", ""))
    if status != 503 or not database.startswith("SchemaNotMigratedError"):
        pytest.fail(
            f"{when} the run, /health/ready must report the unmigrated schema (503, "
            "checks.database = SchemaNotMigratedError: ...), or this test fuzzes something else: "
            f"got {status} {json.dumps(body)[:500]}\n{service.log_tail()}",
            pytrace=False,
        )


# ---------------------------------------------------------------------------------------------
# What a response may be
# ---------------------------------------------------------------------------------------------
def _header(response: Any, name: str) -> str:
    for key, values in response.headers.items():
        if key.lower() == name.lower():
            return str(values[0]) if isinstance(values, list) else str(values)
    return ""


def _is_json_media(media: str) -> bool:
    media = media.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def documented_media(openapi: dict[str, Any], method: str, path: str, status: int) -> list[str]:
    responses = openapi["paths"][path][method.lower()].get("responses", {})
    documented = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    documented = documented or responses.get("default") or {}
    return list(documented.get("content", {}))


def unaccepted_503(path: str, response: Any, body: Any) -> str:
    """What this 503 lacks of the one the service promises while its schema is not migrated
    ("" when it is that one)."""
    if not isinstance(body, dict):
        return "no JSON object body"
    missing = [] if body.get("request_id") else ["request_id"]
    if path == "/health/ready":
        if not str(body.get("checks", {}).get("database", "")).startswith("SchemaNotMigratedError"):
            missing.append("checks.database = SchemaNotMigratedError: ...")
    else:
        if not _header(response, "content-type").startswith("application/problem+json"):
            missing.append("Content-Type application/problem+json")
        if body.get("code") != "schema_not_migrated":
            missing.append('code "schema_not_migrated"')
        if body.get("request_id") != _header(response, "x-request-id"):
            missing.append("request_id = the X-Request-ID header")
        if not _header(response, "retry-after").isdigit():
            missing.append("Retry-After header")
    return f"without {', '.join(missing)}" if missing else ""


@dataclass
class Findings:
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    conformance: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    requests: int = 0


def judge(openapi: dict[str, Any], case: Any, response: Any, findings: Findings) -> None:
    label = f"{case.method.upper()} {case.path}"
    counts = findings.statuses.setdefault(label, {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    findings.requests += 1
    content_type = _header(response, "content-type")
    declared = documented_media(openapi, case.method, case.path, response.status_code)
    json_declared = _is_json_media(content_type) or (
        bool(declared) and all(_is_json_media(m) for m in declared) and bool(response.content)
    )
    body: Any = None
    problem = ""
    if json_declared:
        try:
            body = json.loads(response.content)
        except ValueError:
            problem = f"not valid JSON (Content-Type {content_type!r}, documented {declared})"
    if not problem and response.status_code == 503:
        if lacks := unaccepted_503(case.path, response, body):
            problem = f"503 {lacks}"
    elif not problem and response.status_code >= 500:
        problem = f"{response.status_code}, not the schema_not_migrated 503"
    if problem:
        key = (label, problem)
        if key not in findings.failures:
            curl = case.as_curl_command(headers=dict(response.request.headers))
            findings.failures[key] = (
                f"{label}: {problem}\n  {curl}\n"
                f"  -> {response.status_code} {content_type}: {response.content[:400]!r}"
            )


def record_conformance(case: Any, response: Any, sent: dict[str, str], findings: Findings) -> None:
    """Schemathesis's other checks: listed, never failing (see the module docstring)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup

    label = f"{case.method.upper()} {case.path}"
    try:
        case.validate_response(response, excluded_checks=[not_a_server_error], headers=sent)
    except FailureGroup as group:
        for failure in group.exceptions:
            key = (label, failure.title)
            message = " ".join(str(failure.message).split())[:200]
            findings.conformance.setdefault(key, f"{response.status_code}: {message}")
    except Exception as exc:  # a check that could not run is a finding, not a crash
        findings.conformance.setdefault((label, type(exc).__name__), str(exc)[:200])


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def fuzz(base_url: str, hypothesis_home: Path) -> Findings:
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.configuration import set_hypothesis_home_dir
    from schemathesis.config import OutputConfig, SanitizationConfig

    openapi = get(f"{base_url}/openapi.json").json()
    # No schemathesis.toml from the working directory; curl commands show the header sent.
    config = schemathesis.Config(
        output=OutputConfig(sanitization=SanitizationConfig(enabled=False))
    )
    schema = schemathesis.openapi.from_dict(openapi, config=config)
    findings = Findings()
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment
    bounded = settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    # Hypothesis's caches (it keeps no example database: see `bounded`) are the session's, not
    # the working directory's.
    set_hypothesis_home_dir(hypothesis_home)
    try:
        for result in schema.get_all_operations():
            fuzz_operation(result, base_url, openapi, session, bounded, findings)
    finally:
        set_hypothesis_home_dir(None)
        session.close()
    return findings


def fuzz_operation(
    result: Any,
    base_url: str,
    openapi: dict[str, Any],
    session: Any,
    bounded: Any,
    findings: Findings,
) -> None:
    import schemathesis
    from hypothesis import given, seed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.result import Ok

    tokens = st.one_of(st.none(), st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1))
    if not isinstance(result, Ok):
        pytest.fail(f"{base_url}/openapi.json has an invalid operation: {result.err()}")
    operation = result.ok()
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

        @seed(SEED)
        @bounded
        @given(case=operation.as_strategy(generation_mode=mode), token=tokens)
        def send(case: Any, token: str | None) -> None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if any(k.lower() == "authorization" for k in case.headers or {}):
                headers = {}
            response = case.call(
                base_url=base_url,
                session=session,
                headers=headers,
                timeout=REQUEST_TIMEOUT,
                allow_redirects=False,
            )
            judge(openapi, case, response, findings)
            record_conformance(case, response, headers, findings)

        try:
            send()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters or body.
            if mode is not schemathesis.GenerationMode.NEGATIVE:
                raise


def report(findings: Findings) -> str:
    lines = [f"{findings.requests} requests; status codes by operation:"]
    for label, counts in sorted(findings.statuses.items()):
        lines.append(f"  {label}: " + ", ".join(f"{s}x{n}" for s, n in sorted(counts.items())))
    if findings.conformance:
        lines.append("schemathesis's other checks (not failing, see the module docstring):")
        for (label, title), sample in sorted(findings.conformance.items()):
            lines.append(f"  {label}: {title} (e.g. {sample})")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hypothesis's cache directory: its Unicode tables take seconds to build, once a session."""
    return tmp_path_factory.mktemp("hypothesis")


@pytest.mark.generated
@pytest.mark.parametrize(("variant", "backend"), _params())
def test_unmigrated_service_answers_no_unexpected_5xx(
    variant: V.Variant,
    backend: str,
    render: Renderer,
    shared_venv: SharedVenvs,
    hypothesis_home: Path,
    tmp_path: Path,
) -> None:
    project = render(variant)
    venv = shared_venv(variant.python)
    started = time.monotonic()
    with (
        empty_database(backend, tmp_path) as database_url,
        running_service(project, venv, database_url, tmp_path) as service,
    ):
        assert_not_migrated(service, "before")
        findings = fuzz(service.url, hypothesis_home)
        assert_not_migrated(service, "after")
        summary = report(findings)
        if findings.failures:
            pytest.fail(
                f"{len(findings.failures)} response(s) the service should not give on an "
                f"unmigrated {backend} database (seed {SEED}, {MAX_EXAMPLES} examples per "
                "operation and mode):\n\n" + "\n\n".join(findings.failures.values())
                + f"\n\n{summary}\n--- service log ---\n{service.log_tail(80)}",
                pytrace=False,
            )  # fmt: skip
        print(f"{variant.id} on {backend}: {time.monotonic() - started:.1f}s\n{summary}")


# ---------------------------------------------------------------------------------------------
# A migrated service, with credentials: every schemathesis check, every phase
# ---------------------------------------------------------------------------------------------
API_KEY = "fuzz-api-key"
MIGRATED_ENV = {
    "AUTO_MIGRATE": "true",
    "ENVIRONMENT": "development",  # /openapi.json is served
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "RATE_LIMIT_AUTH_FAILURES": "1000000/minute",
    "API_KEY_DIGESTS": json.dumps({hashlib.sha256(API_KEY.encode()).hexdigest(): "fuzz"}),
    "LOG_FORMAT": "console",
    "ACCESS_LOG": "false",
}
# Where the service refuses on purpose what its schema cannot say, each for a reason of its own.
SCHEMATHESIS_CONFIG = """\
# A NUL character is refused in every string (PostgreSQL cannot store it; see the project's
# schemas.py), which the schema does not spell out for every string and every JSON value.
generation.allow-x00 = false

# A batch stores its valid items and reports the invalid ones (207): a partial acceptance,
# documented on the operation, not an invalid batch accepted.
[[operations]]
include-path = "/ingest/batch"
checks.negative_data_rejection.expected-statuses = [207, 400, 401, 413, 422, 429]

# A schema-valid trade can break a rule of the data: an unknown instrument, another currency,
# not enough cash or holdings. Those are 422 naming the field.
[[operations]]
include-path-regex = "^/api/users/.*/trades$"
checks.positive_data_acceptance.expected-statuses = [201, 401, 403, 404, 409, 422, 429]
"""


def credentials(
    variant: V.Variant, project: Path, venv: Path, database_url: str, workdir: Path
) -> str:
    """The Authorization header value a client of this variant sends."""
    if variant.answers()["flavor"] == "graph_rag":
        return f"Bearer {API_KEY}"
    tokens = workdir / "tokens.tsv"
    env = project_env(project, venv, {**MIGRATED_ENV, "DATABASE_URL": database_url})
    seed = [str(venv / "bin" / "python"), "-m", package_of(project), "seed"]
    seed += ["--users", "3", "--instruments", "20", "--tokens-file", str(tokens)]
    done = subprocess.run(seed, env=env, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    return f"Bearer {tokens.read_text().split()[1]}"


@pytest.mark.generated
@pytest.mark.parametrize(("variant", "backend"), _params())
def test_migrated_service_passes_every_schemathesis_check(
    variant: V.Variant,
    backend: str,
    render: Renderer,
    shared_venv: SharedVenvs,
    tmp_path: Path,
) -> None:
    """Every check (`--checks all`: server errors, status codes, content types, response
    schemas and headers, positive and negative data, Allow headers, ...) in every phase
    (examples, coverage, fuzzing, stateful), with a user's credentials."""
    project = render(variant)
    venv = shared_venv(variant.python)
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    with empty_database(backend, tmp_path) as database_url:
        authorization = credentials(variant, project, venv, database_url, tmp_path)
        with running_service(project, venv, database_url, tmp_path, MIGRATED_ENV) as service:
            status, body = service.readiness()
            assert status == 200, body
            cli = Path(sys.executable).parent / "schemathesis"
            command = [str(cli), "--config-file", str(config), "run", f"{service.url}/openapi.json"]
            command += ["--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"]
            command += ["--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED)]
            command += ["--header", f"Authorization: {authorization}", "--no-color"]
            done = subprocess.run(
                command, cwd=tmp_path, capture_output=True, text=True, timeout=600
            )
    output = done.stdout + done.stderr
    counted = re.search(r"(\d+) generated, .*", output)
    summary = counted.group(0) if counted else "no summary"
    if done.returncode != 0:
        pytest.fail(
            f"schemathesis found failures on {variant.id} / {backend} ({summary}):\n"
            f"{tail(output, 150)}\n--- service log ---\n{service.log_tail(60)}",
            pytrace=False,
        )
    print(f"{variant.id} on {backend}: {summary}")
