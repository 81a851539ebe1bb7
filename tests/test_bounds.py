"""`kernel.bounds.walk_problem`, which every station message passes before it is stored:
it finds the first value no column can hold and says where, the same as the plain
recursive walk it replaced (kept below as the oracle), for the messages stations send
and for random nested values."""

from __future__ import annotations

import datetime as dt
import enum
import random
from typing import Any

import pytest
from pydantic import BaseModel

from firmware_bridge.messages import parse_message
from firmware_bridge.schema import MessageKind
from kernel.bounds import datetime_problem, int_problem, text_problem, walk_problem


def _oracle(value: Any, *, path: str = "") -> str | None:
    """The walk as it was written first: a path string built at every step."""
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{path or 'value'}: {problem}" if problem else None
    if isinstance(value, int):
        problem = int_problem(value)
        return f"{path or 'value'}: {problem}" if problem else None
    if isinstance(value, dt.datetime):
        problem = datetime_problem(value)
        return f"{path or 'value'}: {problem}" if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _oracle(item, path=f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _oracle(item, path=f"{path}[{index}]")
            if found:
                return found
    return None


class _Colour(enum.StrEnum):
    RED = "đỏ"


class _Level(enum.IntEnum):
    HIGH = 2**70


@pytest.mark.parametrize(
    ("payload", "kind", "expected"),
    [
        (b'{"cmd_id":"c-1","status":"RECEIVED","at":"2026-12-04T12:00:00Z"}', "ack", None),
        (
            b'{"cmd_id":"c-1","status":"RECEIVED","at":"2226-12-04T12:00:00+07:00"}',
            "ack",
            "at: timestamp 2226-12-04T12:00:00+07:00 is outside 2000..2099",
        ),
        (
            b'{"cmd_id":"c-1","status":"RECEIVED","at":"1999-12-31T23:59:59Z"}',
            "ack",
            "at: timestamp 1999-12-31T23:59:59+00:00 is outside 2000..2099",
        ),
        (
            # 2099-12-31T23:30-01:00 is 2100-01-01 in UTC: outside, though its year is not
            b'{"cmd_id":"c-1","status":"RECEIVED","at":"2099-12-31T23:30:00-01:00"}',
            "ack",
            "at: timestamp 2099-12-31T23:30:00-01:00 is outside 2000..2099",
        ),
        (
            b'{"event_id":"e-1","type":"play.started","at":"2026-12-04T12:00:00Z",'
            b'"cmd_id":"c-1","position_ms":9223372036854775808}',
            "event",
            "position_ms: integer 9223372036854775808 is out of range",
        ),
    ],
)
def test_station_messages(payload: bytes, kind: str, expected: str | None) -> None:
    message = parse_message(MessageKind(kind), payload)
    assert walk_problem(message) == expected
    assert _oracle(message) == expected


def test_places_and_kinds_of_values() -> None:
    at = dt.datetime(2026, 12, 4, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    cases: list[tuple[Any, str, str | None]] = [
        ({"a": [1, {"b": "x\x00"}]}, "", "a[1].b: text contains the character U+0000 at 1"),
        ([dt.datetime(9999, 1, 1)], "", "[0]: timestamp 9999-01-01T00:00:00 is outside 2000..2099"),
        ({"x": {"y": 2**70}}, "data", "data.x.y: integer 1180591620717411303424 is out of range"),
        ([[True, False], (None, at, dt.date(9999, 1, 1))], "", None),
        (
            {"c": _Colour.RED, "l": [_Level.HIGH]},
            "",
            "l[0]: integer " + str(2**70)[:40] + " is out of range",
        ),
        ("\ud800", "", "value: text contains the character U+D800 at 0"),
        (dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-1))), "", None),
    ]
    for value, path, expected in cases:
        oracle = _oracle(value, path=path)
        assert walk_problem(value, path=path) == oracle, value
        if expected is not None:
            assert oracle == expected
    # the last case: a year-10000 instant in UTC is out of range too
    assert walk_problem(cases[-1][0]) is not None


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    leaves: list[Any] = [
        0,
        -(2**63) - 1,
        2**63,
        True,
        None,
        "Tân An",
        "a\x00b",
        "\udfff",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1999, 1, 1),
        dt.datetime(2050, 6, 1),
        1.5,
        _Colour.RED,
    ]
    if depth >= 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def test_random_nested_values_agree_with_the_plain_walk() -> None:
    rng = random.Random(14)
    found = 0
    for _ in range(3000):
        value = _random_value(rng)
        expected = _oracle(value)
        assert walk_problem(value) == expected, value
        found += expected is not None
    assert 500 < found < 2900  # both kinds of answer were exercised
