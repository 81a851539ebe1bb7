"""Proposal 0005: a ``play`` sent before its audio (``media_follows``), the audio then
coming in a ``media`` command.

The capability is not announced by default (today's firmware contract lacks it): these
stations opt in. The proposal's messages are not in the shared loa/v1 contract yet, so
this module's recorder validates every message against the vendored schemas, which
carry them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from firmware_bridge.messages import (
    EMERGENCY,
    MEDIA_FOLLOWS,
    SMART_CAPABILITIES,
    Command,
    MediaBody,
    MediaFollows,
    PlayBody,
    StopBody,
)
from firmware_bridge.simulator import FleetThread, commands
from firmware_bridge.simulator.player import PlayRecord
from tests.support.fixtures import recording_proposals
from tests.support.loa import FAST, SimRig, wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

#: stations that announce proposal 0005
FOLLOWING = replace(FAST, capabilities=(*SMART_CAPABILITIES, MEDIA_FOLLOWS))


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    """Every message on ``broker``, validated against the vendored schemas."""
    yield from recording_proposals(broker)


def statuses(recorder: Recorder, sid: str, cmd_id: str, count: int) -> list[str]:
    found = recorder.wait_for("ack", sid, lambda d: d["cmd_id"] == cmd_id, count=count)
    return [r.data["status"] for r in found]


def events(recorder: Recorder, sid: str, cmd_id: str) -> list[dict[str, Any]]:
    return [r.data for r in recorder.select("event", sid, lambda d: d.get("cmd_id") == cmd_id)]


def play_before_audio(now: datetime, ready_in_s: float, **extra: Any) -> Command:
    body = PlayBody(
        priority=EMERGENCY,
        title="spoken warning",
        media_follows=MediaFollows(ready_by=now + timedelta(seconds=ready_in_s)),
        **extra,
    )
    return Command.new("play", body, ttl_s=60, now=now)


def record_of(fleet: FleetThread, play: Command) -> PlayRecord:
    [record] = [p for p in fleet.station("st-1").plays if p.cmd_id == play.cmd_id]
    return record


def media_for(play: Command, media: dict[str, Any], now: datetime) -> Command:
    return Command.new("media", MediaBody(for_=play.cmd_id, media=media), ttl_s=60, now=now)


def test_the_birth_announces_media_follows_only_when_enabled(sim: SimRig) -> None:
    sim.fleet(["st-1"], settings=FOLLOWING)
    sim.fleet(["st-2"])
    [birth] = sim.recorder.wait_for("station-state", "st-1", lambda d: d["online"])
    assert "media_follows" in birth.data["capabilities"]
    [today] = sim.recorder.wait_for("station-state", "st-2", lambda d: d["online"])
    assert "media_follows" not in today.data["capabilities"]
    assert "file" in today.data["capabilities"]


def test_a_play_waits_after_its_attention_signal_for_the_media_command(sim: SimRig) -> None:
    fleet = sim.fleet(["st-1"], settings=FOLLOWING)
    signal = sim.media.add(os.urandom(800), duration_ms=300)
    speech = sim.media.add(os.urandom(1500), duration_ms=500)
    play = play_before_audio(fleet.now(), 30, attention=signal)
    assert sim.bridge.publish_command_to_station("st-1", play)
    assert statuses(sim.recorder, "st-1", play.cmd_id, 2) == ["RECEIVED", "IN_PROGRESS"]
    sim.recorder.wait_for(
        "event", "st-1", lambda d: d["type"] == "play.started" and d["cmd_id"] == play.cmd_id
    )
    assert sim.media.hits(signal["sha256"]) == 1
    wait_until(lambda: record_of(fleet, play).attention_ms == 300, what="the signal")
    time.sleep(0.6)  # past the signal: still on air, waiting for its audio
    record = record_of(fleet, play)
    assert record.outcome == "playing"
    assert record.source == "file"
    assert statuses(sim.recorder, "st-1", play.cmd_id, 2) == ["RECEIVED", "IN_PROGRESS"]

    audio = media_for(play, speech, fleet.now())
    assert sim.bridge.publish_command_to_station("st-1", audio)
    assert statuses(sim.recorder, "st-1", audio.cmd_id, 3) == [
        "RECEIVED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert statuses(sim.recorder, "st-1", play.cmd_id, 3) == [
        "RECEIVED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert [e["type"] for e in events(sim.recorder, "st-1", play.cmd_id)] == [
        "play.started",
        "play.finished",
    ]
    assert sim.media.hits(speech["sha256"]) == 1
    record = record_of(fleet, play)
    assert record.outcome == "finished"
    assert record.started_at is not None
    assert record.ended_at is not None
    assert (record.ended_at - record.started_at).total_seconds() >= 0.8  # signal + speech


def test_media_that_comes_before_its_play_is_used_at_once(
    sim: SimRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no grace and a ready_by already past: a play that waited at all would fail
    monkeypatch.setattr(commands, "MEDIA_FOLLOWS_GRACE_S", 0.0)
    fleet = sim.fleet(["st-1"], settings=FOLLOWING)
    speech = sim.media.add(os.urandom(1500), duration_ms=300)
    now = fleet.now()
    play = play_before_audio(now, -1)
    audio = media_for(play, speech, now)
    assert sim.bridge.publish_command_to_station("st-1", audio)
    assert statuses(sim.recorder, "st-1", audio.cmd_id, 3) == [
        "RECEIVED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert sim.bridge.publish_command_to_station("st-1", play)
    assert statuses(sim.recorder, "st-1", play.cmd_id, 3) == [
        "RECEIVED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert [e["type"] for e in events(sim.recorder, "st-1", play.cmd_id)] == [
        "play.started",
        "play.finished",
    ]
    assert sim.media.hits(speech["sha256"]) == 1
    # the same media command again: the last ack again, nothing fetched
    assert sim.bridge.publish_command_to_station("st-1", audio)
    assert statuses(sim.recorder, "st-1", audio.cmd_id, 4)[3] == "SUCCEEDED"
    assert sim.media.hits(speech["sha256"]) == 1


def test_a_play_whose_media_never_comes_fails(sim: SimRig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "MEDIA_FOLLOWS_GRACE_S", 0.5)
    fleet = sim.fleet(["st-1"], settings=FOLLOWING)
    play = play_before_audio(fleet.now(), 0.5)
    assert sim.bridge.publish_command_to_station("st-1", play)
    found = sim.recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == play.cmd_id, count=3)
    assert [r.data["status"] for r in found] == ["RECEIVED", "IN_PROGRESS", "FAILED"]
    assert commands.MEDIA_NEVER_CAME in found[2].data["reason"]
    played = events(sim.recorder, "st-1", play.cmd_id)
    assert [e["type"] for e in played] == ["play.started", "play.failed"]
    assert commands.MEDIA_NEVER_CAME in played[1]["reason"]
    # media that comes too late is acked and kept, never played
    late = media_for(play, sim.media.add(os.urandom(500)), fleet.now())
    assert sim.bridge.publish_command_to_station("st-1", late)
    assert statuses(sim.recorder, "st-1", late.cmd_id, 3) == [
        "RECEIVED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert len(events(sim.recorder, "st-1", play.cmd_id)) == 2
    assert fleet.station("st-1").online


def test_a_stop_ends_the_wait_and_a_failed_download_fails_the_media_command(
    sim: SimRig,
) -> None:
    fleet = sim.fleet(["st-1"], settings=FOLLOWING)
    play = play_before_audio(fleet.now(), 60)
    assert sim.bridge.publish_command_to_station("st-1", play)
    assert statuses(sim.recorder, "st-1", play.cmd_id, 2) == ["RECEIVED", "IN_PROGRESS"]
    stop = Command.new("stop", StopBody(cmd_id=play.cmd_id), now=fleet.now())
    assert sim.bridge.publish_command_to_station("st-1", stop)
    assert statuses(sim.recorder, "st-1", stop.cmd_id, 3)[2] == "SUCCEEDED"
    assert statuses(sim.recorder, "st-1", play.cmd_id, 3)[2] == "FAILED"
    played = events(sim.recorder, "st-1", play.cmd_id)
    assert [e["type"] for e in played] == ["play.started", "play.preempted"]

    gone = sim.media.add(os.urandom(700))
    gone = {**gone, "url": gone["url"].replace("/media/", "/missing/")}
    audio = media_for(play, gone, fleet.now())
    assert sim.bridge.publish_command_to_station("st-1", audio)
    found = sim.recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == audio.cmd_id, count=3)
    assert [r.data["status"] for r in found] == ["RECEIVED", "IN_PROGRESS", "FAILED"]
    assert found[2].data["reason"] == "media download failed"
    assert fleet.station("st-1").online
