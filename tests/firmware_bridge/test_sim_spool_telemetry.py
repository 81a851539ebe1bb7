"""Station behaviour rules 5 (events spooled while offline) and 6 (telemetry)."""

from __future__ import annotations

import itertools
import os
from datetime import datetime, timedelta
from pathlib import Path

from firmware_bridge.messages import Command, dump_message
from firmware_bridge.topics import Topics
from tests.support.loa import FleetFactory, RawPublisher, desired, file_item, wait_until
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def test_events_spooled_while_offline_arrive_once_oldest_first(
    tmp_path: Path,
    persistent_broker: Mosquitto,
    persistent_recorder: Recorder,
    media: MediaServer,
    make_fleet: FleetFactory,
) -> None:
    recorder = persistent_recorder
    fleet = make_fleet(persistent_broker, ["st-1"])
    now = fleet.now()
    clip = media.add(os.urandom(2_000), duration_ms=400)
    start = now + timedelta(seconds=2.5)
    items = [
        file_item("it-a", clip, start, length_s=10),
        file_item("it-b", clip, start + timedelta(seconds=0.6), length_s=10),
    ]
    server = RawPublisher(persistent_broker, client_id="srv-test")
    try:
        server.publish(
            TOPICS.desired("st-1"), dump_message(desired(1, items, now=now)), retain=True
        )
    finally:
        server.stop()
    recorder.wait_for("reported", "st-1", lambda d: d["missing"] == [])

    persistent_broker.stop()
    wait_until(lambda: not fleet.station("st-1").online, what="station offline")
    status = wait_until(
        lambda: (s := fleet.station("st-1")).spooled >= 4 and s,
        timeout_s=15,
        what="events spooled",
    )
    assert [p.outcome for p in status.plays] == ["finished", "finished"]
    spool = (tmp_path / "sim" / "st-1" / "spool.jsonl").read_text().splitlines()
    assert len(spool) == 4
    back_at = datetime.now().astimezone()

    persistent_broker.start()
    events = recorder.wait_for("event", "st-1", count=4, timeout_s=20)
    wait_until(lambda: fleet.station("st-1").online and fleet.station("st-1").spooled == 0)
    ping = Command.new("ping", now=fleet.now())
    server = RawPublisher(persistent_broker, client_id="srv-test-2")
    try:
        server.publish(TOPICS.cmd("st-1"), dump_message(ping))
    finally:
        server.stop()
    recorder.wait_for("ack", "st-1", lambda d: d["status"] == "SUCCEEDED")

    events = recorder.select("event", "st-1")
    data = [e.data for e in events]
    assert [(d["type"], d["item_id"]) for d in data] == [
        ("play.started", "it-a"),
        ("play.finished", "it-a"),
        ("play.started", "it-b"),
        ("play.finished", "it-b"),
    ]
    assert len({d["event_id"] for d in data}) == 4
    stamps = [datetime.fromisoformat(d["at"]) for d in data]
    assert stamps == sorted(stamps)
    assert stamps[-1] < back_at
    wait_until(
        lambda: (tmp_path / "sim" / "st-1" / "spool.jsonl").read_text().strip() == "",
        what="spool pruned",
    )


def test_telemetry_every_interval_with_seq_restarting_on_connect(
    broker: Mosquitto,
    recorder: Recorder,
    make_fleet: FleetFactory,
    raw: RawPublisher,
) -> None:
    fleet = make_fleet(broker, ["st-1"], speed=5.0)
    raw.publish(
        TOPICS.desired("st-1"),
        dump_message(desired(1, now=fleet.now(), telemetry_interval_s=5, volume=55)),
        retain=True,
    )
    recorder.wait_for("telemetry", "st-1", lambda d: d["seq"] == 3, timeout_s=20)
    fleet.drop_link("st-1")
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1)
    recorder.wait_for("telemetry", "st-1", lambda d: d["seq"] == 2, count=2, timeout_s=20)

    segments: list[list[dict[str, object]]] = []
    for record in recorder.snapshot():
        if record.sid != "st-1":
            continue
        if record.schema == "station-state" and record.data["online"]:
            segments.append([])
        elif record.schema == "telemetry":
            segments[-1].append(record.data)
    assert len(segments) == 2
    for segment in segments:
        seqs = [t["seq"] for t in segment]
        assert seqs == list(range(len(seqs)))
    first, second = segments
    assert all(r.qos == 0 and not r.retain for r in recorder.select("telemetry"))
    stamps = [datetime.fromisoformat(str(t["at"])) for t in first[1:]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(4.0 <= gap <= 6.5 for gap in gaps), gaps  # 5 s of station time each
    latest = second[-1]
    assert latest["volume"] == 55
    assert latest["playing"] is None
    assert latest["on_battery"] is False
    assert latest["speaker_ok"] is True
    assert isinstance(latest["rssi_dbm"], float)
    assert isinstance(latest["amp_temp_c"], float)
