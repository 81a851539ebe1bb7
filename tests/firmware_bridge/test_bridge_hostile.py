"""The bridge cannot die and loses nothing (issue 15, defects 1 and 3, at the bridge).

A real Mosquitto with persistence, so the broker session that redelivers what we did
not acknowledge is the real one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from firmware_bridge.client import Bridge, BridgeConfig, Inbound, Rejected
from firmware_bridge.errors import RetryLater
from firmware_bridge.messages import (
    MAX_DEPTH,
    Ack,
    Command,
    StationState,
    dump_message,
    nesting_depth,
    parse_message,
    utcnow,
)
from firmware_bridge.schema import MessageKind
from firmware_bridge.topics import Topics
from tests.support.loa import Inbox, RawPublisher, ack_payload, wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def deep_json(levels: int = 120_000) -> bytes:
    """What the attacker sent: ~240 KB, under the 256 KiB cap, nested 120,000 deep."""
    return b"[" * levels + b"]" * levels


def birth(bdseq: int = 1) -> bytes:
    return dump_message(
        StationState(
            online=True,
            bdseq=bdseq,
            at=utcnow(),
            firmware="1.0",
            capabilities=["file"],
            desired_version=None,
        )
    )


class Quarantine:
    def __init__(self) -> None:
        self.items: list[Rejected] = []
        self._lock = threading.Lock()

    def __call__(self, batch: list[Rejected]) -> None:
        with self._lock:
            self.items.extend(batch)


def bridge_for(broker: Mosquitto, inbox: Inbox, quarantine: Quarantine, **kw: object) -> Bridge:
    config = BridgeConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1, **kw)  # type: ignore[arg-type]
    return Bridge(config, inbox, on_rejected=quarantine)


def test_depth_prescan_refuses_deep_documents_before_json_loads() -> None:
    assert nesting_depth(deep_json(), limit=MAX_DEPTH) == MAX_DEPTH + 1
    assert nesting_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert nesting_depth(b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": [1]}') <= 2
    for payload in (deep_json(), b'{"online": true, "bdseq": ' + deep_json(40) + b"}"):
        with pytest.raises(ValueError, match="nested deeper"):
            parse_message(MessageKind.STATION_STATE, payload)


def test_deeply_nested_state_is_quarantined_and_dispatch_goes_on(
    persistent_broker: Mosquitto, persistent_recorder: Recorder, tmp_path: Path
) -> None:
    """Defect 1: the 120,000-deep document killed paho's network thread (RecursionError
    escaped the callback), ``connected`` stayed true, and, never acknowledged, it came
    back after every restart.  Now it is quarantined, acknowledged, and the bridge
    goes on storing and publishing; a restart does not see it again."""
    persistent_recorder.expect_invalid(lambda r: r.topic == TOPICS.state("evil"))
    raw = RawPublisher(persistent_broker, client_id="evil-station")
    inbox, quarantine = Inbox(), Quarantine()
    bridge = bridge_for(persistent_broker, inbox, quarantine)
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        raw.publish(TOPICS.state("evil"), deep_json(), qos=1)
        raw.publish(TOPICS.ack("good"), ack_payload("c-after-poison"), qos=1)
        wait_until(lambda: len(inbox.select("ack", "good")) == 1, what="the next message")
        wait_until(lambda: len(quarantine.items) == 1, what="quarantined")
        letter = quarantine.items[0]
        assert (letter.sid, letter.kind, letter.category) == ("evil", "state", "json")
        assert "nested deeper" in letter.reason
        assert letter.size == len(deep_json())
        assert len(letter.payload) <= 2048
        health = bridge.health()
        assert health.loop_alive
        assert health.connected
        assert health.last_message_at is not None
        assert bridge.publish_command_to_station("good", Command.new("ping"), wait_s=5.0)
        wait_until(lambda: bridge.stats().acked >= 2, what="both acknowledged")
    finally:
        bridge.stop()
    # the same session again: nothing is redelivered (the poison was acknowledged)
    inbox2, quarantine2 = Inbox(), Quarantine()
    again = bridge_for(persistent_broker, inbox2, quarantine2)
    again.start()
    try:
        wait_until(lambda: again.connected, what="reconnected")
        raw.publish(TOPICS.ack("good"), ack_payload("c-second-run"), qos=1)
        wait_until(lambda: len(inbox2.select("ack", "good")) == 1, what="a fresh message")
        time.sleep(0.5)
        assert quarantine2.items == []
        assert again.health().ok
    finally:
        again.stop()
        raw.stop()


def test_poison_waiting_in_the_session_is_acknowledged_once(
    persistent_broker: Mosquitto, persistent_recorder: Recorder
) -> None:
    """What waited in the session is delivered right after CONNACK, before our SUBACK:
    it must still be acknowledged once handled, or every restart brings it back."""
    persistent_recorder.expect_invalid(lambda r: r.topic == TOPICS.state("evil"))
    first = bridge_for(persistent_broker, Inbox(), Quarantine())
    first.start()
    wait_until(lambda: first.connected, what="session created")
    first.stop()
    raw = RawPublisher(persistent_broker, client_id="evil-station")
    try:
        raw.publish(TOPICS.state("evil"), deep_json(), qos=1)  # waits in the session
        for run in range(2):
            inbox, quarantine = Inbox(), Quarantine()
            bridge = bridge_for(persistent_broker, inbox, quarantine)
            bridge.start()
            try:
                wait_until(lambda b=bridge: b.connected, what="connected")
                raw.publish(TOPICS.ack("good"), ack_payload(f"c-run-{run}"), qos=1)
                wait_until(lambda i=inbox: len(i.select("ack", "good")) == 1, what="a message")
                time.sleep(0.3)
                assert len(quarantine.items) == (1 if run == 0 else 0), run
            finally:
                bridge.stop()
    finally:
        raw.stop()


def test_retained_poison_is_quarantined_once_and_cleared(
    persistent_broker: Mosquitto, persistent_recorder: Recorder
) -> None:
    """A retained poison birth would be handed to every new subscription: once
    quarantined it is cleared on the broker."""
    persistent_recorder.expect_invalid(lambda r: r.topic == TOPICS.state("evil"))
    raw = RawPublisher(persistent_broker, client_id="evil-station")
    raw.publish(TOPICS.state("evil"), deep_json(5_000), qos=1, retain=True)
    inbox, quarantine = Inbox(), Quarantine()
    bridge = bridge_for(persistent_broker, inbox, quarantine, instance="fresh")
    bridge.start()
    try:
        wait_until(lambda: len(quarantine.items) == 1, what="quarantined")
        assert quarantine.items[0].retained is True
    finally:
        bridge.stop()
    late = Recorder(persistent_broker.host, persistent_broker.port, client_id="late").start()
    try:
        time.sleep(1.0)
        assert [r for r in late.snapshot() if r.topic == TOPICS.state("evil") and r.payload] == []
    finally:
        late.stop()
        raw.stop()


def test_unstored_messages_are_redelivered_not_lost(
    persistent_broker: Mosquitto, persistent_recorder: Recorder
) -> None:
    """Defect 3 at the bridge: a handler that cannot store (RetryLater, a busy
    database) keeps the batch unacknowledged; after a restart the broker delivers it
    again and nothing is lost."""
    raw = RawPublisher(persistent_broker, client_id="station")
    busy = threading.Event()
    busy.set()
    tried: list[int] = []

    def handler(batch: list[Inbound]) -> None:
        tried.append(len(batch))
        if busy.is_set():
            raise RetryLater("database is locked")

    first = Bridge(
        BridgeConfig(url=persistent_broker.url, retry_min_s=0.01, retry_max_s=0.05), handler
    )
    first.start()
    try:
        wait_until(lambda: first.connected, what="connected")
        for i in range(20):
            raw.publish(TOPICS.ack("st-1"), ack_payload(f"c-{i}"), qos=1)
        wait_until(lambda: first.stats().retries >= 5, what="retrying")
        assert first.stats().acked == 0
        assert first.health().unacked == 20
    finally:
        first.stop()  # a crash or a shutdown while the database is busy
    inbox = Inbox()
    second = Bridge(BridgeConfig(url=persistent_broker.url), inbox)
    second.start()
    try:
        wait_until(lambda: len(inbox.select("ack", "st-1")) >= 20, what="redelivered")
        got = [i.message.cmd_id for i in inbox.select("ack", "st-1")]  # type: ignore[union-attr]
        assert sorted(set(got)) == sorted(f"c-{i}" for i in range(20))
    finally:
        second.stop()
        raw.stop()


def test_busy_handler_is_retried_until_it_stores(
    broker: Mosquitto, recorder: Recorder, raw: RawPublisher
) -> None:
    stored: list[str] = []
    failures = [3]

    def handler(batch: list[Inbound]) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise RetryLater("database is locked")
        stored.extend(i.message.cmd_id for i in batch if isinstance(i.message, Ack))

    bridge = Bridge(BridgeConfig(url=broker.url, retry_min_s=0.01), handler)
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-1"), qos=1)
        wait_until(lambda: stored == ["c-1"], what="stored after retries")
        assert bridge.stats().retries == 3
        wait_until(lambda: bridge.stats().acked == 1, what="acknowledged once stored")
    finally:
        bridge.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_loop_is_restarted(
    persistent_broker: Mosquitto, persistent_recorder: Recorder
) -> None:
    """If paho's network thread ever dies (an exception our barrier did not catch),
    the supervisor notices, tells the truth in ``health()``, and restarts it; the
    message that was in flight comes back on the new connection."""
    raw = RawPublisher(persistent_broker, client_id="station")
    inbox = Inbox()
    bridge = Bridge(BridgeConfig(url=persistent_broker.url, supervise_every_s=0.1), inbox)
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        client = bridge._client
        assert client is not None
        original = client.on_message

        def boom(*args: object) -> None:  # simulates a bug escaping into paho
            client.on_message = original
            raise RecursionError("maximum recursion depth exceeded")

        client.on_message = boom
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-killer"), qos=1)
        wait_until(lambda: bridge.health().loop_restarts == 1, what="loop restarted")
        wait_until(lambda: bridge.health().ok, timeout_s=20, what="connected again")
        wait_until(lambda: len(inbox.select("ack", "st-1")) == 1, what="redelivered")
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-next"), qos=1)
        wait_until(lambda: len(inbox.select("ack", "st-1")) == 2, what="still taking")
    finally:
        bridge.stop()
        raw.stop()
