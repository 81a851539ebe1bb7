"""The server-side bridge against a real mosquitto."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from firmware_bridge.client import Bridge, BridgeConfig, Inbound, Rejected
from firmware_bridge.errors import ProtocolError
from firmware_bridge.messages import (
    Ack,
    Command,
    StationState,
    Telemetry,
    dump_message,
    utcnow,
)
from firmware_bridge.topics import TopicKind, Topics
from tests.support.loa import (
    Inbox,
    RawPublisher,
    ack_payload,
    desired,
    make_bridge,
    wait_until,
)
from tests.support.mosquitto import Mosquitto, free_port, requires_mosquitto
from tests.support.mqtt311_proxy import Mqtt311Proxy
from tests.support.process import ChildProcess, python_argv
from tests.support.protocol import Recorded, Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def server_states(recorder: Recorder) -> list[dict[str, object]]:
    return [r.data for r in recorder.select("server-state") if r.payload]


def test_birth_on_connect_and_offline_on_stop(broker: Mosquitto, recorder: Recorder) -> None:
    bridge = make_bridge(broker, Inbox(), instance="alpha")
    bridge.start()
    wait_until(lambda: bridge.connected, what="bridge connected")
    birth = recorder.wait_for("server-state", where=lambda d: d["online"] is True)[0]
    assert birth.retain is False
    assert birth.qos == 1
    assert "at" in birth.data
    assert bridge.stats().protocol == "5"
    bridge.stop()
    final = recorder.wait_for("server-state", where=lambda d: d["online"] is False)[0]
    assert "at" in final.data  # published by stop() itself, not the will
    late = Recorder(broker.host, broker.port, client_id="late").start()
    try:
        retained = late.wait_for("server-state")[0]
        assert retained.retain
        assert retained.data["online"] is False
    finally:
        late.stop()


def test_will_marks_the_server_offline_when_it_dies(
    broker: Mosquitto, recorder: Recorder, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from firmware_bridge.client import Bridge, BridgeConfig
        bridge = Bridge(BridgeConfig(url={broker.url!r}, instance="doomed"), lambda batch: None)
        bridge.start()
        while not bridge.connected:
            time.sleep(0.05)
        print("up", flush=True)
        time.sleep(60)
        """
    )
    with ChildProcess(python_argv("-c", script), log_path=tmp_path / "doomed.log") as proc:
        proc.wait_for_output("up")
        recorder.wait_for("server-state", where=lambda d: d["online"] is True)
        proc.kill()
        will = recorder.wait_for("server-state", where=lambda d: d["online"] is False)[0]
        assert will.data == {"online": False}


def test_reconnects_after_broker_restart_and_resubscribes(
    broker: Mosquitto, recorder: Recorder, inbox: Inbox
) -> None:
    bridge = make_bridge(broker, inbox)
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        broker.restart()
        wait_until(lambda: bridge.stats().reconnects >= 1 and bridge.connected, what="reconnect")
        publisher = RawPublisher(broker, client_id="station-after-restart")
        try:
            publisher.publish(TOPICS.ack("st-9"), ack_payload("c-after"))
        finally:
            publisher.stop()
        got = wait_until(lambda: inbox.select("ack", "st-9"), what="ack after restart")
        assert isinstance(got[0].message, Ack)
        assert got[0].message.cmd_id == "c-after"
        recorder.wait_for("server-state", where=lambda d: d["online"] is True, count=2)
    finally:
        bridge.stop()


def test_start_does_not_block_when_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()
    bridge = make_bridge(Mosquitto(tmp_path / "later", port=port), Inbox())
    started = time.monotonic()
    bridge.start()
    try:
        assert time.monotonic() - started < 1.0
        assert not bridge.connected
        assert bridge.publish(TOPICS.cmd("st-1"), Command.new("ping"), wait_s=0.1) is False
        with Mosquitto(tmp_path / "later", port=port) as late_broker:
            wait_until(lambda: bridge.connected, timeout_s=20, what="late connect")
            assert bridge.publish(TOPICS.cmd("st-1"), Command.new("ping")) is True
            assert late_broker.running
            bridge.stop()
    finally:
        bridge.stop()


def test_invalid_flood_is_counted_and_valid_messages_get_through(
    broker: Mosquitto, recorder: Recorder, inbox: Inbox, raw: RawPublisher
) -> None:
    recorder.expect_invalid(lambda r: r.topic.startswith("loa/v1/st/") and "flood" in r.topic)
    recorder.expect_invalid(lambda r: "/st/BAD/" in r.topic)
    bridge = make_bridge(broker, inbox)
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        garbage = {
            "json": b"{not json",
            "schema": b'{"cmd_id": "c-1", "status": "WHATEVER", "at": "2026-11-26T05:00:00Z"}',
            "encoding": b"\xff\xff",
            "oversize": b'{"x": "' + b"a" * (300 * 1024) + b'"}',
        }
        for i in range(40):
            for reason, payload in garbage.items():
                raw.publish(f"loa/v1/st/flood-{reason}/ack", payload, qos=0)
            raw.publish("loa/v1/st/BAD/ack", ack_payload(f"c-bad-{i}"), qos=0)
            raw.publish(TOPICS.ack("good"), ack_payload(f"c-{i}"), qos=1)
        wait_until(lambda: len(inbox.select("ack", "good")) == 40, what="valid acks")
        wait_until(lambda: bridge.stats().invalid_total == 200, what="invalid counted")
        stats = bridge.stats()
        assert stats.invalid == {
            "json": 40,
            "schema": 40,
            "encoding": 40,
            "oversize": 40,
            "topic": 40,
        }
        assert stats.accepted == stats.handled == 40
        assert stats.dropped == 0
        assert stats.handler_errors == 0
        assert [i.message.cmd_id for i in inbox.select("ack", "good")] == [  # type: ignore[union-attr]
            f"c-{i}" for i in range(40)
        ]
    finally:
        bridge.stop()


def telemetry_payload(seq: int) -> bytes:
    return dump_message(Telemetry(seq=seq, at=utcnow(), uptime_s=60, volume=70, playing=None))


def test_a_failing_message_is_isolated_quarantined_and_the_consumer_goes_on(
    broker: Mosquitto, recorder: Recorder, raw: RawPublisher
) -> None:
    """A handler error on a batch splits it until the one failing message is found;
    that one is quarantined (``on_rejected``) and acknowledged, the others handled."""
    entered = threading.Event()
    release = threading.Event()
    handled: list[str] = []
    quarantined: list[Rejected] = []

    def slow_handler(batch: list[Inbound]) -> None:
        ids = [i.message.cmd_id for i in batch if isinstance(i.message, Ack)]
        if "c-first" in ids:
            entered.set()
            release.wait(20)
        if any(cmd_id.endswith("-boom") for cmd_id in ids):
            raise RuntimeError("handler bug")
        handled.extend(ids)

    bridge = Bridge(
        BridgeConfig(url=broker.url, queue_size=50),
        slow_handler,
        on_rejected=quarantined.extend,
    )
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-first"))
        assert entered.wait(10)
        sent = [f"c-{i}-boom" if i in (2, 5) else f"c-{i}" for i in range(8)]
        for cmd_id in sent:
            raw.publish(TOPICS.ack("st-1"), ack_payload(cmd_id))
        wait_until(lambda: bridge.stats().queue_depth == 8, what="eight queued")
        release.set()
        wait_until(lambda: len(handled) == 7 and len(quarantined) == 2, what="isolated")
        stats = bridge.stats()
        assert stats.handler_errors == 2
        assert stats.quarantined == {"handler": 2}
        assert handled == ["c-first", *(c for c in sent if not c.endswith("-boom"))]
        assert [r.category for r in quarantined] == ["handler", "handler"]
        assert all("handler bug" in r.reason and r.sid == "st-1" for r in quarantined)
        wait_until(lambda: bridge.stats().acked == 9, what="all nine acknowledged")
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-later"))
        wait_until(lambda: "c-later" in handled, what="consumer still alive")
    finally:
        release.set()
        bridge.stop()


def test_full_queue_drops_telemetry_and_the_broker_holds_the_rest(
    broker: Mosquitto, recorder: Recorder, raw: RawPublisher
) -> None:
    """Past ``queue_size``, telemetry (superseded by the next report) is dropped; QoS 1
    messages are not: the bridge's Receive Maximum keeps the rest in the broker until we
    acknowledge, so every ack arrives, in order.  The paho thread never waits, so the
    bridge keeps publishing while its handler is stuck.

    Mosquitto 2.0.11 (Debian 12) can send a few more than the Receive Maximum after a
    PUBACK (eclipse-mosquitto#2301), so the hard limit leaves room above it: nothing is
    deferred, and the broker still holds most of the backlog."""
    entered = threading.Event()
    release = threading.Event()
    acks: list[str] = []
    telemetry: list[int] = []

    def slow_handler(batch: list[Inbound]) -> None:
        for inbound in batch:
            if isinstance(inbound.message, Ack):
                acks.append(inbound.message.cmd_id)
            elif isinstance(inbound.message, Telemetry):
                telemetry.append(inbound.message.seq)
            if isinstance(inbound.message, Ack) and inbound.message.cmd_id == "c-first":
                entered.set()
                release.wait(20)

    bridge = make_bridge(
        broker, slow_handler, queue_size=5, receive_maximum=12, queue_hard_limit=40
    )
    bridge.start()
    try:
        wait_until(lambda: bridge.connected, what="connected")
        raw.publish(TOPICS.ack("st-1"), ack_payload("c-first"))
        assert entered.wait(10)
        sent = [f"c-{i}" for i in range(30)]
        for cmd_id in sent[:5]:  # up to queue_size
            raw.publish(TOPICS.ack("st-1"), ack_payload(cmd_id))
        for seq in range(10):  # past queue_size: dropped (and acknowledged)
            raw.publish(TOPICS.telemetry("st-1"), telemetry_payload(seq))
        for cmd_id in sent[5:]:
            raw.publish(TOPICS.ack("st-1"), ack_payload(cmd_id))
        wait_until(lambda: bridge.stats().queue_depth >= 11, what="receive maximum reached")
        time.sleep(0.5)
        stats = bridge.stats()
        assert stats.dropped == 10
        # 12 in flight: c-first (in the handler) + 11 queued, give or take the broker's
        # overshoot; the other acks wait in the broker
        assert 11 <= stats.queue_depth < 30, stats
        assert stats.received < 41, stats
        assert stats.deferred == 0, stats
        assert bridge.publish_command_to_station("st-1", Command.new("ping"), wait_s=5.0)
        release.set()
        expected = ["c-first", *sent]
        wait_until(lambda: set(acks) >= set(expected), timeout_s=60, what="every ack handled")
        assert list(dict.fromkeys(acks)) == expected  # all, in order (at least once)
        assert telemetry == []
        raw.publish(TOPICS.telemetry("st-1"), telemetry_payload(11))
        wait_until(lambda: telemetry == [11], what="telemetry taken again once there is room")
    finally:
        release.set()
        bridge.stop()


def test_publish_helpers(broker: Mosquitto, recorder: Recorder, bridge: Bridge) -> None:
    now = utcnow()
    assert bridge.publish_desired("st-1", desired(3, now=now))
    cmd = Command.new("ping")
    assert bridge.publish_command_to_station("st-1", cmd)
    assert bridge.publish_command_to_group("tan-an", cmd)
    assert bridge.publish(TOPICS.telemetry("st-1"), StationState(online=False, bdseq=1), qos=0)
    recorder.expect_invalid(lambda r: r.topic == TOPICS.telemetry("st-1"))
    with pytest.raises(ProtocolError):
        bridge.publish(TOPICS.cmd("st-1"), StationState(online=True, bdseq=1))
    recorder.wait_for("command", count=2)
    late = Recorder(broker.host, broker.port, client_id="late").start()
    try:
        retained = late.wait_for("desired", sid="st-1")[0]
        assert retained.retain
        assert retained.data["version"] == 3
    finally:
        late.stop()
    assert bridge.clear_retained(TOPICS.desired("st-1"))
    later = Recorder(broker.host, broker.port, client_id="later").start()
    try:
        later.wait_for("server-state")
        assert later.select("desired") == []
    finally:
        later.stop()


def test_inbound_carries_sid_kind_and_receipt_time(
    broker: Mosquitto, recorder: Recorder, bridge: Bridge, inbox: Inbox, raw: RawPublisher
) -> None:
    before = utcnow()
    raw.publish(
        TOPICS.state("st-4"), dump_message(StationState(online=False, bdseq=7)), retain=True
    )
    raw.publish(TOPICS.state("st-4"), b"", retain=True)
    got = wait_until(lambda: inbox.select("state", "st-4"), what="state")[0]
    assert got.kind is TopicKind.STATE
    assert got.topic == "loa/v1/st/st-4/state"
    assert isinstance(got.message, StationState)
    assert got.message.bdseq == 7
    assert got.received_at >= before
    assert got.received_at.tzinfo is not None
    wait_until(lambda: bridge.stats().empty == 1, what="cleared retained counted")


def test_falls_back_to_mqtt_311_when_v5_is_refused(broker: Mosquitto, recorder: Recorder) -> None:
    proxy = Mqtt311Proxy(broker.host, broker.port).start()
    bridge = Bridge(BridgeConfig(url=proxy.url, reconnect_min_s=1, reconnect_max_s=1), Inbox())
    try:
        bridge.start()
        wait_until(lambda: bridge.connected, timeout_s=20, what="connected through the proxy")
        assert proxy.refused_v5 >= 1
        assert bridge.stats().protocol == "3.1.1"
        recorder.wait_for("server-state", where=lambda d: d["online"] is True)
        bridge.stop()
        recorder.wait_for("server-state", where=lambda d: d["online"] is False)
    finally:
        bridge.stop()
        proxy.stop()


def test_recorded_payloads_are_json(recorder: Recorder, bridge: Bridge) -> None:
    record: Recorded = recorder.wait_for("server-state")[0]
    assert json.loads(record.payload)["online"] is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a niceness per thread: Linux")
@pytest.mark.parametrize("by", [0, 7])
def test_the_consumer_thread_runs_at_the_niceness_it_is_given(broker: Mosquitto, by: int) -> None:
    """``consumer_nice``: the thread that stores what stations send yields the cores to
    the rest of the machine (the service sets it from ``BROADCASTER_INGEST_NICE``)."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    bridge = make_bridge(broker, Inbox(), instance=f"nice{by}", consumer_nice=by)
    bridge.start()
    try:
        consumer = wait_until(
            lambda: next(
                (t for t in threading.enumerate() if t.name == f"srv-nice{by}-consumer"), None
            ),
            what="the consumer thread",
        )
        assert consumer.native_id is not None
        wanted = min(19, own + by)
        assert wait_until(
            lambda: os.getpriority(os.PRIO_PROCESS, consumer.native_id) == wanted,
            what=f"the consumer at niceness {wanted}",
        )
        # the rest of the process is where it was
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        bridge.stop()
