"""Issue 12, alarm rules and lifecycle against the database (no broker): raise once
per station and condition, escalate, acknowledge, clear after the hold (flap damping),
history kept; thresholds per kind and per station with 422-style errors; deliveries to
the subscriptions of the station's area only, and a bounded queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.alarms import queue, service
from broadcaster.alarms.models import (
    Alarm,
    AlarmDelivery,
    AlarmStatus,
    AlarmSubscription,
    Channel,
    DeliveryStatus,
)
from broadcaster.alarms.rules import Condition, Severity
from broadcaster.dispatch import outbox, playlog
from kernel.errors import ConflictError, InvalidInput
from stations import live, tan_an
from stations.models import ConnectionCause, Station, StationConnection, StationKind
from tests.alarms.helpers import birth

T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
WARD_2 = "p2-kp-1"  # phường 2
COMMUNE = "lbn-cau-tre"  # xã Lợi Bình Nhơn


@pytest.fixture
def db(session: Session) -> Iterator[Session]:
    tan_an.load(session)
    session.commit()
    return session


def station(session: Session, sid: str) -> Station:
    found = session.scalar(select(Station).where(Station.sid == sid))
    assert found is not None
    return found


def online(session: Session, sid: str, at: dt.datetime = T0, bdseq: int = 1) -> int:
    station_id = station(session, sid).id
    birth(session, station_id, at, bdseq)
    return station_id


def telemetry(session: Session, station_id: int, at: dt.datetime, **data: Any) -> None:
    base = {"seq": 1, "at": at.isoformat(), "uptime_s": 1, "volume": 70, "playing": None}
    live.record_telemetry(session, [live.TelemetryRow(station_id, at, at, 1, base | data)])


def subscribe(
    session: Session, target: str, area_id: int | None, severity: Severity
) -> AlarmSubscription:
    channel = Channel.WEBHOOK if target.startswith("http") else Channel.EMAIL
    return service.create_subscription(
        session, name=target, channel=channel, target=target, area_id=area_id, min_severity=severity
    )


def open_alarms(session: Session, station_id: int) -> list[Alarm]:
    return list(
        session.scalars(
            select(Alarm).where(Alarm.station_id == station_id, Alarm.open_key.is_not(None))
        )
    )


def test_temperature_raises_once_escalates_and_clears_after_the_hold(db: Session) -> None:
    sid = online(db, WARD_2)
    service.set_station_thresholds(db, station(db, WARD_2), {"clear_hold_s": 60})
    telemetry(db, sid, T0, amp_temp_c=70.0)  # hamlet: warning 68, critical 75
    service.evaluate(db, T0, {sid})
    service.evaluate(db, T0 + dt.timedelta(seconds=5), {sid})  # no duplicate
    (alarm,) = open_alarms(db, sid)
    assert (alarm.condition, alarm.severity) == (Condition.AMP_TEMPERATURE, Severity.WARNING)

    telemetry(db, sid, T0 + dt.timedelta(seconds=60), amp_temp_c=80.0)
    result = service.evaluate(db, T0 + dt.timedelta(seconds=60), {sid})
    assert result.escalated == 1
    (same,) = open_alarms(db, sid)
    assert same.id == alarm.id
    assert same.severity is Severity.CRITICAL

    service.acknowledge(db, same, by="ky-thuat", note="đã cử người", now=T0)
    assert same.status is AlarmStatus.ACKNOWLEDGED
    assert same.acknowledged_by == "ky-thuat"

    # the condition goes away, comes back within the hold: the same alarm, damped
    telemetry(db, sid, T0 + dt.timedelta(seconds=120), amp_temp_c=40.0)
    service.evaluate(db, T0 + dt.timedelta(seconds=120), {sid})
    assert same.clearing_since is not None
    assert same.open_key is not None
    telemetry(db, sid, T0 + dt.timedelta(seconds=150), amp_temp_c=79.0)
    service.evaluate(db, T0 + dt.timedelta(seconds=150), {sid})
    assert same.clearing_since is None
    assert same.raise_count == 2
    # gone for longer than the hold: cleared, kept as history
    telemetry(db, sid, T0 + dt.timedelta(seconds=200), amp_temp_c=40.0)
    service.evaluate(db, T0 + dt.timedelta(seconds=200), {sid})
    result = service.evaluate(db, T0 + dt.timedelta(seconds=260))
    assert result.cleared == 1
    assert same.status is AlarmStatus.CLEARED
    assert same.open_key is None
    with pytest.raises(ConflictError):
        service.acknowledge(db, same, by="x", note=None, now=T0)

    # a new occurrence is a new alarm
    telemetry(db, sid, T0 + dt.timedelta(seconds=300), amp_temp_c=90.0)
    service.evaluate(db, T0 + dt.timedelta(seconds=300), {sid})
    (fresh,) = open_alarms(db, sid)
    assert fresh.id != same.id
    history, total = service.list_alarms(
        db, service.AlarmFilter(sid=WARD_2), scope=None, limit=10, offset=0
    )
    assert total == 2
    assert history[0].id == fresh.id


def test_station_faults_and_power(db: Session) -> None:
    sid = online(db, WARD_2)
    telemetry(db, sid, T0, speaker_ok=False, on_battery=True, supply_v=11.5, storage_free_mb=50.0)
    service.evaluate(db, T0, {sid})
    found = {a.condition: a.severity for a in open_alarms(db, sid)}
    assert found == {
        Condition.SPEAKER_LINE: Severity.CRITICAL,
        Condition.MAINS_LOST: Severity.WARNING,
        Condition.BATTERY_LOW: Severity.CRITICAL,
        Condition.STORAGE_LOW: Severity.WARNING,
    }
    # a fault event alone raises too (amp_overheat reported by the station)
    live.record_fault(db, sid, "amp_overheat", raised=True)
    service.evaluate(db, T0, {sid})
    assert any(a.condition is Condition.AMP_TEMPERATURE for a in open_alarms(db, sid))


def test_offline_longer_than_the_threshold(db: Session) -> None:
    sid = online(db, COMMUNE)
    service.set_station_thresholds(db, station(db, COMMUNE), {"offline_after_s": 60})
    live.record_death(db, sid, bdseq=1, received_at=T0)
    assert service.evaluate(db, T0 + dt.timedelta(seconds=59)).raised == 0
    assert service.evaluate(db, T0 + dt.timedelta(seconds=60)).raised == 1
    (alarm,) = open_alarms(db, sid)
    assert alarm.condition is Condition.STATION_OFFLINE
    # stale telemetry while offline neither raises nor clears the others
    online(db, COMMUNE, T0 + dt.timedelta(seconds=90))
    service.set_station_thresholds(db, station(db, COMMUNE), {"clear_hold_s": 0})
    service.evaluate(db, T0 + dt.timedelta(seconds=90), {sid})
    assert open_alarms(db, sid) == []
    assert alarm.status is AlarmStatus.CLEARED


def test_thresholds_kind_station_and_ranges(db: Session) -> None:
    smart = db.scalar(select(Station).where(Station.kind == StationKind.SMART))
    assert smart is not None
    service.set_kind_thresholds(db, StationKind.SMART, {"amp_temp_warning_c": 60})
    service.set_station_thresholds(db, smart, {"amp_temp_warning_c": 62})
    effective = service.station_thresholds(db, smart)["effective"]
    assert effective["amp_temp_warning_c"] == 62
    assert service.kind_thresholds(db)["smart"]["effective"]["amp_temp_warning_c"] == 60
    service.set_station_thresholds(db, smart, {"amp_temp_warning_c": None})
    assert service.station_thresholds(db, smart)["effective"]["amp_temp_warning_c"] == 60

    with pytest.raises(InvalidInput) as bad:
        service.set_kind_thresholds(db, StationKind.HAMLET, {"amp_temp_warning_c": 500})
    assert bad.value.message_vi is not None
    assert "khoảng" in bad.value.message_vi
    with pytest.raises(InvalidInput) as order:
        service.set_station_thresholds(db, smart, {"amp_temp_warning_c": 90})
    assert order.value.message_vi == "Nhiệt độ cảnh báo phải thấp hơn nhiệt độ nghiêm trọng"
    with pytest.raises(InvalidInput):
        service.set_station_thresholds(db, smart, {"nope": 1})


def test_deliveries_follow_area_and_severity_and_the_queue_is_bounded(db: Session) -> None:
    ward_2 = station(db, WARD_2).area.parent_id
    commune = station(db, COMMUNE).area.parent_id
    to_ward = subscribe(db, "kt2@example.vn", ward_2, Severity.WARNING)
    subscribe(db, "ktx@example.vn", commune, Severity.WARNING)
    critical_only = subscribe(db, "http://127.0.0.1:9/hook", None, Severity.CRITICAL)
    assert critical_only.secret
    sid = online(db, WARD_2)
    telemetry(db, sid, T0, storage_free_mb=10.0)  # a warning
    service.evaluate(db, T0, {sid})
    rows = list(db.scalars(select(AlarmDelivery)))
    assert [(r.subscription_id, r.event) for r in rows] == [(to_ward.id, "raised")]
    assert rows[0].snapshot["title_vi"] == "Bộ nhớ trạm sắp đầy"

    telemetry(db, sid, T0, speaker_ok=False)  # critical: both the ward and the duty desk
    service.evaluate(db, T0, {sid}, max_pending=2)
    statuses = sorted((r.subscription_id, r.status) for r in db.scalars(select(AlarmDelivery)))
    assert statuses == sorted(
        [
            (to_ward.id, DeliveryStatus.PENDING),
            (to_ward.id, DeliveryStatus.PENDING),
            (critical_only.id, DeliveryStatus.DROPPED),
        ]
    )
    due = queue.due(db, T0 + dt.timedelta(seconds=1), settle_s=0)
    assert [(o.subscription_id, len(o.events)) for o in due] == [(to_ward.id, 2)]

    # read while an earlier send to the same target was still recording its outcome:
    # checked again before the send, what that send settled (or put off) does not go twice
    (stale,) = due
    later = T0 + dt.timedelta(seconds=2)
    assert queue.still_pending(db, stale, later) == stale
    queue.record_outcome(
        db, stale.delivery_ids[:1], error=None, now=later, max_attempts=3, backoff_s=30
    )
    left = queue.still_pending(db, stale, later)
    assert left is not None
    assert left.delivery_ids == stale.delivery_ids[1:]
    assert left.events == stale.events[1:]
    queue.record_outcome(
        db, stale.delivery_ids[1:], error="timed out", now=later, max_attempts=3, backoff_s=30
    )
    assert queue.still_pending(db, stale, later) is None  # the other one waits its backoff
    assert queue.still_pending(db, stale, later + dt.timedelta(seconds=31)) is not None


def test_alarms_fired_over_a_few_seconds_leave_in_one_digest(db: Session) -> None:
    """A subscription's deliveries wait until its oldest has settled, then all of its
    pending ones leave together (the reports of a commune-wide power cut arrive over
    seconds: a notifier round between two of them must not split the digest)."""
    ward_2 = station(db, WARD_2).area.parent_id
    to_ward = subscribe(db, "kt2@example.vn", ward_2, Severity.WARNING)
    sid = online(db, WARD_2)
    telemetry(db, sid, T0, storage_free_mb=10.0)
    service.evaluate(db, T0, {sid})
    later = T0 + dt.timedelta(seconds=3)
    telemetry(db, sid, later, speaker_ok=False)
    service.evaluate(db, later, {sid})
    assert queue.due(db, T0 + dt.timedelta(seconds=4), settle_s=5) == []
    (out,) = queue.due(db, T0 + dt.timedelta(seconds=5), settle_s=5)
    assert out.subscription_id == to_ward.id
    assert [e["title_vi"] for e in out.events] == ["Bộ nhớ trạm sắp đầy", "Lỗi đường dây loa"]


def test_clock_plan_and_media(db: Session) -> None:
    sid = online(db, WARD_2)  # hamlet: clock 5 s, plan and media 30 min
    telemetry(db, sid, T0, clock_offset_ms=-7200.0)
    state = live.state_of(db, sid)
    state.desired_published_version, state.desired_at, state.applied_version = 3, T0, 2
    service.evaluate(db, T0 + dt.timedelta(minutes=29), {sid})
    assert [a.condition for a in open_alarms(db, sid)] == [Condition.CLOCK_OFFSET]
    service.evaluate(db, T0 + dt.timedelta(minutes=30), {sid})
    behind = {a.condition: a for a in open_alarms(db, sid)}[Condition.PLAN_BEHIND]
    assert behind.detail == "đang ở phiên bản 2, cần 3"

    # applied, but two files missing: the plan alarm clears (hold 0), media is raised
    service.set_station_thresholds(db, station(db, WARD_2), {"clear_hold_s": 0})
    state.applied_version, state.missing = 3, ["a" * 64, "b" * 64]
    service.evaluate(db, T0 + dt.timedelta(minutes=31), {sid})
    conditions = {a.condition for a in open_alarms(db, sid)}
    assert conditions == {Condition.CLOCK_OFFSET, Condition.MEDIA_MISSING}
    assert behind.status is AlarmStatus.CLEARED


def test_a_clock_set_back_clears_its_alarm(db: Session) -> None:
    """The station's clock ran a minute fast; once set back its telemetry is dated
    earlier than the last one, and is still the latest (received last)."""
    sid = online(db, WARD_2)
    service.set_station_thresholds(db, station(db, WARD_2), {"clear_hold_s": 0})
    fast = T0 + dt.timedelta(seconds=60)
    base = {"seq": 1, "uptime_s": 1, "volume": 70, "playing": None}
    live.record_telemetry(
        db,
        [
            live.TelemetryRow(
                sid, fast, T0, 1, base | {"at": fast.isoformat(), "clock_offset_ms": 60_000.0}
            )
        ],
    )
    service.evaluate(db, T0, {sid})
    assert [a.condition for a in open_alarms(db, sid)] == [Condition.CLOCK_OFFSET]
    later = T0 + dt.timedelta(seconds=5)
    live.record_telemetry(
        db,
        [
            live.TelemetryRow(
                sid, later, later, 2, base | {"at": later.isoformat(), "clock_offset_ms": 3.0}
            )
        ],
    )
    assert live.state_of(db, sid).telemetry["clock_offset_ms"] == 3.0
    service.evaluate(db, later, {sid})
    assert open_alarms(db, sid) == []


def test_the_periodic_sweep_takes_only_stations_time_can_change(db: Session) -> None:
    quiet, hot, gone = online(db, WARD_2), online(db, COMMUNE), online(db, "p3-kp-1")
    telemetry(db, hot, T0, speaker_ok=False)
    service.evaluate(db, T0, {hot})
    live.record_death(db, gone, bdseq=1, received_at=T0)
    state = live.state_of(db, quiet)
    state.desired_published_version, state.applied_version, state.missing = 2, 2, []
    db.flush()
    assert service.evaluate(db, T0, due_only=True).stations == 2  # hot (open alarm), gone
    state.missing = ["c" * 64]
    db.flush()
    assert service.evaluate(db, T0, due_only=True).stations == 3


def test_connection_history_and_link_flapping(db: Session) -> None:
    for n in range(1, 9):  # a hamlet station: more than 6 reconnects an hour
        at = T0 + dt.timedelta(minutes=5 * n)
        sid = online(db, COMMUNE, at, bdseq=n)
        if n % 2:
            live.record_death(db, sid, bdseq=n, received_at=at + dt.timedelta(seconds=30))
    history = list(db.scalars(select(StationConnection).where(StationConnection.station_id == sid)))
    assert [c.cause for c in history[:3]] == [
        ConnectionCause.WILL,
        ConnectionCause.LINK,
        ConnectionCause.WILL,
    ]
    now = T0 + dt.timedelta(minutes=41)
    service.evaluate(db, now, {sid})
    (alarm,) = open_alarms(db, sid)
    assert (alarm.condition, alarm.detail) == (
        Condition.LINK_FLAPPING,
        "kết nối lại 8 lần trong 1 giờ",
    )
    # the broker is lost and comes back: the retained birth reopens the same interval
    live.mark_all_offline(db, at=now)
    online(db, COMMUNE, now, bdseq=8)
    assert history[-1].offline_at is None
    assert live.reconnects_since(db, T0, [sid]) == {sid: 8}


def test_missed_plays_and_unacknowledged_commands(db: Session) -> None:
    sid = online(db, WARD_2)
    service.set_station_thresholds(db, station(db, WARD_2), {"clear_hold_s": 0})
    facts = service.DispatchFacts(plays_missed={sid: 2}, unacknowledged={sid: 1})
    service.evaluate(db, T0, due_only=True, dispatch=facts)
    found = {a.condition: a.detail for a in open_alarms(db, sid)}
    assert found == {
        Condition.PLAYS_MISSED: "2 mục lịch không phát trong 1 giờ qua",
        Condition.COMMANDS_UNACKED: "1 lệnh không được xác nhận trong 1 giờ qua",
    }
    service.evaluate(db, T0, {sid})  # an ingested batch does not judge them
    assert len(open_alarms(db, sid)) == 2
    # what the worker asks dispatch (valid SQL on both databases; nothing here yet)
    since = T0 - dt.timedelta(hours=1)
    quiet = service.DispatchFacts(
        plays_missed=playlog.missed_by_station(db, since),
        unacknowledged=outbox.unacknowledged_by_station(db, since),
    )
    assert quiet.station_ids == set()
    service.evaluate(db, T0, due_only=True, dispatch=quiet)
    assert open_alarms(db, sid) == []


def test_no_offline_alarm_while_the_server_itself_lost_the_broker(db: Session) -> None:
    alive, dead = online(db, WARD_2), online(db, COMMUNE)
    for sid in (WARD_2, COMMUNE):
        service.set_station_thresholds(db, station(db, sid), {"offline_after_s": 60})
    live.mark_all_offline(db, at=T0)
    later = T0 + dt.timedelta(minutes=10)
    assert service.evaluate(db, later).raised == 0  # nothing known of the stations
    # the broker is back: one station's retained will says it really died
    live.record_death(db, dead, bdseq=1, received_at=later)
    service.evaluate(db, later)
    assert [a.condition for a in open_alarms(db, dead)] == [Condition.STATION_OFFLINE]
    assert open_alarms(db, alive) == []
