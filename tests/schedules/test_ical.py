"""iCalendar export: parsed back with `icalendar`, it matches the planned items."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar

from kernel.tiers import Tier
from schedules.builder import build_day, build_days
from schedules.ical import KIND_LABELS_VI, ical_priority, render_calendar
from tests.schedules.factories import VN, daily, file_item, gap_item, programme, relay_item, rule

DAY = date(2026, 11, 26)
STAMP = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_station_calendar_round_trip() -> None:
    progs = [
        programme(1, relay_item(30, "Tiếp sóng VOV")),
        programme(2, file_item(10, "Bản tin phường"), gap_item(1), file_item(5, "Nhạc")),
        programme(3, file_item(5, "Cảnh báo bão")),
    ]
    rules = [
        rule(1, 1, daily("05:00"), priority=Tier.PRIORITY.priority),
        rule(2, 2, daily("05:30", "23:55"), priority=Tier.NORMAL.priority),
        rule(3, 3, daily("12:00"), priority=Tier.EMERGENCY.priority),
    ]
    items = build_day(rules, progs, DAY, VN).stations[1]
    data = render_calendar(items, name="Loa phường 1", generated_at=STAMP)
    assert data.startswith(b"BEGIN:VCALENDAR\r\n")

    calendar = Calendar.from_ical(data)
    assert str(calendar["X-WR-CALNAME"]) == "Loa phường 1"
    assert str(calendar["VERSION"]) == "2.0"
    events = list(calendar.walk("VEVENT"))
    assert len(events) == len(items) == 6
    for event, item in zip(events, items, strict=True):
        assert str(event["UID"]) == f"{item.item_id}@broadcaster"
        assert event.decoded("DTSTART") == item.start_at
        assert event.decoded("DTEND") == item.end_at
        assert event.decoded("DTSTART").tzinfo is not None
        assert event.decoded("DTSTAMP") == STAMP
        assert str(event["SUMMARY"]) == item.title
        assert int(event["PRIORITY"]) == ical_priority(item.priority)
        assert int(event["X-BROADCASTER-PRIORITY"]) == item.priority
        categories = [str(c) for c in event["CATEGORIES"].cats]
        assert KIND_LABELS_VI[item.kind] in categories  # Vietnamese, not "file"/"relay"
    # Crossing midnight: the real end, in UTC.
    assert events[-2].decoded("DTEND") == datetime(2026, 11, 27, 0, 5, tzinfo=VN)
    assert events[-1].decoded("DTSTART") == datetime(2026, 11, 27, 0, 6, tzinfo=VN)
    assert b"DTSTART:20261125T220000Z" in data
    emergency = next(e for e in events if "Cảnh báo" in str(e["SUMMARY"]))
    assert [str(c) for c in emergency["CATEGORIES"].cats] == ["Khẩn cấp", "Tệp âm thanh"]
    assert re.search(
        r"Lượt của lịch bắt đầu lúc \d\d:\d\d ngày \d\d/\d\d/2026", str(emergency["DESCRIPTION"])
    )
    assert int(emergency["PRIORITY"]) == 1


def test_area_calendar_merges_stations_without_reusing_uids() -> None:
    progs = [programme(1, relay_item(30)), programme(2, file_item(10))]
    rules = [
        rule(1, 1, daily("05:00"), stations=[1, 2, 3], priority=Tier.PRIORITY.priority),
        rule(2, 2, daily("05:10"), stations=[1, 2, 3], tolerance_s=3600),
        rule(3, 2, daily("05:30"), stations=[3], priority=Tier.EMERGENCY.priority),
    ]
    plans = build_days(rules, progs, [DAY, DAY + timedelta(days=1)], VN)
    items = [item for plan in plans for station in plan.stations.values() for item in station]
    data = render_calendar(items, name="Phường 1", generated_at=STAMP, description="Khu vực")
    events = list(Calendar.from_ical(data).walk("VEVENT"))
    uids = [str(e["UID"]) for e in events]
    assert len(uids) == len(set(uids))
    # Per day: the relay, rule 2 at 05:30 (stations 1-2) and at 05:40 (station 3, after
    # the emergency), and the emergency itself.
    assert len(events) == 2 * 4
    assert sum(uid.startswith("r2-20261126T0510-0.") for uid in uids) == 2
    assert "r1-20261126T0500-0@broadcaster" in uids


def test_empty_calendar_is_valid() -> None:
    calendar = Calendar.from_ical(render_calendar([], name="Trống", generated_at=STAMP))
    assert list(calendar.walk("VEVENT")) == []
    assert str(calendar["PRODID"]).startswith("-//broadcaster")


def test_priority_mapping() -> None:
    assert [ical_priority(p) for p in (0, 3, 5, 7, 9)] == [9, 7, 5, 3, 1]


def test_descriptions_are_vietnamese() -> None:
    progs = [programme(1, relay_item(30, "Tiếp sóng VOV")), programme(2, file_item(5, "Nhạc"))]
    rules = [rule(1, 1, daily("05:00")), rule(2, 2, daily("06:00"))]
    items = build_day(rules, progs, DAY, VN).stations[1]
    events = list(
        Calendar.from_ical(render_calendar(items, name="x", generated_at=STAMP)).walk("VEVENT")
    )
    assert events
    for event in events:
        text = str(event["DESCRIPTION"])
        assert "Lịch phát số" in text
        assert "Mức: " in text
        for english in ("Rule ", "Priority ", "Occurrence ", "Media ", "Relay "):
            assert english not in text
