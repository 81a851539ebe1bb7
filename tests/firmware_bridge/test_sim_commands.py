"""Station behaviour rule 4: the command lifecycle."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

from firmware_bridge.client import Bridge
from firmware_bridge.messages import (
    EMERGENCY,
    Command,
    PlayBody,
    VolumeBody,
    dump_message,
    format_timestamp,
)
from firmware_bridge.simulator import FaultSettings, SimSettings
from firmware_bridge.topics import Topics
from tests.support.loa import FleetFactory, RawPublisher, SimRig, wait_until
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def acks(recorder: Recorder, sid: str, cmd_id: str, count: int = 1) -> list[dict[str, Any]]:
    found = recorder.wait_for("ack", sid, lambda d: d["cmd_id"] == cmd_id, count=count)
    return [r.data for r in found]


def statuses(recorder: Recorder, sid: str, cmd_id: str, count: int) -> list[str]:
    return [a["status"] for a in acks(recorder, sid, cmd_id, count)]


def test_expired_command_is_acked_expired_and_never_executed(
    sim: SimRig,
) -> None:
    fleet = sim.fleet(["st-1"])
    clip = sim.media.add(os.urandom(1000))
    stale = Command.new(
        "play",
        PlayBody(priority=EMERGENCY, media=clip),
        ttl_s=5,
        now=fleet.now() - timedelta(seconds=60),
    )
    assert sim.bridge.publish_command_to_station("st-1", stale)
    ack = acks(sim.recorder, "st-1", stale.cmd_id)[0]
    assert ack["status"] == "EXPIRED"
    ping = Command.new("ping")
    assert sim.bridge.publish_command_to_station("st-1", ping)
    acks(sim.recorder, "st-1", ping.cmd_id, 3)
    assert len(sim.recorder.select("ack", "st-1", lambda d: d["cmd_id"] == stale.cmd_id)) == 1
    assert sim.recorder.select("event", "st-1") == []
    assert sim.media.hits(clip["sha256"]) == 0
    [record] = fleet.station("st-1").plays
    assert record.outcome == "expired"
    assert record.started_at is None


def test_duplicate_cmd_id_resends_the_last_ack_without_executing(
    broker: Mosquitto,
    recorder: Recorder,
    media: MediaServer,
    make_fleet: FleetFactory,
    raw: RawPublisher,
) -> None:
    fleet = make_fleet(broker, ["st-1"])
    clip = media.add(os.urandom(1000), duration_ms=300)
    cmd = Command.new("play", PlayBody(priority=EMERGENCY, media=clip), ttl_s=60)
    payload = dump_message(cmd)
    raw.publish(TOPICS.cmd("st-1"), payload)
    first = [a["status"] for a in acks(recorder, "st-1", cmd.cmd_id, 3)]
    assert first == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
    raw.publish(TOPICS.cmd("st-1"), payload)  # at-least-once redelivery
    again = acks(recorder, "st-1", cmd.cmd_id, 4)
    assert again[3] == again[2]  # byte-for-byte the last ack
    raw.publish(TOPICS.cmd("st-1"), payload)
    assert acks(recorder, "st-1", cmd.cmd_id, 5)[4] == again[2]
    plays = [p for p in fleet.station("st-1").plays if p.cmd_id == cmd.cmd_id]
    assert len(plays) == 1
    started = recorder.select("event", "st-1", lambda d: d["type"] == "play.started")
    assert len(started) == 1
    assert media.hits(clip["sha256"]) == 1


def test_unknown_type_and_invalid_body_are_rejected(
    broker: Mosquitto,
    recorder: Recorder,
    make_fleet: FleetFactory,
    raw: RawPublisher,
) -> None:
    recorder.expect_invalid(lambda r: r.topic == TOPICS.cmd("st-1"))
    fleet = make_fleet(broker, ["st-1"])
    now = fleet.now()
    base = {
        "issued_at": format_timestamp(now),
        "not_after": format_timestamp(now + timedelta(seconds=30)),
    }
    cases = {
        "c-unknown": {"type": "dance", "body": {}},
        "c-volume": {"type": "volume", "body": {"level": 200}},
        "c-play": {"type": "play", "body": {"priority": 5}},
        "c-nobody": {"type": "ping"},
    }
    for cmd_id, extra in cases.items():
        raw.publish(TOPICS.cmd("st-1"), json.dumps({"cmd_id": cmd_id, **base, **extra}).encode())
    raw.publish(TOPICS.cmd("st-1"), b"not json at all")
    raw.publish(TOPICS.cmd("st-1"), json.dumps({"cmd_id": "bad id!", "type": "ping"}).encode())
    for cmd_id in cases:
        [ack] = acks(recorder, "st-1", cmd_id)
        assert ack["status"] == "REJECTED", cmd_id
    assert "unknown command type 'dance'" in acks(recorder, "st-1", "c-unknown")[0]["reason"]
    assert acks(recorder, "st-1", "c-volume")[0]["reason"] == (
        "invalid command: body/level: 200 is greater than the maximum of 100"
    )
    expired = {"cmd_id": "c-old-junk", "type": "dance", "not_after": "2000-01-01T00:00:00Z"}
    raw.publish(TOPICS.cmd("st-1"), json.dumps(expired).encode())
    assert acks(recorder, "st-1", "c-old-junk")[0]["status"] == "EXPIRED"
    assert fleet.station("st-1").online


def test_ping_volume_rebirth_and_reboot(
    broker: Mosquitto,
    recorder: Recorder,
    bridge: Bridge,
    make_fleet: FleetFactory,
) -> None:
    fleet = make_fleet(broker, ["st-1"], faults=["clock:st-1"])
    # The station's clock is tens of seconds off: give the ping a generous expiry.
    ping = Command.new("ping", now=fleet.now(), ttl_s=600)
    assert bridge.publish_command_to_station("st-1", ping)
    final = acks(recorder, "st-1", ping.cmd_id, 3)
    assert [a["status"] for a in final] == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
    station_time = datetime.fromisoformat(final[2]["station_time"])
    offset = fleet.station("st-1").clock_offset_s
    assert abs(offset) >= 20
    assert abs((station_time - fleet.now()).total_seconds() - offset) < 2

    volume = Command.new("volume", VolumeBody(level=42), now=station_time)
    assert bridge.publish_command_to_station("st-1", volume)
    assert statuses(recorder, "st-1", volume.cmd_id, 3)[-1] == "SUCCEEDED"
    assert fleet.station("st-1").volume == 42

    rebirth = Command.new("rebirth", now=station_time)
    assert bridge.publish_command_to_station("st-1", rebirth)
    assert statuses(recorder, "st-1", rebirth.cmd_id, 3)[-1] == "SUCCEEDED"
    births = recorder.wait_for("station-state", "st-1", lambda d: d["online"], count=2)
    assert births[1].data["bdseq"] == births[0].data["bdseq"] == 0

    reboot = Command.new("reboot", now=station_time)
    assert bridge.publish_command_to_station("st-1", reboot)
    assert statuses(recorder, "st-1", reboot.cmd_id, 3) == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1)
    timeline = [
        r.data
        for r in recorder.snapshot()
        if r.sid == "st-1" and r.schema in ("ack", "station-state")
    ]
    done = timeline.index(
        next(d for d in timeline if d.get("cmd_id") == reboot.cmd_id and d["status"] == "SUCCEEDED")
    )
    states = [d for d in timeline[done + 1 :] if "online" in d]
    assert states[:2] == [{"online": False, "bdseq": 0}, states[1]]
    assert states[1]["online"] is True
    assert states[1]["bdseq"] == 1
    wait_until(lambda: fleet.station("st-1").online and fleet.station("st-1").connects == 2)


def test_a_play_never_starts_after_not_after_even_when_accepted(
    sim: SimRig,
) -> None:
    settings = SimSettings(
        reconnect_min_s=0.2, reconnect_max_s=1, faults=FaultSettings(slow_bytes_per_s=32 * 1024)
    )
    fleet = sim.fleet(["st-1"], faults=["slow:st-1"], settings=settings)
    clip = sim.media.add(os.urandom(96 * 1024))  # three seconds to download
    cmd = Command.new("play", PlayBody(priority=EMERGENCY, media=clip), ttl_s=1)
    assert sim.bridge.publish_command_to_station("st-1", cmd)
    assert statuses(sim.recorder, "st-1", cmd.cmd_id, 2) == ["RECEIVED", "EXPIRED"]
    assert sim.recorder.select("event", "st-1") == []
    [record] = fleet.station("st-1").plays
    assert record.outcome == "expired"


def test_one_group_command_is_handled_by_every_station_of_a_process(
    broker: Mosquitto,
    recorder: Recorder,
    media: MediaServer,
    make_fleet: FleetFactory,
    raw: RawPublisher,
) -> None:
    """A group command reaches every station of a simulator process as the same bytes
    (parsed once per process): each station still acks it, plays it and keeps its own
    record, and a broken group command is refused by each, with its own reason."""
    recorder.expect_invalid(lambda r: r.topic == TOPICS.group_cmd("all"))
    sids = ["st-1", "st-2", "st-3"]
    fleet = make_fleet(broker, sids)
    recorder.wait_for("station-state", where=lambda d: d["online"], count=3)
    clip = media.add(os.urandom(1000), duration_ms=300)
    cmd = Command.new("play", PlayBody(priority=EMERGENCY, media=clip), ttl_s=60)
    raw.publish(TOPICS.group_cmd("all"), dump_message(cmd))
    records = []
    for sid in sids:
        assert statuses(recorder, sid, cmd.cmd_id, 3) == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
        [record] = [p for p in fleet.station(sid).plays if p.cmd_id == cmd.cmd_id]
        assert record.outcome == "finished"
        assert record.started_at is not None
        records.append(record)
    assert len({id(r) for r in records}) == 3  # one record each, not one shared
    now = fleet.now()
    broken = {
        "cmd_id": "c-broken-group",
        "type": "volume",
        "issued_at": format_timestamp(now),
        "not_after": format_timestamp(now + timedelta(seconds=30)),
        "body": {"level": 200},
    }
    for _ in range(2):  # the same bad bytes twice: refused again, not remembered as good
        raw.publish(TOPICS.group_cmd("all"), json.dumps(broken).encode())
    for sid in sids:
        found = acks(recorder, sid, "c-broken-group", 2)
        assert [a["status"] for a in found] == ["REJECTED", "REJECTED"]
        assert "200 is greater than the maximum of 100" in found[0]["reason"]
