"""The OpenAPI schema as clients meet the service: every error body and every limit documented.

FastAPI documents what a route declares. This adds, once, when the schema is first asked for:
the `application/problem+json` body of every error answer (see errors.py), the answers every
operation can give (400 for an unreadable body, 413 over the body limit, 422, 500, 503),
each operation's body limit in its description, and the job kinds POST /api/jobs accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from .errors import PROBLEM_JSON
from .jobs import public_kinds


class FieldProblem(BaseModel):
    field: str = Field(description="Where: `body.quantity`, `query.q`, `path.job_id`, ...")
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code` and the request's id."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable: branch on this, not on `detail`.")
    request_id: str = Field(description="Also in the X-Request-ID header and the server's logs.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="One entry per invalid field (400, 422)."
    )


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"

_EVERY_OPERATION = {
    "500": "Unexpected error; quote the request_id when reporting it",
    "503": "A dependency is unavailable or the server is shutting down; retry after Retry-After",
}
_WITH_PARAMETERS = {"422": "Invalid parameter or body field; `errors` names each one"}
_WITH_BODY = {
    "400": "The body is not readable JSON (invalid UTF-8, too deep, a huge integer)",
    "413": "The body exceeds this operation's limit",
}


def install_openapi(app: FastAPI, body_limits: Iterable[tuple[APIRoute, int]]) -> None:
    """Have `app.openapi()` build the schema with the additions above (once, then cached)."""
    limits = {
        (route.path_format, method): limit
        for route, limit in body_limits
        for method in route.methods or ()
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _document(schema, limits)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(schema: dict[str, Any], limits: dict[tuple[str, str], int]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            defaults = dict(_EVERY_OPERATION)
            if operation.get("parameters") or "requestBody" in operation:
                defaults.update(_WITH_PARAMETERS)
            if "requestBody" in operation:
                defaults.update(_WITH_BODY)
                limit = limits.get((path, method.upper()))
                if limit is not None:
                    note = f"Request body: at most {limit} bytes; a larger one is refused (413)."
                    operation["description"] = "\n\n".join(
                        filter(None, [operation.get("description"), note])
                    )
            for status, description in defaults.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45" and _plain(response):
                    response["content"] = _PROBLEM_CONTENT
    _document_job_kinds(schema)
    if not _mentions(schema.get("paths", {}), _VALIDATION_REF):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


def _document_job_kinds(schema: dict[str, Any]) -> None:
    """POST /api/jobs takes the public job kinds registered when the schema is built (after
    the lifespan imported JOB_MODULES); with none, it accepts nothing and is left out."""
    kinds = public_kinds()
    request = schema["components"]["schemas"].get("JobRequest")
    if request is None:
        return
    if kinds:
        request["properties"]["kind"] = {
            **request["properties"]["kind"],
            "enum": kinds,
            "examples": kinds[:1],
        }
        return
    jobs = schema["paths"].get("/api/jobs", {})
    jobs.pop("post", None)
    if not jobs:
        schema["paths"].pop("/api/jobs", None)
    schema["components"]["schemas"].pop("JobRequest", None)


def _plain(response: dict[str, Any]) -> bool:
    """No body documented, or only FastAPI's own validation error body."""
    content = response.get("content")
    if not content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return list(content) == ["application/json"] and schema.get("$ref") == _VALIDATION_REF


def _mentions(value: Any, ref: str) -> bool:
    if isinstance(value, dict):
        return value.get("$ref") == ref or any(_mentions(v, ref) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, ref) for v in value)
    return False
