"""A property-based MQTT fuzzer against the real bridge and a real Mosquitto (issue 15).

One station, with its own valid credentials' reach (its own five topics), publishes
what Hypothesis makes of the protocol: random bytes, JSON nested past any sane depth,
numbers no column holds, timestamps in year 10000, valid documents with one field
replaced by something hostile, retained or not, QoS 0 or 1.  After every hostile message
another station sends a valid proof-of-play event.  The service must keep storing every
one of those, stay ready, keep its network loop, and show the hostile messages as dead
letters (never the good station's).  Bounded (``BROADCASTER_FUZZ_MQTT_EXAMPLES``,
default 150) and derandomised so a failure reproduces.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from broadcaster.dispatch.models import StationEvent
from firmware_bridge.messages import Event, dump_message
from firmware_bridge.topics import TopicKind, Topics
from stations.models import Station
from tests.support.live import Live
from tests.support.loa import RawPublisher, wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = requires_mosquitto()

EXAMPLES = int(os.environ.get("BROADCASTER_FUZZ_MQTT_EXAMPLES", "150"))
T = Topics()
EVIL, GOOD = "lbn-cau-tre", "p2-kp-1"
KINDS = [TopicKind.STATE, TopicKind.REPORTED, TopicKind.ACK, TopicKind.EVENT, TopicKind.TELEMETRY]
NOW = "2026-11-26T05:00:00+07:00"

VALID: dict[TopicKind, dict[str, Any]] = {
    TopicKind.STATE: {
        "online": True,
        "bdseq": 3,
        "at": NOW,
        "firmware": "1.2",
        "capabilities": ["file", "relay"],
        "desired_version": None,
    },
    TopicKind.REPORTED: {"desired_version": 1, "at": NOW, "missing": [], "cache_bytes": 10},
    TopicKind.ACK: {"cmd_id": "c-1", "status": "RECEIVED", "at": NOW},
    TopicKind.EVENT: {"event_id": "e-x", "type": "fault.raised", "at": NOW, "fault": "other"},
    TopicKind.TELEMETRY: {"seq": 1, "at": NOW, "uptime_s": 5, "volume": 70, "playing": None},
}

hostile_scalars = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+14:00",
            "1970-01-01T00:00:00Z",
            "2026-02-30T25:61:61Z",
            "\u0000",
            "'; DROP TABLE stations; --",
        ]
    ),
    st.text(max_size=600),
    st.none(),
    st.booleans(),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_document(draw: st.DrawFn, kind: TopicKind) -> bytes:
    """A valid document with fields replaced, removed or added."""
    document = dict(VALID[kind])
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*document.keys(), "extra", "at", "seq"]))
        if draw(st.booleans()) and key in document:
            document[key] = draw(hostile_values)
        elif key in document and draw(st.booleans()):
            del document[key]
        else:
            document[key] = draw(hostile_values)
    return json.dumps(document, allow_nan=False).encode()


def deep(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * levels + closer * levels


def payloads(kind: TopicKind) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated_document(kind),
        st.binary(max_size=512),
        st.integers(33, 120_000).map(deep),
        st.integers(33, 5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.sampled_from(
            [
                b"",
                b"null",
                b"[]",
                b"1e999",
                b'{"seq": 1e999}',
                b"\xff\xfe\xfd",
                b'{"seq": ' + b"9" * 5000 + b"}",
                b'{"x": "' + b"a" * (300 * 1024) + b'"}',
                json.dumps({**VALID[kind], "at": "9999-12-31T23:59:59-01:00"}).encode(),
            ]
        ),
    )


hostile_message = st.sampled_from(KINDS).flatmap(
    lambda kind: st.tuples(st.just(kind), payloads(kind), st.sampled_from([0, 1]), st.booleans())
)


def good_event(n: int) -> bytes:
    return dump_message(
        Event(
            event_id=f"good-{n}",
            type="fault.raised" if n % 2 else "fault.cleared",
            at=dt.datetime.now(dt.UTC),
            fault="storage_low",
        )
    )


@pytest.fixture
def evil(live: Live) -> Iterator[RawPublisher]:
    live.recorder.expect_invalid(lambda r: r.topic.startswith(f"loa/v1/st/{EVIL}/"))
    publisher = RawPublisher(live.broker, client_id=f"st-{EVIL}")
    yield publisher
    publisher.stop()


@pytest.fixture
def good(live: Live) -> Iterator[RawPublisher]:
    publisher = RawPublisher(live.broker, client_id=f"st-{GOOD}")
    yield publisher
    publisher.stop()


def stored_good_events(live: Live) -> int:
    with live.factory() as session:
        station_id = session.scalar(select(Station.id).where(Station.sid == GOOD))
        return int(
            session.scalar(
                select(func.count())
                .select_from(StationEvent)
                .where(
                    StationEvent.station_id == station_id,
                    StationEvent.event_id.like("good-%"),
                )
            )
            or 0
        )


def test_hostile_messages_never_stop_ingest_of_other_stations(
    live: Live, evil: RawPublisher, good: RawPublisher
) -> None:
    live.seed()
    wait_until(lambda: live.worker().bridge.connected, what="bridge connected")
    sent = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(message=hostile_message)
    def attack(message: tuple[TopicKind, bytes, int, bool]) -> None:
        kind, payload, qos, retain = message
        evil.publish(f"loa/v1/st/{EVIL}/{kind.value}", payload, qos=qos, retain=retain)
        good.publish(T.event(GOOD), good_event(sent[0]), qos=1)
        sent[0] += 1

    attack()
    wait_until(
        lambda: stored_good_events(live) == sent[0],
        timeout_s=120,
        what=f"all {sent[0]} good events stored",
    )
    health = live.worker().bridge.health()
    assert health.loop_alive
    assert health.connected
    assert health.loop_restarts == 0
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
    with live.http() as http:
        status = http.get("/api/v1/dispatch/status").json()
        assert status["handler_errors"] == 0, status
        letters = http.get("/api/v1/dispatch/dead-letters", params={"limit": 1000}).json()
        assert letters["total"] > 0
        assert {item["sid"] for item in letters["items"]} <= {EVIL, None}
        good_letters = http.get("/api/v1/dispatch/dead-letters", params={"station": GOOD}).json()
        assert good_letters["total"] == 0
