"""The compiled fast path of loa/v1 validation (jsonschema-rs) never accepts what the
Python validator (`jsonschema`, the authority) refuses, and accepts what the service and
the simulator really send, so the fast path is taken.

Documents: valid payloads of every kind as the code builds them, then hypothesis
mutations of them (a value replaced, a key removed or added, a string edited at its
ends, numbers at and beyond their bounds)."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from firmware_bridge import schema
from firmware_bridge.messages import (
    EMERGENCY,
    Ack,
    Command,
    Event,
    PlayBody,
    Reported,
    StationState,
    Telemetry,
    dump_message,
)
from firmware_bridge.schema import MessageKind, schema_errors, validate_payload
from tests.firmware_bridge.test_protocol import NOW
from tests.support.loa import desired, file_item

MEDIA = {"url": "http://m/a.mp3", "sha256": "a" * 64, "bytes": 10, "duration_ms": 30_000}


def _documents() -> list[tuple[MessageKind, dict[str, Any]]]:
    play = PlayBody(priority=EMERGENCY, media=MEDIA, start_at=NOW, repeat=2, volume=100)
    messages = [
        (MessageKind.ACK, Ack(cmd_id="c-1", status="RECEIVED", at=NOW)),
        (MessageKind.ACK, Ack(cmd_id="c-1", status="FAILED", at=NOW, reason="busy: x")),
        (MessageKind.COMMAND, Command.new("play", play, now=NOW)),
        (MessageKind.COMMAND, Command.new("stop", now=NOW)),
        (MessageKind.COMMAND, Command.new("ping", now=NOW)),
        (MessageKind.TELEMETRY, Telemetry(seq=4, at=NOW, uptime_s=9, volume=70, playing=None)),
        (
            MessageKind.STATION_STATE,
            StationState(
                online=True, bdseq=3, at=NOW, firmware="1", capabilities=["file"], desired_version=2
            ),
        ),
        (MessageKind.STATION_STATE, StationState(online=False, bdseq=3)),
        (MessageKind.REPORTED, Reported(desired_version=2, at=NOW, missing=[])),
        (MessageKind.EVENT, Event(event_id="e-1", type="play.started", at=NOW, cmd_id="c-1")),
        (
            MessageKind.DESIRED,
            desired(
                7,
                [file_item("i-1", MEDIA, NOW + timedelta(minutes=5))],
                now=NOW,
                groups=["tan-an"],
            ),
        ),
    ]
    return [(kind, json.loads(dump_message(message))) for kind, message in messages]


DOCUMENTS = _documents()


def _python_valid(kind: MessageKind, document: object) -> bool:
    python: Draft202012Validator = schema._validators()[kind]
    return bool(python.is_valid(document))


@pytest.mark.parametrize(("kind", "document"), DOCUMENTS, ids=[k.value for k, _ in DOCUMENTS])
def test_what_the_code_sends_takes_the_fast_path(kind: MessageKind, document: Any) -> None:
    assert schema._surely_valid(kind, document)
    assert _python_valid(kind, document)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, 9, 10, 100, 101, -1, 1.0, 9.5, 2**53, "", "a" * 129, "x\n"])
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
STRING_EDITS = st.sampled_from(["", " ", "\n", "-", ".", "Z", "0", "A", "é", "\u0663"])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[MessageKind, Any]:
    kind, base = draw(st.sampled_from(DOCUMENTS))
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            continue
        *head, last = path
        parent = document
        for step in head:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add", "edit"]))
        if action == "replace":
            parent[last] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        elif action == "edit" and isinstance(parent[last], str):
            edit = draw(STRING_EDITS)
            parent[last] = edit + parent[last] if draw(st.booleans()) else parent[last] + edit
    return kind, document


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_fast_path_never_accepts_what_jsonschema_refuses(case: tuple[MessageKind, Any]) -> None:
    kind, document = case
    if schema._surely_valid(kind, document):
        assert _python_valid(kind, document), (kind, document)
    # and the public answers are the authority's, with its reasons
    errors = schema_errors(kind, document)
    assert (errors == []) == _python_valid(kind, document)


def test_refusals_keep_the_reasons_of_jsonschema() -> None:
    ack = dict(DOCUMENTS[0][1], status="NOPE")
    with pytest.raises(Exception, match="ack: status: 'NOPE' is not one of"):
        validate_payload(MessageKind.ACK, ack)
    # Python's `$` also matches before a final newline: the fast path refuses, the
    # authority accepts, and the answer stays what it was before the fast path
    sid_with_newline = dict(DOCUMENTS[0][1], cmd_id="c-1\n")
    assert not schema._surely_valid(MessageKind.ACK, sid_with_newline)
    assert schema_errors(MessageKind.ACK, sid_with_newline) == []
    # what is not JSON data goes to the authority too
    assert schema_errors(MessageKind.ACK, {1: 2})
