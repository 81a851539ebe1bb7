"""JSON Schema validation of loa/v1 payloads.

The schemas under ``firmware_bridge/schemas/`` are a byte-identical copy of the normative
``shared/protocol/schemas`` (a test checks this), shipped as package data so the bridge
and the simulator work without the shared folder. Each schema is registered in a
``referencing`` registry under its ``$id``, so relative references such as
``common.json#/$defs/sid`` resolve offline; the validators are built once, on schemas
with those references inlined (much faster on the server's hot paths).

A valid document (nearly every one) is recognised by jsonschema-rs, a compiled
validator of the same 2020-12 dialect, about 30× faster than walking the schema in
Python (an ack 42 µs -> 1.3 µs, a play command 0.35 ms -> 2 µs): with thousands of
stations, checking every command and ack was a quarter of a simulated station's CPU
and a share of the service's ack path.  What it does not accept is judged again by
`jsonschema`, which stays the authority and gives the reasons: a document is refused
only when `jsonschema` refuses it, so the fast path can never refuse more (Python's
``$`` also matches before a final newline, Rust's does not) and, where the two could
disagree the other way, a test compares them on generated documents.

``format`` keywords are not asserted (the ``pattern`` on timestamps already fixes the
shape, and the pydantic models reject impossible dates).
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from firmware_bridge.errors import ProtocolError

__all__ = ["SCHEMA_FILES", "MessageKind", "load_schemas", "schema_errors", "validate_payload"]

_MAX_REASON = 300


class MessageKind(StrEnum):
    """A loa/v1 payload type; the value is the schema file's stem."""

    SERVER_STATE = "server-state"
    STATION_STATE = "station-state"
    DESIRED = "desired"
    REPORTED = "reported"
    COMMAND = "command"
    ACK = "ack"
    EVENT = "event"
    TELEMETRY = "telemetry"


#: Every schema file, including the shared definitions.
SCHEMA_FILES: tuple[str, ...] = (*(f"{kind.value}.json" for kind in MessageKind), "common.json")


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Return the vendored schemas keyed by file name."""
    root = resources.files("firmware_bridge.schemas")
    return {
        name: json.loads(root.joinpath(name).read_text(encoding="utf-8")) for name in SCHEMA_FILES
    }


def _inline(node: Any, resolver: Any) -> Any:
    """``node`` with every ``$ref`` replaced by what it points at (the loa/v1 schemas
    have no recursive references).  Validating against the inlined schema is about
    three times faster than resolving references on every validation."""
    if isinstance(node, dict):
        if "$ref" in node:
            resolved = resolver.lookup(node["$ref"])
            target = _inline(resolved.contents, resolved.resolver)
            rest = {k: _inline(v, resolver) for k, v in node.items() if k != "$ref"}
            return {"allOf": [target, rest]} if rest else target
        return {k: _inline(v, resolver) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, resolver) for v in node]
    return node


@cache
def _flat_schemas() -> dict[MessageKind, dict[str, Any]]:
    """Each kind's schema, checked, with its references inlined."""
    schemas = load_schemas()
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012))
        for schema in schemas.values()
    )
    flat = {}
    for kind in MessageKind:
        schema = schemas[f"{kind.value}.json"]
        Draft202012Validator.check_schema(schema)
        flat[kind] = _inline(schema, registry.resolver(base_uri=schema["$id"]))
    return flat


@cache
def _validators() -> dict[MessageKind, Draft202012Validator]:
    return {kind: Draft202012Validator(flat) for kind, flat in _flat_schemas().items()}


@cache
def _fast() -> dict[MessageKind, jsonschema_rs.Draft202012Validator]:
    """The compiled validators, on the same inlined schemas (``format`` not asserted)."""
    return {
        kind: jsonschema_rs.Draft202012Validator(flat, validate_formats=False)
        for kind, flat in _flat_schemas().items()
    }


def _surely_valid(kind: MessageKind, document: object) -> bool:
    """True when the compiled validator accepts ``document``; False sends it to the
    Python validator (also for what is not JSON data, which jsonschema-rs refuses to
    read)."""
    try:
        return bool(_fast()[kind].is_valid(document))
    except (ValueError, TypeError):
        return False


def _describe(kind: MessageKind, error: ValidationError) -> str:
    path = "/".join(str(part) for part in error.absolute_path)
    text = f"{kind.value}: {path + ': ' if path else ''}{error.message}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def schema_errors(kind: MessageKind, document: object) -> list[str]:
    """Every schema violation of ``document`` as short reasons (empty when valid)."""
    if _surely_valid(kind, document):
        return []
    validator = _validators()[kind]
    return [_describe(kind, error) for error in validator.iter_errors(document)]


def validate_payload(kind: MessageKind, document: object) -> None:
    """Raise :class:`ProtocolError` with the most relevant violation, if any."""
    if _surely_valid(kind, document):
        return
    error = best_match(_validators()[kind].iter_errors(document))
    if error is not None:
        raise ProtocolError(_describe(kind, error), category="schema")
