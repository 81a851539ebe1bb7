"""Station behaviour rule 3 (playlist items) and priorities / preemption."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from firmware_bridge.messages import EMERGENCY, NORMAL, PRIORITY, Command, PlayBody, Reported
from firmware_bridge.simulator import FleetThread
from tests.support.loa import Inbox, SimRig, desired, file_item, wait_until
from tests.support.mosquitto import requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()


def ready(inbox: Inbox, sid: str, version: int) -> None:
    def done() -> bool:
        return any(
            isinstance(i.message, Reported)
            and i.message.desired_version == version
            and not i.message.missing
            for i in inbox.select("reported", sid)
        )

    wait_until(done, what="desired applied")


def events(recorder: Recorder, sid: str, ref: str) -> list[dict[str, Any]]:
    return [
        r.data
        for r in recorder.select("event", sid)
        if r.data.get("item_id") == ref or r.data.get("cmd_id") == ref
    ]


def wait_events(recorder: Recorder, sid: str, ref: str, count: int) -> list[dict[str, Any]]:
    found = recorder.wait_for(
        "event",
        sid,
        lambda d: d.get("item_id") == ref or d.get("cmd_id") == ref,
        count=count,
        timeout_s=20,
    )
    return [r.data for r in found]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def not_before(value: str, moment: datetime) -> bool:
    """``value`` (millisecond precision) is at or after ``moment``."""
    return ts(value) >= moment - timedelta(milliseconds=1)


def test_file_items_play_at_start_for_their_duration(
    sim: SimRig,
) -> None:
    fleet = sim.fleet(["st-1"])
    now = fleet.now()
    short = sim.media.add(os.urandom(4_000), duration_ms=800)
    start = now + timedelta(seconds=1.5)
    looped_start = start + timedelta(seconds=2)
    items = [
        file_item("it-short", short, start, length_s=30, volume=80),
        file_item("it-loop", short, looped_start, length_s=1.5, loop=True),
    ]
    assert sim.bridge.publish_desired("st-1", desired(1, items, now=now))
    ready(sim.inbox, "st-1", 1)

    started, finished = wait_events(sim.recorder, "st-1", "it-short", 2)
    assert started["type"] == "play.started"
    assert finished["type"] == "play.finished"
    assert not_before(started["at"], start)
    assert 0.7 <= (ts(finished["at"]) - ts(started["at"])).total_seconds() <= 1.5
    assert started["desired_version"] == 1
    assert 700 <= finished["position_ms"] <= 1500

    started, finished = wait_events(sim.recorder, "st-1", "it-loop", 2)
    assert finished["type"] == "play.finished"
    assert not_before(finished["at"], looped_start + timedelta(seconds=1.5))  # looped

    plays = {p.item_id: p for p in fleet.station("st-1").plays}
    assert plays["it-short"].outcome == "finished"
    assert plays["it-short"].volume == 80
    assert plays["it-loop"].outcome == "finished"


def test_relay_items_stream_or_fall_back(
    sim: SimRig,
) -> None:
    fleet = sim.fleet(["st-1"])
    now = fleet.now()
    fallback = sim.media.add(os.urandom(6_000), duration_ms=600)
    missing = sim.media.add(os.urandom(100))
    del sim.media.files[missing["sha256"]]
    start = now + timedelta(seconds=1.5)

    def relay(item_id: str, url: str, offset_s: float, **extra: Any) -> dict[str, Any]:
        return {
            "item_id": item_id,
            "kind": "relay",
            "title": "Tiếp sóng đài tỉnh",
            "start_at": start + timedelta(seconds=offset_s),
            "end_at": start + timedelta(seconds=offset_s + 1),
            "priority": NORMAL,
            "url": url,
            **extra,
        }

    items = [
        relay("it-live", f"{sim.media.base_url}/stream/ok", 0),
        relay("it-fallback", f"{sim.media.base_url}/stream/down", 1.5, fallback=fallback),
        relay("it-dead", f"{sim.media.base_url}/stream/down", 3),
        file_item("it-missing", missing, start + timedelta(seconds=4.5), length_s=1),
    ]
    assert sim.bridge.publish_desired("st-1", desired(1, items, now=now))
    sim.recorder.wait_for("reported", "st-1")

    assert [e["type"] for e in wait_events(sim.recorder, "st-1", "it-live", 2)] == [
        "play.started",
        "play.finished",
    ]
    fell_back = wait_events(sim.recorder, "st-1", "it-fallback", 3)
    assert [e["type"] for e in fell_back] == ["play.started", "relay.fallback", "play.finished"]
    assert fell_back[1]["sha256"] == fallback["sha256"]
    dead = wait_events(sim.recorder, "st-1", "it-dead", 2)
    assert [e["type"] for e in dead] == ["play.started", "play.failed"]
    assert "no fallback" in dead[1]["reason"]
    skipped = wait_events(sim.recorder, "st-1", "it-missing", 1)
    assert [e["type"] for e in skipped] == ["play.skipped"]
    assert skipped[0]["reason"] == "media missing"
    sources = {p.item_id: p.source for p in fleet.station("st-1").plays}
    assert sources == {
        "it-live": "relay",
        "it-fallback": "fallback",
        "it-dead": "relay",
        "it-missing": "file",
    }


def play(media: dict[str, Any], priority: int, **extra: Any) -> Command:
    return Command.new("play", PlayBody(priority=priority, media=media, **extra), ttl_s=60)


def test_higher_priority_preempts_and_equal_or_lower_is_refused(
    sim: SimRig,
) -> None:
    fleet: FleetThread = sim.fleet(["st-1"])
    now = fleet.now()
    programme = sim.media.add(os.urandom(5_000), duration_ms=60_000)
    alert = sim.media.add(os.urandom(5_000), duration_ms=3_000)
    start = now + timedelta(seconds=1)
    items = [
        file_item("it-programme", programme, start, length_s=60, priority=NORMAL),
        file_item(
            "it-late", programme, start + timedelta(seconds=2), length_s=60, priority=PRIORITY
        ),
    ]
    assert sim.bridge.publish_desired("st-1", desired(1, items, now=now))
    ready(sim.inbox, "st-1", 1)
    wait_events(sim.recorder, "st-1", "it-programme", 1)

    emergency = play(alert, EMERGENCY, title="Cảnh báo lũ")
    assert sim.bridge.publish_command_to_station("st-1", emergency)
    preempted = wait_events(sim.recorder, "st-1", "it-programme", 2)[1]
    assert preempted["type"] == "play.preempted"
    assert emergency.cmd_id in preempted["reason"]
    wait_events(sim.recorder, "st-1", emergency.cmd_id, 1)

    same = play(alert, EMERGENCY)
    lower = play(alert, PRIORITY)
    assert sim.bridge.publish_command_to_station("st-1", same)
    assert sim.bridge.publish_command_to_station("st-1", lower)
    for cmd in (same, lower):
        ack = sim.recorder.wait_for("ack", "st-1", lambda d, c=cmd: d["cmd_id"] == c.cmd_id)[0].data
        assert ack["status"] == "REJECTED"
        assert ack["reason"].startswith("busy")
        assert events(sim.recorder, "st-1", cmd.cmd_id) == []

    skipped = wait_events(sim.recorder, "st-1", "it-late", 1)[0]
    assert skipped["type"] == "play.skipped"
    assert skipped["reason"].startswith("busy")

    finished = wait_events(sim.recorder, "st-1", emergency.cmd_id, 2)[1]
    assert finished["type"] == "play.finished"
    acks = sim.recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == emergency.cmd_id, count=3)
    assert [a.data["status"] for a in acks] == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]

    outcomes = {(p.item_id or p.cmd_id): p.outcome for p in fleet.station("st-1").plays}
    assert outcomes == {
        "it-programme": "preempted",
        emergency.cmd_id: "finished",
        same.cmd_id: "rejected",
        lower.cmd_id: "rejected",
        "it-late": "skipped",
    }
    # exactly one terminal event per started play
    for ref in ("it-programme", emergency.cmd_id):
        types = [e["type"] for e in events(sim.recorder, "st-1", ref)]
        assert types[0] == "play.started"
        assert len(types) == 2


def test_synchronised_start_repeat_and_until(
    sim: SimRig,
) -> None:
    fleet = sim.fleet(["st-1", "st-2"])
    clip = sim.media.add(os.urandom(3_000), duration_ms=400)
    start_at = fleet.now() + timedelta(seconds=1.5)
    cmd = play(clip, EMERGENCY, start_at=start_at, repeat=3)
    assert sim.bridge.publish_command_to_group("all", cmd)
    for sid in ("st-1", "st-2"):
        started, finished = wait_events(sim.recorder, sid, cmd.cmd_id, 2)
        assert not_before(started["at"], start_at)
        assert 1.1 <= (ts(finished["at"]) - ts(started["at"])).total_seconds() <= 2.0
    until = fleet.now() + timedelta(seconds=0.8)
    capped = play(clip, EMERGENCY, repeat=100, until=until)
    assert sim.bridge.publish_command_to_station("st-1", capped)
    started, finished = wait_events(sim.recorder, "st-1", capped.cmd_id, 2)
    assert finished["type"] == "play.finished"
    assert not_before(finished["at"], until)
    assert (ts(finished["at"]) - until).total_seconds() < 0.5


def test_stop_and_stream_commands(
    sim: SimRig,
) -> None:
    sim.fleet(["st-1"])
    long_clip = sim.media.add(os.urandom(3_000), duration_ms=60_000)
    first = play(long_clip, PRIORITY)
    assert sim.bridge.publish_command_to_station("st-1", first)
    wait_events(sim.recorder, "st-1", first.cmd_id, 1)
    too_low = Command.new("stop", {"max_priority": NORMAL})  # type: ignore[arg-type]
    assert sim.bridge.publish_command_to_station("st-1", too_low)
    sim.recorder.wait_for(
        "ack", "st-1", lambda d: d["cmd_id"] == too_low.cmd_id and d["status"] == "SUCCEEDED"
    )
    assert len(events(sim.recorder, "st-1", first.cmd_id)) == 1  # still playing
    stop = Command.new("stop")
    assert sim.bridge.publish_command_to_station("st-1", stop)
    ended = wait_events(sim.recorder, "st-1", first.cmd_id, 2)[1]
    assert ended["type"] == "play.preempted"
    assert stop.cmd_id in ended["reason"]
    final = sim.recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == first.cmd_id, count=3)[-1]
    assert final.data["status"] == "FAILED"

    stream = Command.new(
        "play",
        PlayBody(
            priority=PRIORITY,
            stream={"url": f"{sim.media.base_url}/stream/ok"},
            until=datetime.now().astimezone() + timedelta(seconds=0.6),
        ),
    )
    assert sim.bridge.publish_command_to_station("st-1", stream)
    assert [e["type"] for e in wait_events(sim.recorder, "st-1", stream.cmd_id, 2)] == [
        "play.started",
        "play.finished",
    ]
