"""Station behaviour rule 2: applying ``desired``, media download and ``reported``."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

from firmware_bridge.client import Bridge
from firmware_bridge.messages import Command, Reported
from firmware_bridge.simulator import FleetThread
from tests.support.loa import FleetFactory, Inbox, SimRig, desired, file_item, wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()


def reported(inbox: Inbox, sid: str, version: int) -> Reported:
    def find() -> Reported | None:
        for item in inbox.select("reported", sid):
            if isinstance(item.message, Reported) and item.message.desired_version == version:
                return item.message
        return None

    found: Reported = wait_until(find, what=f"reported v{version}")
    return found


def barrier(bridge: Bridge, recorder: Recorder, sid: str) -> None:
    """Ping ``sid`` and wait for the reply: everything published before was handled."""
    cmd = Command.new("ping")
    assert bridge.publish_command_to_station(sid, cmd)
    recorder.wait_for(
        "ack", sid, lambda d: d["cmd_id"] == cmd.cmd_id and d["status"] == "SUCCEEDED"
    )


def cache(tmp_path: Path, sid: str) -> set[str]:
    return {p.name for p in (tmp_path / "sim" / sid / "media").iterdir()}


def test_desired_downloads_verifies_caches_and_reports(
    sim: SimRig,
    tmp_path: Path,
) -> None:
    fleet: FleetThread = sim.fleet(["st-1"])
    now = fleet.now()
    bulletin = sim.media.add(os.urandom(50_000))
    jingle = sim.media.add(os.urandom(7_000))
    fallback = sim.media.add(os.urandom(9_000), duration_ms=3000)
    ended = sim.media.add(os.urandom(1_000))
    items = [
        file_item("it-bulletin", bulletin, now + timedelta(hours=1)),
        file_item("it-jingle", jingle, now + timedelta(hours=2)),
        file_item("it-past", ended, now - timedelta(minutes=30), length_s=60),
        {
            "item_id": "it-relay",
            "kind": "relay",
            "title": "Tiếp sóng",
            "start_at": now + timedelta(hours=3),
            "end_at": now + timedelta(hours=4),
            "priority": 3,
            "url": f"{sim.media.base_url}/stream/ok",
            "fallback": fallback,
        },
    ]
    assert sim.bridge.publish_desired("st-1", desired(1, items, now=now, volume=65))
    report = reported(sim.inbox, "st-1", 1)
    assert report.missing == []
    assert report.volume == 65
    assert report.cache_bytes == 50_000 + 7_000 + 9_000
    assert cache(tmp_path, "st-1") == {bulletin["sha256"], jingle["sha256"], fallback["sha256"]}
    for name in cache(tmp_path, "st-1"):
        data = (tmp_path / "sim" / "st-1" / "media" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == name
    assert sim.media.hits(ended["sha256"]) == 0  # its item has already ended
    retained = sim.recorder.wait_for("reported", "st-1")[0]
    assert retained.qos == 1
    status = fleet.station("st-1")
    assert status.desired_version == 1
    assert status.volume == 65
    assert status.missing == ()

    # v2 keeps one file and adds another: the dropped one leaves the cache.
    extra = sim.media.add(os.urandom(3_000))
    items2 = [
        file_item("it-bulletin", bulletin, now + timedelta(hours=1)),
        file_item("it-extra", extra, now + timedelta(hours=5)),
    ]
    assert sim.bridge.publish_desired("st-1", desired(2, items2, now=now))
    assert reported(sim.inbox, "st-1", 2).missing == []
    assert cache(tmp_path, "st-1") == {bulletin["sha256"], extra["sha256"]}
    assert sim.media.hits(bulletin["sha256"]) == 1  # already cached, not fetched again

    # A lower or equal version is ignored.
    assert sim.bridge.publish_desired("st-1", desired(1, items, now=now))
    assert sim.bridge.publish_desired("st-1", desired(2, items, now=now, volume=10))
    barrier(sim.bridge, sim.recorder, "st-1")
    status = fleet.station("st-1")
    assert status.desired_version == 2
    assert status.volume == 70
    assert cache(tmp_path, "st-1") == {bulletin["sha256"], extra["sha256"]}
    versions = [r.data["desired_version"] for r in sim.recorder.select("reported", "st-1")]
    assert versions == [1, 2]

    # The held version survives a restart: the retained v2 is then ignored,
    # and the birth carries it.
    fleet.restart("st-1")
    birth = sim.recorder.wait_for(
        "station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1
    )
    assert birth[0].data["desired_version"] == 2


def test_corrupt_download_stays_missing_and_reports_media_corrupt(
    sim: SimRig,
    tmp_path: Path,
) -> None:
    fleet = sim.fleet(["st-1", "st-2"], faults=["corrupt:st-1"])
    now = fleet.now()
    bulletin = sim.media.add(os.urandom(20_000))
    for sid in ("st-1", "st-2"):
        item = file_item("it-1", bulletin, now + timedelta(hours=1))
        assert sim.bridge.publish_desired(sid, desired(1, [item], now=now))
    assert reported(sim.inbox, "st-1", 1).missing == [bulletin["sha256"]]
    assert reported(sim.inbox, "st-2", 1).missing == []
    event = sim.recorder.wait_for("event", "st-1", lambda d: d["type"] == "media.corrupt")[0].data
    assert event["sha256"] == bulletin["sha256"]
    assert event["desired_version"] == 1
    assert cache(tmp_path, "st-1") == set()
    assert fleet.station("st-1").missing == (bulletin["sha256"],)


def test_unreachable_media_is_missing_until_sync(
    sim: SimRig,
    tmp_path: Path,
) -> None:
    fleet = sim.fleet(["st-1"])
    now = fleet.now()
    data = os.urandom(5_000)
    late = sim.media.add(data)
    del sim.media.files[late["sha256"]]  # 404 for now
    item = file_item("it-1", late, now + timedelta(hours=1))
    assert sim.bridge.publish_desired("st-1", desired(1, [item], now=now))
    assert reported(sim.inbox, "st-1", 1).missing == [late["sha256"]]
    sim.media.add(data)
    sync = Command.new("sync")
    assert sim.bridge.publish_command_to_station("st-1", sync)
    acks = sim.recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == sync.cmd_id, count=3)
    assert [a.data["status"] for a in acks] == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
    last = [r.data for r in sim.recorder.select("reported", "st-1")][-1]
    assert last["missing"] == []
    assert last["desired_version"] == 1
    assert cache(tmp_path, "st-1") == {late["sha256"]}


def test_groups_from_desired_are_subscribed_and_changed(
    broker: Mosquitto,
    recorder: Recorder,
    bridge: Bridge,
    inbox: Inbox,
    make_fleet: FleetFactory,
) -> None:
    fleet = make_fleet(broker, ["st-1", "st-2"])
    now = fleet.now()
    assert bridge.publish_desired("st-1", desired(1, groups=["tan-an", "phuong-1"], now=now))
    reported(inbox, "st-1", 1)
    ping = Command.new("ping")
    assert bridge.publish_command_to_group("phuong-1", ping)
    recorder.wait_for(
        "ack", "st-1", lambda d: d["cmd_id"] == ping.cmd_id and d["status"] == "SUCCEEDED"
    )
    assert fleet.station("st-1").groups == ("phuong-1", "tan-an")

    assert bridge.publish_desired("st-1", desired(2, groups=["phuong-2"], now=now))
    reported(inbox, "st-1", 2)
    old, new = Command.new("ping"), Command.new("ping")
    assert bridge.publish_command_to_group("phuong-1", old)
    assert bridge.publish_command_to_group("phuong-2", new)
    recorder.wait_for(
        "ack", "st-1", lambda d: d["cmd_id"] == new.cmd_id and d["status"] == "SUCCEEDED"
    )
    barrier(bridge, recorder, "st-1")
    assert recorder.select("ack", where=lambda d: d["cmd_id"] == old.cmd_id) == []
    assert recorder.select("ack", "st-2", lambda d: d["cmd_id"] == new.cmd_id) == []
