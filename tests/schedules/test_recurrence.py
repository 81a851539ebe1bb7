"""Recurrence forms, validity windows, skips, time zones and validation errors."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kernel.errors import InvalidInput
from schedules.calendars import solar_to_lunar
from schedules.exceptions import InvalidRecurrence
from schedules.recurrence import Recurrence, occurrences, parse_recurrence
from tests.schedules.factories import VN, daily, when


def _between(recurrence: Recurrence, first: date, last: date, tz: ZoneInfo = VN) -> list[datetime]:
    """Occurrences from local midnight of ``first`` up to the end of ``last``."""
    start = datetime.combine(first, time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=tz)
    return occurrences(recurrence, start, end, tz)


def _local(moments: list[datetime]) -> list[str]:
    return [m.astimezone(VN).strftime("%Y-%m-%d %H:%M") for m in moments]


def test_once() -> None:
    rec = when({"kind": "once", "at": "2026-11-26T19:30"})
    found = _between(rec, date(2026, 11, 1), date(2026, 11, 30))
    assert found == [datetime(2026, 11, 26, 19, 30, tzinfo=VN)]
    assert found[0].tzinfo == VN
    assert _between(rec, date(2026, 11, 27), date(2026, 11, 30)) == []


def test_once_with_an_offset_is_that_instant() -> None:
    rec = when({"kind": "once", "at": "2026-11-26T12:30:00Z"})
    assert _local(_between(rec, date(2026, 11, 26), date(2026, 11, 26))) == ["2026-11-26 19:30"]


def test_daily_several_times_sorted_and_half_open() -> None:
    rec = daily("17:00", "05:00", "11:30")
    found = _between(rec, date(2026, 11, 26), date(2026, 11, 27))
    assert _local(found) == [
        "2026-11-26 05:00",
        "2026-11-26 11:30",
        "2026-11-26 17:00",
        "2026-11-27 05:00",
        "2026-11-27 11:30",
        "2026-11-27 17:00",
    ]
    # [start, end): an occurrence exactly at `end` is left out, one at `start` kept.
    at_five = datetime(2026, 11, 26, 5, 0, tzinfo=VN)
    assert occurrences(rec, at_five, at_five + timedelta(hours=6, minutes=31), VN) == [
        at_five,
        datetime(2026, 11, 26, 11, 30, tzinfo=VN),
    ]
    assert occurrences(rec, at_five, at_five + timedelta(hours=6, minutes=30), VN) == [at_five]


def test_weekly() -> None:
    rec = when({"kind": "weekly", "weekdays": ["FR", "MO"], "times": ["06:00"]})
    found = _between(rec, date(2026, 11, 23), date(2026, 12, 6))
    assert _local(found) == [
        "2026-11-23 06:00",
        "2026-11-27 06:00",
        "2026-11-30 06:00",
        "2026-12-04 06:00",
    ]
    assert {m.weekday() for m in found} == {0, 4}


def test_monthly_day_31_skips_short_months() -> None:
    rec = when({"kind": "monthly", "days": [31], "times": ["07:00"]})
    found = _between(rec, date(2026, 1, 1), date(2026, 12, 31))
    assert [m.month for m in found] == [1, 3, 5, 7, 8, 10, 12]


def test_monthly_last_day() -> None:
    rec = when({"kind": "monthly", "days": [-1], "times": ["07:00"]})
    found = _between(rec, date(2028, 1, 1), date(2028, 6, 30))
    assert [m.date() for m in found] == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
        date(2028, 5, 31),
        date(2028, 6, 30),
    ]


@pytest.mark.parametrize("bad", [0, 32, -2])
def test_monthly_day_out_of_range(bad: int) -> None:
    with pytest.raises(InvalidRecurrence) as info:
        parse_recurrence({"when": {"kind": "monthly", "days": [bad], "times": ["07:00"]}})
    assert info.value.loc == ("when", "days")


def test_every_n_days_counts_from_the_anchor() -> None:
    rec = when({"kind": "every_n_days", "n": 3, "anchor": "2026-11-20", "times": ["08:00"]})
    found = _between(rec, date(2026, 11, 15), date(2026, 12, 1))
    assert [m.day for m in found] == [20, 23, 26, 29]
    # Far from the anchor, the phase is kept.
    later = _between(rec, date(2027, 11, 20), date(2027, 11, 25))
    assert all((m.date() - date(2026, 11, 20)).days % 3 == 0 for m in later)
    assert len(later) == 2


def test_every_n_days_rejects_zero() -> None:
    with pytest.raises(InvalidRecurrence) as info:
        parse_recurrence(
            {"when": {"kind": "every_n_days", "n": 0, "anchor": "2026-01-01", "times": ["05:00"]}}
        )
    assert info.value.loc == ("when", "n")


def test_rrule_with_byhour() -> None:
    rec = when({"kind": "rrule", "rule": "RRULE:FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=6,18;BYMINUTE=15"})
    found = _between(rec, date(2026, 11, 23), date(2026, 11, 29))
    assert _local(found) == [
        "2026-11-28 06:15",
        "2026-11-28 18:15",
        "2026-11-29 06:15",
        "2026-11-29 18:15",
    ]


def test_rrule_text_is_normalised() -> None:
    rec = when({"kind": "rrule", "rule": " rrule:freq=daily;byhour=5; "})
    assert rec.when.rule == "FREQ=DAILY;BYHOUR=5"  # type: ignore[union-attr]
    assert len(_between(rec, date(2026, 11, 26), date(2026, 11, 27))) == 2


def test_rrule_with_times_list_and_anchor() -> None:
    rec = when(
        {
            "kind": "rrule",
            "rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
            "times": ["05:00", "17:30"],
            "anchor": "2026-11-02",
        }
    )
    found = _between(rec, date(2026, 11, 1), date(2026, 11, 30))
    assert _local(found) == [
        "2026-11-02 05:00",
        "2026-11-02 17:30",
        "2026-11-16 05:00",
        "2026-11-16 17:30",
        "2026-11-30 05:00",
        "2026-11-30 17:30",
    ]


def test_rrule_first_sunday_of_the_month_and_until() -> None:
    rec = when(
        {
            "kind": "rrule",
            "rule": "FREQ=MONTHLY;BYDAY=1SU;BYHOUR=9;BYMINUTE=0;UNTIL=20270301T000000Z",
        }
    )
    found = _between(rec, date(2026, 11, 1), date(2027, 6, 30))
    assert [m.date() for m in found] == [
        date(2026, 11, 1),
        date(2026, 12, 6),
        date(2027, 1, 3),
        date(2027, 2, 7),
    ]


def test_rrule_count_uses_valid_from_as_dtstart() -> None:
    rec = when(
        {"kind": "rrule", "rule": "FREQ=DAILY;COUNT=3;BYHOUR=5"},
        valid_from="2026-11-25",
    )
    found = _between(rec, date(2026, 11, 1), date(2026, 12, 31))
    assert [m.day for m in found] == [25, 26, 27]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ("FREQ=SOMETIMES;BYHOUR=5", ("when", "rule")),
        ("BYHOUR=5", ("when", "rule")),
        ("FREQ=DAILY;BYHOUR=25", ("when", "rule")),
        ("FREQ=DAILY;BYHOUR", ("when", "rule")),
        ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", ("when", "rule")),
        ("FREQ=DAILY;COUNT=2;UNTIL=20270101;BYHOUR=5", ("when", "rule")),
        ("FREQ=SECONDLY", ("when", "rule")),
        ("FREQ=DAILY", ("when", "times")),
        ("FREQ=DAILY;INTERVAL=2;BYHOUR=5", ("when", "anchor")),
        ("FREQ=MONTHLY;BYHOUR=5", ("when", "anchor")),
    ],
)
def test_invalid_rrule_is_invalid_input(rule: str, field: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_recurrence({"when": {"kind": "rrule", "rule": rule}})
    assert isinstance(info.value, InvalidRecurrence)
    assert info.value.loc == field
    assert info.value.message_vi


def test_rrule_times_in_two_places_is_refused() -> None:
    with pytest.raises(InvalidRecurrence) as info:
        parse_recurrence(
            {"when": {"kind": "rrule", "rule": "FREQ=DAILY;BYHOUR=5", "times": ["06:00"]}}
        )
    assert info.value.loc == ("when", "times")


def test_lunar_first_and_fifteenth() -> None:
    rec = when({"kind": "lunar", "days": [1, 15], "times": ["06:00"]})
    found = _between(rec, date(2026, 1, 1), date(2026, 12, 31))
    lunar_days = [solar_to_lunar(m.date()) for m in found]
    assert {lunar.day for lunar in lunar_days} == {1, 15}
    assert date(2026, 2, 17) in {m.date() for m in found}  # Tết = 1/1
    assert date(2026, 3, 3) in {m.date() for m in found}  # Rằm tháng Giêng
    assert 23 <= len(found) <= 26
    # Every first and fifteenth is there: consecutive matches are 13..17 days apart.
    gaps = {(b.date() - a.date()).days for a, b in itertools.pairwise(found)}
    assert gaps <= {13, 14, 15, 16}


def test_lunar_months_and_leap_months() -> None:
    mid_autumn = when({"kind": "lunar", "days": [15], "months": [8], "times": ["19:00"]})
    assert [m.date() for m in _between(mid_autumn, date(2026, 1, 1), date(2026, 12, 31))] == [
        date(2026, 9, 25)
    ]
    # 2025 has a leap 6th month: with leap months, lunar 6/1 happens twice.
    with_leap = when({"kind": "lunar", "days": [1], "months": [6], "times": ["06:00"]})
    without = when(
        {
            "kind": "lunar",
            "days": [1],
            "months": [6],
            "include_leap_months": False,
            "times": ["06:00"],
        }
    )
    year = (date(2025, 1, 1), date(2025, 12, 31))
    assert [m.date() for m in _between(with_leap, *year)] == [date(2025, 6, 25), date(2025, 7, 25)]
    assert [m.date() for m in _between(without, *year)] == [date(2025, 6, 25)]


def test_lunar_day_30_only_in_full_months() -> None:
    rec = when({"kind": "lunar", "days": [30], "times": ["06:00"]})
    found = _between(rec, date(2026, 1, 1), date(2026, 12, 31))
    assert all(solar_to_lunar(m.date()).day == 30 for m in found)
    assert 4 <= len(found) <= 9


def test_skip_holidays_skips_tet() -> None:
    rec = daily("05:00", skip_holidays=True)
    days = {m.date() for m in _between(rec, date(2026, 2, 10), date(2026, 2, 25))}
    for tet_day in (16, 17, 18, 19, 20):
        assert date(2026, 2, tet_day) not in days
    assert date(2026, 2, 15) in days
    assert date(2026, 2, 21) in days
    plain = daily("05:00")
    assert date(2026, 2, 17) in {
        m.date() for m in _between(plain, date(2026, 2, 17), date(2026, 2, 17))
    }


def test_skip_dates() -> None:
    rec = daily("05:00", "17:00", skip_dates=["2026-11-27", "2026-11-29"])
    found = _between(rec, date(2026, 11, 26), date(2026, 11, 30))
    assert sorted({m.day for m in found}) == [26, 28, 30]


def test_validity_window_dates_are_inclusive() -> None:
    rec = daily("05:00", "23:00", valid_from="2026-11-27", valid_until="2026-11-28")
    found = _between(rec, date(2026, 11, 20), date(2026, 12, 5))
    assert _local(found) == [
        "2026-11-27 05:00",
        "2026-11-27 23:00",
        "2026-11-28 05:00",
        "2026-11-28 23:00",
    ]


def test_validity_window_datetimes() -> None:
    rec = daily("05:00", "17:00", valid_from="2026-11-27T06:00", valid_until="2026-11-28T05:00")
    found = _between(rec, date(2026, 11, 20), date(2026, 12, 5))
    assert _local(found) == ["2026-11-27 17:00", "2026-11-28 05:00"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-12-01", "2026-11-30"),
        ("2026-12-01T05:00", "2026-12-01T04:59"),
        ("2026-12-01T05:00+07:00", "2026-11-30T21:00Z"),
        ("2026-12-02", "2026-12-01T23:00"),
    ],
)
def test_window_ending_before_it_starts_is_invalid(start: str, end: str) -> None:
    data: dict[str, Any] = {
        "when": {"kind": "daily", "times": ["05:00"]},
        "valid_from": start,
        "valid_until": end,
    }
    with pytest.raises(InvalidInput) as info:
        parse_recurrence(data)
    assert info.value.loc == ("valid_until",)
    assert "valid_until" in info.value.message
    # The model itself answers with pydantic's error (FastAPI turns it into a 422).
    with pytest.raises(ValidationError):
        Recurrence.model_validate(data)


def test_single_day_window_is_valid() -> None:
    rec = daily("05:00", valid_from="2026-12-01", valid_until="2026-12-01")
    assert len(_between(rec, date(2026, 11, 1), date(2026, 12, 31))) == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"when": {"kind": "daily", "times": []}}, ("when", "times")),
        ({"when": {"kind": "daily", "times": ["25:00"]}}, ("when", "times", 0)),
        ({"when": {"kind": "weekly", "weekdays": [], "times": ["05:00"]}}, ("when", "weekdays")),
        (
            {"when": {"kind": "weekly", "weekdays": ["XX"], "times": ["05:00"]}},
            ("when", "weekdays", 0),
        ),
        ({"when": {"kind": "lunar", "days": [31], "times": ["05:00"]}}, ("when", "days")),
        (
            {"when": {"kind": "lunar", "days": [1], "months": [13], "times": ["05:00"]}},
            ("when", "months"),
        ),
        ({"when": {"kind": "yearly"}}, ("when",)),
        ({"when": {"kind": "daily", "times": ["05:00"]}, "extra": 1}, ("extra",)),
    ],
)
def test_validation_errors_name_the_field(data: dict[str, Any], field: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidRecurrence) as info:
        parse_recurrence(data)
    assert info.value.loc == field


def test_round_trips_through_json() -> None:
    rec = when(
        {"kind": "lunar", "days": [15, 1], "months": [1], "times": ["19:00", "06:00"]},
        valid_from="2026-01-01",
        skip_dates=["2026-03-03"],
        skip_holidays=True,
    )
    again = parse_recurrence(rec.model_dump(mode="json"))
    assert again == rec
    assert rec.when.model_dump()["days"] == (1, 15)  # type: ignore[union-attr]
    assert hash(again) == hash(rec)


def test_any_zone_and_dst() -> None:
    new_york = ZoneInfo("America/New_York")
    rec = daily("02:30", "12:00")
    found = occurrences(rec, datetime(2026, 3, 7), datetime(2026, 3, 10), new_york)
    # 02:30 does not exist on 8 March 2026 (DST starts): it moves forward by the gap.
    assert [m.strftime("%d %H:%M %Z") for m in found] == [
        "07 02:30 EST",
        "07 12:00 EST",
        "08 03:30 EDT",
        "08 12:00 EDT",
        "09 02:30 EDT",
        "09 12:00 EDT",
    ]
    # Ambiguous 01:30 on 1 November 2026: once, at the first instant (EDT).
    fall = occurrences(daily("01:30"), datetime(2026, 11, 1), datetime(2026, 11, 2), new_york)
    assert [m.strftime("%H:%M %Z") for m in fall] == ["01:30 EDT"]
    # Same local rule, two zones, two instants.
    london = occurrences(rec, datetime(2026, 6, 1), datetime(2026, 6, 2), ZoneInfo("Europe/London"))
    hanoi = occurrences(rec, datetime(2026, 6, 1), datetime(2026, 6, 2), VN)
    assert [m.strftime("%H:%M") for m in london] == [m.strftime("%H:%M") for m in hanoi]
    assert london[0] - hanoi[0] == timedelta(hours=6)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.times(), min_size=1, max_size=4),
    first=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 1, 1)),
    length=st.integers(min_value=0, max_value=40),
    cut=st.integers(min_value=0, max_value=40 * 24),
)
def test_occurrences_are_sorted_aware_in_range_and_split_cleanly(
    times: list[time], first: date, length: int, cut: int
) -> None:
    rec = parse_recurrence(
        {"when": {"kind": "daily", "times": [t.replace(microsecond=0) for t in times]}}
    )
    start = datetime.combine(first, time(), tzinfo=VN)
    end = start + timedelta(days=length)
    middle = min(start + timedelta(hours=cut), end)
    found = occurrences(rec, start, end, VN)
    assert found == sorted(set(found))
    assert all(start <= m < end and m.tzinfo == VN for m in found)
    assert len(found) == length * len({t.replace(microsecond=0) for t in times})
    # Splitting the window never loses or repeats an occurrence.
    assert occurrences(rec, start, middle, VN) + occurrences(rec, middle, end, VN) == found
