"""The simulator plays a clip for its real length when the message gives no
``duration_ms`` (issue 15, "also found": it played every such clip for 60 s)."""

from __future__ import annotations

from pathlib import Path

from firmware_bridge.messages import EMERGENCY, Command, PlayBody
from firmware_bridge.simulator.duration import media_duration_ms
from firmware_bridge.topics import Topics
from tests.support.audio import ffmpeg
from tests.support.loa import FleetFactory, RawPublisher, wait_until
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()
TOPICS = Topics()


def mp3(path: Path, seconds: float) -> bytes:
    tone = f"sine=frequency=440:duration={seconds}"
    ffmpeg("-f", "lavfi", "-i", tone, "-ac", "1", "-b:a", "64k", str(path))
    return path.read_bytes()


def test_media_duration_is_measured(tmp_path: Path) -> None:
    data = mp3(tmp_path / "a.mp3", 2.5)
    assert data
    measured = media_duration_ms(tmp_path / "a.mp3", "a" * 64)
    assert measured is not None
    assert 2400 <= measured <= 2700
    assert media_duration_ms(tmp_path / "missing.mp3", "b" * 64) is None


def test_a_clip_without_duration_plays_for_its_real_length(
    broker: Mosquitto,
    recorder: Recorder,
    media: MediaServer,
    make_fleet: FleetFactory,
    raw: RawPublisher,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(broker, ["st-1"])
    clip = media.add(mp3(tmp_path / "clip.mp3", 2.0), duration_ms=None)
    assert "duration_ms" not in clip or clip["duration_ms"] is None
    cmd = Command.new("play", PlayBody(priority=EMERGENCY, media=clip), ttl_s=60)
    assert bridge_publish(raw, cmd)
    wait_until(
        lambda: any(
            p.cmd_id == cmd.cmd_id and p.outcome == "finished" for p in fleet.station("st-1").plays
        ),
        timeout_s=30,
        what="the play finished (before the 60 s default)",
    )
    [record] = [p for p in fleet.station("st-1").plays if p.cmd_id == cmd.cmd_id]
    assert record.started_at is not None
    assert record.ended_at is not None
    played_s = (record.ended_at - record.started_at).total_seconds()
    assert 1.5 <= played_s <= 10, played_s


def bridge_publish(raw: RawPublisher, cmd: Command) -> bool:
    from firmware_bridge.messages import dump_message

    raw.publish(TOPICS.cmd("st-1"), dump_message(cmd))
    return True
