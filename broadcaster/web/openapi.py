"""The OpenAPI document, with every error a client can get documented in one place.

FastAPI documents what a route returns on success and its 422; the errors our error
table (`broadcaster.web.errors`) and middleware produce are added here, centrally, by
rule rather than decorator by decorator:

- every operation: 503 (the database or the broker is unavailable), 422 when it takes
  parameters or a body;
- every operation but `PUBLIC` ones (it needs a login or a signed link): 401, 403, 404
  (an object outside the caller's areas "does not exist" for them);
- operations that change state (POST, PUT, PATCH, DELETE): 409;
- operations with a body: 400 (a body the parser cannot read: not JSON, broken
  multipart) and 413 (body limits);
- public login routes: 401 and 429 (lock-out with ``Retry-After``);
- `EXTRAS`: what a few routes add (CSV, calendar, event-stream and audio media types,
  206/304 of station downloads...).

Every error body is a `Problem` (RFC 9457, ``application/problem+json``, plus a stable
machine ``code`` and ``message_vi``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from broadcaster.web.middleware import PROBLEM_MEDIA_TYPE

PROBLEM = {
    "title": "Problem",
    "description": "An error (RFC 9457 fields where known; ``message_vi`` for people).",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
            "description": "what went wrong (English), or the list of field errors",
        },
        "code": {"type": "string", "description": "stable machine code (snake_case)"},
        "message_vi": {"type": "string", "description": "Vietnamese message for the user"},
    },
    "required": ["type", "title", "status", "detail", "code"],
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

STRING = {"type": "string"}
BINARY = {"type": "string", "format": "binary"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: A table as JSON rows or CSV (``format=csv``).
ROWS: dict[str, Any] = {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    "text/csv": {"schema": STRING},
}

#: Per-route additions, by (method, path).
EXTRAS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/api/v1/stations/export.csv"): {
        "200": {"description": "CSV (UTF-8)", "content": {"text/csv": {"schema": STRING}}}
    },
    ("get", "/api/v1/playlog/totals"): {
        "200": {
            "description": "totals as JSON, or CSV with ``format=csv``",
            "content": ROWS,
        }
    },
    ("get", "/api/v1/reports/minutes"): {
        "200": {
            "description": "rows as JSON, CSV (``format=csv``) or an Excel workbook (``xlsx``)",
            "content": {**ROWS, XLSX: {"schema": BINARY}},
        }
    },
    ("post", "/api/v1/stations/import"): {
        "422": {
            "description": "rows with errors (nothing written), or invalid parameters",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ImportReport"}},
                PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF},
            },
        }
    },
    ("get", "/api/v1/broadcasts/{broadcast_id}/events"): {
        "200": {
            "description": "server-sent progress events",
            "content": {"text/event-stream": {"schema": STRING}},
        }
    },
    ("get", "/media/{name}"): {
        "200": {
            "description": "the rendition",
            "content": {
                "audio/mpeg": {"schema": BINARY},
                "audio/mp4": {"schema": BINARY},
                "audio/ogg": {"schema": BINARY},
                "application/octet-stream": {"schema": BINARY},
            },
        },
        "206": {"description": "a byte range", "content": {"audio/mpeg": {"schema": BINARY}}},
        "304": {"description": "not modified (ETag)"},
        "403": None,
        "404": None,
        "416": {"description": "range not satisfiable"},
    },
}
_PUBLIC_ERRORS = {
    ("post", "/api/v1/auth/token"): ("401", "429"),
    ("post", "/api/v1/auth/login"): ("401", "429"),
}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
    }


#: Operations anyone may call (everything else needs a login, or a signed link).
PUBLIC = frozenset(
    {
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/media/{name}"),
        ("post", "/api/v1/auth/token"),
        ("post", "/api/v1/auth/login"),
    }
)


def document_errors(schema: dict[str, Any]) -> None:
    """Add the error responses to every operation of ``schema`` (in place)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete", "head", "options"}:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            codes = {503}
            if operation.get("parameters") or "requestBody" in operation:
                codes.add(422)
            if (method, path) not in PUBLIC:
                codes |= {401, 403, 404}
            if method in {"post", "put", "patch", "delete"}:
                codes.add(409)
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                codes |= {400, 413}  # a body that cannot be parsed; one over the limit
            codes |= {int(c) for c in _PUBLIC_ERRORS.get((method, path), ())}
            framework_422 = responses.get("422", {}).get("content", {}).get("application/json")
            if framework_422 == {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}:
                del responses["422"]  # FastAPI's; answered as a problem (errors.validation_error)
            for status in sorted(codes):
                responses.setdefault(str(status), _error(status))
            for key, extra in EXTRAS.get((method, path), {}).items():
                responses[key] = _error(int(key)) if extra is None else extra


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that documents the errors (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
