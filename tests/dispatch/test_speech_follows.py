"""A spoken emergency sent before its speech exists (proposal 0005, ``media_follows``):
real broker, the service over HTTP, simulated stations that announce the capability."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from audio_library.models import MediaAsset
from broadcaster.dispatch import outbox
from broadcaster.dispatch.models import Broadcast, Command, CommandTarget, Play, TargetStatus
from firmware_bridge.messages import SMART_CAPABILITIES
from firmware_bridge.simulator import FleetThread
from kernel.db import utcnow
from stations import tan_an
from stations.models import Station
from tests.alerts.capdocs import box_polygon, flood_alert, inside
from tests.support.fixtures import recording_proposals
from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder

FOLLOWS = (*SMART_CAPABILITIES, "media_follows")
TEXT = "Cảnh báo lũ. Người dân di chuyển đến nơi an toàn."


@pytest.fixture
def persistent_recorder(persistent_broker: Mosquitto) -> Iterator[Recorder]:
    """Every message checked against the contract with the proposals this service and
    simulator implement (the vendored schemas: ``loa/v1`` plus proposals 0001-0005)."""
    yield from recording_proposals(persistent_broker)


def _applied(live: Live, sids: list[str]) -> bool:
    """The stations applied their plan and the service has stored their births with the
    capabilities they announced (a station applies the retained plan before the service
    may have read its birth: until then the service cannot know it takes
    ``media_follows``)."""
    if not all((live.fleets[0].station(sid).desired_version or 0) >= 1 for sid in sids):
        return False
    with live.http() as http:
        states = [http.get(f"/api/v1/stations/{sid}/state").json() for sid in sids]
    return all(s["online"] and "media_follows" in s["capabilities"] for s in states)


def _rows(live: Live, broadcast_id: int) -> dict[str, dict[str, object]]:
    with live.http() as http:
        found = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["stations"]
    return {r["sid"]: r for r in found}


def _spoken_with_one_offline(
    live: Live, *, expires_in_s: int
) -> tuple[list[str], FleetThread, dict[str, Any]]:
    """Three stations that announce ``media_follows``, the last one offline (its session
    gone with it), and a spoken emergency sent to the three: (sids, fleet, broadcast)."""
    sids = sorted(s for s in live.seed() if s.startswith("lbn-"))[:3]
    fleet = live.fleet(sids, protocol="5", session_expiry_s=0, will_delay_s=0, capabilities=FOLLOWS)
    wait_until(lambda: _applied(live, sids), timeout_s=60, what="applied")
    fleet.kill(sids[-1], "abort")
    with live.http() as http:
        wait_until(
            lambda: not http.get(f"/api/v1/stations/{sids[-1]}").json()["online"],
            timeout_s=60,
            what="offline",
        )
        made = send_broadcast(
            http,
            {
                "targets": {"stations": sids},
                "content": {"text": TEXT},
                "tier": "emergency",
                "expires_in_s": expires_in_s,
            },
        )
    return sids, fleet, made


def test_the_play_leaves_before_the_speech_and_the_audio_follows(live: Live) -> None:
    """Stations that announce ``media_follows`` get the play at once, then a ``media``
    command with the spoken audio, and play it; a station reached later (offline at send
    time) gets the whole play, audio included."""
    sids, fleet, made = _spoken_with_one_offline(live, expires_in_s=60)
    first, second, late = sids
    broadcast_id, cmd_id = made["id"], made["cmd_id"]
    assert made["status"] == "active"
    for sid in (first, second):
        wait_until(
            lambda sid=sid: _rows(live, broadcast_id)[sid]["status"] == "SUCCEEDED",
            timeout_s=30,
            what=f"{sid} played",
        )
        assert _rows(live, broadcast_id)[sid]["play_status"] == "played"
        assert any(p.cmd_id == cmd_id and p.started_at for p in fleet.station(sid).plays)

    commands = live.recorder.select("command")
    plays = [r for r in commands if r.data["cmd_id"] == cmd_id]
    audio = [r for r in commands if r.data["type"] == "media"]
    # the play went out without its audio, announcing that it follows ...
    assert plays
    assert all("media" not in r.data["body"] for r in plays)
    assert all("ready_by" in r.data["body"]["media_follows"] for r in plays)
    # ... and one media command for it came after, to the same stations
    assert len({r.data["cmd_id"] for r in audio}) == 1
    assert {r.data["body"]["for"] for r in audio} == {cmd_id}
    assert min(r.at for r in audio) > max(r.at for r in plays)
    assert {r.sid for r in audio} >= {first, second}
    media = audio[0].data["body"]["media"]
    assert media["sha256"]
    assert media["bytes"] > 0

    # the plays were planned before the audio existed: now they last what it lasts
    with live.factory() as session:
        expected = set(session.scalars(select(Play.expected_ms).where(Play.cmd_id == cmd_id)))
    assert expected == {media["duration_ms"]}

    # the station that was offline gets the whole play when it comes back
    fleet.restart(late)
    wait_until(
        lambda: _rows(live, broadcast_id)[late]["status"] == "SUCCEEDED",
        timeout_s=30,
        what="played late",
    )
    copies = [
        r for r in live.recorder.select("command") if r.data["cmd_id"] == cmd_id and r.sid == late
    ]
    assert copies, "a copy of the play to the station that came back"
    assert copies[-1].data["body"]["media"] == media
    assert "media_follows" not in copies[-1].data["body"]
    with live.http() as http:
        read = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert read["progress"]["succeeded"] == 3


def test_a_station_without_the_capability_gets_the_whole_play(live: Live) -> None:
    """One target that does not announce ``media_follows``: the broadcast is sent as
    before, once its speech exists, with the audio in the play and no media command."""
    sids = sorted(s for s in live.seed() if s.startswith("lbn-"))[:2]
    fleet = live.fleet(sids[:1], capabilities=FOLLOWS)
    today = live.fleet(sids[1:])
    wait_until(
        lambda: all(
            (f.station(s).desired_version or 0) >= 1
            for f, s in ((fleet, sids[0]), (today, sids[1]))
        ),
        timeout_s=60,
        what="applied",
    )
    with live.http() as http:
        made = send_broadcast(
            http,
            {"targets": {"stations": sids}, "content": {"text": TEXT}, "tier": "emergency"},
        )
    cmd_id = made["cmd_id"]
    wait_until(
        lambda: all(r["status"] == "SUCCEEDED" for r in _rows(live, made["id"]).values()),
        timeout_s=30,
        what="played",
    )
    plays = [r for r in live.recorder.select("command") if r.data["cmd_id"] == cmd_id]
    assert plays
    assert all(r.data["body"]["media"]["sha256"] for r in plays)
    assert all("media_follows" not in r.data["body"] for r in plays)
    assert not [r for r in live.recorder.select("command") if r.data["type"] == "media"]
    assert any(p.cmd_id == cmd_id for p in fleet.station(sids[0]).plays)


@pytest.fixture
def no_speech_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service configured with a text-to-speech engine that does not exist (the
    speech fails after the text was checked, as when espeak-ng breaks)."""
    monkeypatch.setenv("BROADCASTER_AUDIO_TTS_ENGINE", "khong-co")


def test_speech_that_fails_after_the_play_left_stops_the_broadcast(
    no_speech_engine: None, live: Live
) -> None:
    """The play is out before the speech; when the speech then fails, the sender is told
    why (422, in Vietnamese), the broadcast is stopped (not left waiting) and its
    stations stop waiting for the audio."""
    sids = sorted(s for s in live.seed() if s.startswith("lbn-"))[:2]
    fleet = live.fleet(sids, capabilities=FOLLOWS)
    wait_until(lambda: _applied(live, sids), timeout_s=60, what="applied")
    with live.http() as http:
        answer = http.post(
            "/api/v1/broadcasts",
            json={"targets": {"stations": sids}, "content": {"text": TEXT}, "tier": "emergency"},
        )
        assert answer.status_code == 422, answer.text
        error = answer.json()
        assert error["message_vi"] == "Không có bộ đọc văn bản này"
        made = http.get("/api/v1/broadcasts").json()["items"][0]
    assert made["status"] == "stopped"
    assert made["stopped_by"] == "admin"
    plays = [r for r in live.recorder.select("command") if r.data["cmd_id"] == made["cmd_id"]]
    assert plays
    assert all("media_follows" in r.data["body"] for r in plays)
    assert not [r for r in live.recorder.select("command") if r.data["type"] == "media"]
    # shown as stopped by the operator, never as failed
    wait_until(
        lambda: all(
            r["status"] == "STOPPED" and r["play_status"] == "cancelled"
            for r in _rows(live, made["id"]).values()
        ),
        timeout_s=30,
        what="every station's copy stopped",
    )
    start_at = dt.datetime.fromisoformat(made["start_at"])
    wait_until(lambda: fleet.now() > start_at + dt.timedelta(seconds=1), timeout_s=30, what="start")
    for sid in sids:  # nothing started at start_at to wait for the audio on air
        assert fleet.station(sid).playing is None
        assert not [
            p for p in fleet.station(sid).plays if p.cmd_id == made["cmd_id"] and p.started_at
        ]


def test_stopping_the_broadcast_ends_the_audio_that_followed(live: Live) -> None:
    """The audio went out in its ``media`` command, then the operator stops the
    broadcast: the media command ends too (the offline station's copy STOPPED), so it is
    not sent again after a reconnect to the broker (`outbox.unacknowledged`)."""
    sids, _fleet, made = _spoken_with_one_offline(live, expires_in_s=600)
    late = sids[-1]
    with live.http() as http:
        wait_until(
            lambda: [
                r
                for r in live.recorder.select("command")
                if r.data["type"] == "media" and r.data["body"]["for"] == made["cmd_id"]
            ],
            timeout_s=30,
            what="the audio sent",
        )
        stopped = http.post(f"/api/v1/broadcasts/{made['id']}/stop")
        assert stopped.status_code == 200, stopped.text

    with live.factory() as session:
        audio = session.scalars(
            select(Command).where(Command.broadcast_id == made["id"], Command.type == "media")
        ).one()
        assert audio.done
        by_station = dict(
            session.execute(
                select(Station.sid, CommandTarget.status)
                .join(CommandTarget, CommandTarget.station_id == Station.id)
                .where(CommandTarget.command_id == audio.id)
            ).all()
        )
        assert by_station[late] is TargetStatus.STOPPED
        assert not set(by_station.values()) & set(outbox.OPEN)
        assert audio.id not in {c.id for c in outbox.unacknowledged(session, utcnow())}


def _cap_source(http: httpx.Client, *, auto_air: bool) -> dict[str, str]:
    """The headers of a new alert source's CAP requests."""
    source = http.post("/api/v1/alert-sources", json={"name": "PCTT", "auto_air": auto_air})
    assert source.status_code == 201, source.text
    return {"X-Alert-Token": source.json()["token"], "Content-Type": "application/cap+xml"}


def _around(live: Live, count: int) -> tuple[str, list[str]]:
    """A CAP polygon around the first ``count`` hamlet stations (and every station inside
    it), and those stations, started announcing ``media_follows``: a CAP alert to the
    polygon is a spoken emergency whose stations all take a play before its audio."""
    live.seed()
    chosen = sorted((s for s in tan_an.stations() if s.sid.startswith("lbn-")), key=lambda s: s.sid)
    lats = [s.latitude for s in chosen[:count]]
    lons = [s.longitude for s in chosen[:count]]
    box = (min(lats) - 1e-4, min(lons) - 1e-4, max(lats) + 1e-4, max(lons) + 1e-4)
    sids = sorted(s.sid for s in tan_an.stations() if inside(box, s.latitude, s.longitude))
    live.fleet(sids, capabilities=FOLLOWS)
    wait_until(lambda: _applied(live, sids), timeout_s=60, what="applied")
    return box_polygon(box), sids


def test_an_approved_cap_alert_leaves_before_its_speech(live: Live) -> None:
    """A spoken emergency CAP alert, approved, to stations that all take a play before
    its audio: the play is sent at once (``media_follows``) and the spoken audio follows,
    as for an operator's spoken emergency; the audio is filed as the alert's, its
    approval the approver's."""
    polygon, sids = _around(live, 2)
    with live.http() as http:
        headers = _cap_source(http, auto_air=False)
        sent = http.post(
            "/api/v1/alerts/cap",
            content=flood_alert("LA-LU-THEO-SAU", polygon=polygon, risk_level=5),
            headers=headers,
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["outcome"] == "held"
        approved = http.post(f"/api/v1/alerts/{sent.json()['alert_id']}/approve")
        assert approved.status_code == 200, approved.text
        alert = approved.json()
        assert alert["outcome"] == "aired"
        broadcast_id = alert["broadcast_id"]
        cmd_id = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["cmd_id"]
    wait_until(
        lambda: all(r["status"] == "SUCCEEDED" for r in _rows(live, broadcast_id).values()),
        timeout_s=30,
        what="every station played the alert",
    )
    assert set(_rows(live, broadcast_id)) == set(sids)
    commands = live.recorder.select("command")
    plays = [r for r in commands if r.data["cmd_id"] == cmd_id]
    audio = [r for r in commands if r.data["type"] == "media" and r.data["body"]["for"] == cmd_id]
    assert plays
    assert all("media" not in r.data["body"] for r in plays)
    assert all("ready_by" in r.data["body"]["media_follows"] for r in plays)
    assert audio
    assert min(r.at for r in audio) > max(r.at for r in plays)
    assert {r.sid for r in audio} == set(sids)
    with live.factory() as session:
        broadcast = session.get(Broadcast, broadcast_id)
        assert broadcast is not None
        asset = session.get(MediaAsset, broadcast.asset_id)
        assert asset is not None
        assert (asset.category, set(asset.tags)) == ("canh-bao", {"cap", "canh-bao"})
        assert asset.title == "Cảnh báo lũ trên sông Vàm Cỏ Tây"
        assert asset.created_by.startswith("cap:")
        assert asset.approved_by == "admin"
        assert asset.approval_note is not None
        assert asset.approval_note.startswith("CAP: cảnh báo LA-LU-THEO-SAU")
        assert asset.recipe is not None
        assert "Người dân vùng trũng" in asset.recipe["text"]


def test_a_cap_alert_whose_speech_fails_after_the_play_left_waits_again(
    no_speech_engine: None, live: Live
) -> None:
    """The alert's play is out before its speech; when the speech then fails, the source
    is told why (422, in Vietnamese), the broadcast is stopped and the alert waits again
    with the reason, for an approver to air it once the speech works."""
    polygon, sids = _around(live, 1)
    with live.http() as http:
        sent = http.post(
            "/api/v1/alerts/cap",
            content=flood_alert("LA-LU-KHONG-DOC", polygon=polygon, risk_level=5),
            headers=_cap_source(http, auto_air=True),
        )
        assert sent.status_code == 422, sent.text
        assert sent.json()["message_vi"] == "Không có bộ đọc văn bản này"
        alert = http.get("/api/v1/alerts").json()["items"][0]
        made = http.get("/api/v1/broadcasts").json()["items"][0]
    assert alert["outcome"] == "held"
    assert alert["broadcast_id"] is None
    assert alert["reason_vi"] == "Không có bộ đọc văn bản này"
    assert made["status"] == "stopped"
    plays = [r for r in live.recorder.select("command") if r.data["cmd_id"] == made["cmd_id"]]
    assert {r.sid for r in plays} == set(sids)
    assert all("media_follows" in r.data["body"] for r in plays)
    wait_until(
        lambda: all(r["status"] == "STOPPED" for r in _rows(live, made["id"]).values()),
        timeout_s=30,
        what="every station's copy stopped",
    )
