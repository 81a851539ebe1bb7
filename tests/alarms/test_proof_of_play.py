"""Truthful proof of play (issue 12, item 4): a play the station reports while it has a
speaker-line or amplifier-overheat alarm is recorded as not heard, through the real
ingest path (the Ingestor with the worker's alarm hook), and shown apart in the play
log (API, totals, CSV, page)."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.alarms import rules
from broadcaster.alarms import service as alarms
from broadcaster.dispatch import playlog
from broadcaster.dispatch.ingest import Ingestor
from broadcaster.dispatch.models import Play, PlayStatus
from firmware_bridge.client import Inbound
from firmware_bridge.messages import Event, dump_message, parse_message
from firmware_bridge.topics import TopicKind
from kernel.db import utcnow
from stations import live
from stations.models import Station
from tests.api import PASSWORD

SID = "p2-kp-1"


def inbound(kind: TopicKind, payload: bytes) -> Inbound:
    return Inbound(
        sid=SID,
        kind=kind,
        message=parse_message(kind.message_kind, payload),  # type: ignore[arg-type]
        topic=f"loa/v1/st/{SID}/{kind.value}",
        received_at=utcnow(),
    )


def telemetry(seq: int, **data: object) -> Inbound:
    import json

    body = {"seq": seq, "at": utcnow().isoformat(), "uptime_s": 5, "volume": 70, "playing": None}
    return inbound(TopicKind.TELEMETRY, json.dumps(body | data).encode())


def event(event_id: str, type_: str, cmd_id: str, **extra: object) -> Inbound:
    message = Event(event_id=event_id, type=type_, at=utcnow(), cmd_id=cmd_id, **extra)  # type: ignore[arg-type]
    return inbound(TopicKind.EVENT, dump_message(message))


def broadcast_play(factory: sessionmaker[Session], cmd_id: str) -> int:
    now = utcnow()
    with db.session_scope(factory) as session:
        station_id = session.scalars(select(Station.id).where(Station.sid == SID)).one()
        live.record_birth(
            session,
            station_id,
            bdseq=1,
            received_at=now,
            firmware=None,
            model=None,
            capabilities=[],
            held_version=None,
        )
        playlog.record_broadcast(
            session,
            station_ids=[station_id],
            cmd_id=cmd_id,
            broadcast_id=1,
            title=f"Bản tin {cmd_id}",
            kind="voice",
            priority=5,
            start=now - dt.timedelta(seconds=2),
            expected_ms=1000,
            now=now,
        )
        return station_id


def status_of(factory: sessionmaker[Session], cmd_id: str) -> tuple[PlayStatus, str | None]:
    with factory() as session:
        play = session.scalars(select(Play).where(Play.cmd_id == cmd_id)).one()
        return play.status, play.reason


def test_a_play_during_a_speaker_fault_alarm_is_not_heard(
    client: TestClient,
    tan_an: None,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    ingest = Ingestor(
        session_factory,
        after_batch=lambda session, ids: alarms.evaluate(session, utcnow(), ids) and None,
    )
    station_id = broadcast_play(session_factory, "heard")
    broadcast_play(session_factory, "silent")

    # healthy: a finished play is played
    ingest([telemetry(1, speaker_ok=True)])
    ingest(
        [
            event("e1", "play.started", "heard"),
            event("e2", "play.finished", "heard", position_ms=1000),
        ]
    )
    assert status_of(session_factory, "heard") == (PlayStatus.PLAYED, None)

    # the speaker line breaks: the alarm opens, and says plays are not heard
    ingest([telemetry(2, speaker_ok=False)])
    with session_factory() as session:
        alarm = alarms.silencing_alarm(session, station_id, utcnow(), utcnow())
        assert alarm is not None
        assert alarm.cleared_at is None
        alarm_id = alarm.id
    shown = client.get(f"/api/v1/alarms/{alarm_id}", headers=admin).json()
    assert shown["note_vi"] == rules.NOT_HEARD_NOTE_VI

    # the station reports it played: it was not heard
    ingest(
        [
            event("e3", "play.started", "silent"),
            event("e4", "play.finished", "silent", position_ms=1000),
        ]
    )
    assert status_of(session_factory, "silent") == (
        PlayStatus.NOT_HEARD,
        playlog.NOT_HEARD_REASON,
    )

    # the play log: API (filter by the status), daily totals (JSON and CSV), the page
    listed = client.get("/api/v1/playlog?status=not_heard", headers=admin).json()
    assert [p["cmd_id"] for p in listed["items"]] == ["silent"]
    totals = client.get("/api/v1/playlog/totals?by=station", headers=admin).json()
    assert [(t["played"], t["not_heard"]) for t in totals] == [(1, 1)]
    # airtime is what was heard: the silent play's minute is apart
    assert [(t["minutes"], t["not_heard_minutes"]) for t in totals] == [(0.02, 0.02)]
    csv = client.get("/api/v1/playlog/totals?by=station&format=csv", headers=admin).text
    header, row = csv.lstrip("\ufeff").splitlines()[:2]
    assert header.endswith(";Không phát;Không nghe được;Phút không nghe được")
    assert row.endswith(";1;0,02")
    signed_in = client.post(
        "/dang-nhap",
        data={"username": "admin", "password": PASSWORD, "next": "/"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    page = client.get("/nhat-ky?trang_thai=not_heard")
    assert "Không nghe được (loa lỗi)" in page.text
    assert "Bản tin silent" in page.text
    assert "Bản tin heard" not in page.text

    # a warning temperature does not silence the amplifier; the critical one does
    assert not rules.silences(rules.Condition.AMP_TEMPERATURE, rules.Severity.WARNING)
    assert rules.silences(rules.Condition.AMP_TEMPERATURE, rules.Severity.CRITICAL)
