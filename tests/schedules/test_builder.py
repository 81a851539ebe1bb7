"""The daily playlist builder: placement, clashes, midnight, grouping, validation, preview."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kernel.errors import InvalidInput
from kernel.tiers import Tier
from schedules.builder import build_day, build_days, preview
from schedules.exceptions import InvalidRule
from schedules.plans import DayPlan, ProgrammeItemSpec, validate_rule
from tests.schedules.factories import (
    VN,
    assert_no_overlap,
    daily,
    file_item,
    gap_item,
    programme,
    relay_item,
    rule,
    starts,
    when,
)

FILLER, NORMAL, PRIORITY, EMERGENCY = (
    t.priority for t in (Tier.FILLER, Tier.NORMAL, Tier.PRIORITY, Tier.EMERGENCY)
)

DAY = date(2026, 11, 26)
NEXT = DAY + timedelta(days=1)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def _conflict(plan: DayPlan, station_id: int, rule_id: int):  # type: ignore[no-untyped-def]
    found = [c for c in plan.conflicts if c.station_id == station_id and c.rule_id == rule_id]
    assert len(found) == 1, found
    return found[0]


def test_relay_chain_back_to_back_with_exact_times_and_ids() -> None:
    vov = programme(1, relay_item(30, "VOV1", source_id=1))
    province = programme(2, relay_item(15, "Đài Long An", source_id=2))
    city = programme(
        3,
        file_item(10, "Tin thành phố", asset_id=3),
        gap_item(1),
        file_item(4, "Nhạc", asset_id=4),
    )
    rules = [
        rule(1, 1, daily("05:00", "17:00"), stations=[1, 2], priority=PRIORITY, volume=80),
        rule(2, 2, daily("05:30", "17:30"), stations=[1, 2], priority=PRIORITY),
        rule(3, 3, daily("05:45"), stations=[1], priority=NORMAL),
    ]
    plan = build_day(rules, [vov, province, city], DAY, VN)
    assert plan.conflicts == ()
    assert plan.skipped_rules == ()
    one = plan.stations[1]
    assert starts(one) == ["05:00", "05:30", "05:45", "05:56", "17:00", "17:30"]
    assert [item.end_at.strftime("%H:%M") for item in one] == [
        "05:30",
        "05:45",
        "05:55",
        "06:00",
        "17:30",
        "17:45",
    ]
    assert [item.item_id for item in one[:4]] == [
        "r1-20261126T0500-0",
        "r2-20261126T0530-0",
        "r3-20261126T0545-0",
        "r3-20261126T0545-2",  # index 1 is the gap: it takes time, makes no item
    ]
    first = one[0]
    assert first.kind == "relay"
    assert first.stream is not None
    assert first.stream.url == "http://relay.example/1"
    assert first.fallback is not None
    assert first.volume == 80
    assert first.priority == PRIORITY
    assert first.start_at.tzinfo == VN
    assert first.occurrence_start == datetime(2026, 11, 26, 5, 0, tzinfo=VN)
    news = one[2]
    assert news.kind == "file"
    assert news.media is not None
    assert news.stream is None
    assert all(ID_PATTERN.match(item.item_id) for item in one)
    assert all(TIMESTAMP.match(item.start_at.isoformat()) for item in one)
    assert starts(plan.stations[2]) == ["05:00", "05:30", "17:00", "17:30"]


def test_shift_within_tolerance() -> None:
    relay = programme(1, relay_item(30))
    news = programme(2, file_item(20))
    rules = [
        rule(1, 1, daily("05:00"), priority=PRIORITY),
        rule(2, 2, daily("05:10"), priority=NORMAL, tolerance_s=30 * 60),
    ]
    plan = build_day(rules, [relay, news], DAY, VN)
    assert starts(plan.stations[1]) == ["05:00", "05:30"]
    moved = plan.stations[1][1]
    assert moved.shifted
    assert moved.item_id == "r2-20261126T0510-0"
    assert moved.occurrence_start == datetime(2026, 11, 26, 5, 10, tzinfo=VN)
    conflict = _conflict(plan, 1, 2)
    assert conflict.outcome == "shifted"
    assert conflict.winner_rule_id == 1
    assert conflict.winner_occurrence_start == datetime(2026, 11, 26, 5, 0, tzinfo=VN)
    assert conflict.new_start == datetime(2026, 11, 26, 5, 30, tzinfo=VN)
    assert "priority 5" in conflict.reason
    assert conflict.reason_vi


def test_shift_goes_to_the_first_gap_that_fits() -> None:
    rules = [
        rule(1, 1, daily("05:00"), priority=PRIORITY),  # 05:00-05:30
        rule(2, 1, daily("05:35"), priority=PRIORITY),  # 05:35-06:05
        rule(3, 2, daily("05:10"), priority=NORMAL, tolerance_s=3600),  # 20 min
    ]
    progs = [programme(1, relay_item(30)), programme(2, file_item(20))]
    plan = build_day(rules, progs, DAY, VN)
    # 05:30-05:35 is too short for 20 minutes: the block goes after 06:05.
    assert starts(plan.stations[1]) == ["05:00", "05:35", "06:05"]
    assert _conflict(plan, 1, 3).new_start == datetime(2026, 11, 26, 6, 5, tzinfo=VN)


def test_drop_beyond_tolerance() -> None:
    rules = [
        rule(1, 1, daily("05:00"), priority=PRIORITY),
        rule(2, 2, daily("05:10"), priority=NORMAL, tolerance_s=10 * 60),
        rule(3, 2, daily("05:20"), priority=NORMAL, tolerance_s=0),
    ]
    plan = build_day(rules, [programme(1, relay_item(30)), programme(2, file_item(20))], DAY, VN)
    assert starts(plan.stations[1]) == ["05:00"]
    for rid in (2, 3):
        conflict = _conflict(plan, 1, rid)
        assert conflict.outcome == "dropped"
        assert conflict.new_start is None
        assert conflict.winner_rule_id == 1
        assert "dropped" in conflict.reason


def test_equal_tiers_decided_by_order_then_created_at_then_id() -> None:
    progs = [programme(1, file_item(15))]
    early = datetime(2026, 1, 1, 8, 0)
    late = datetime(2026, 2, 1, 8, 0)

    def winner(*rules_) -> int:  # type: ignore[no-untyped-def]
        plan = build_day(list(rules_), progs, DAY, VN)
        (item,) = plan.stations[1]
        (conflict,) = plan.conflicts
        assert conflict.winner_rule_id == item.rule_id
        return item.rule_id

    at_six = daily("06:00")
    # Order decides first, even against an older rule.
    assert (
        winner(
            rule(1, 1, at_six, order=2, created_at=early),
            rule(2, 1, at_six, order=1, created_at=late),
        )
        == 2
    )
    # Same order: created earlier wins, whatever the id.
    assert (
        winner(
            rule(1, 1, at_six, order=1, created_at=late),
            rule(2, 1, at_six, order=1, created_at=early),
        )
        == 2
    )
    # Same order and creation time: the lower id.
    assert winner(rule(7, 1, at_six, order=1), rule(3, 1, at_six, order=1)) == 3
    # Aware and naive (UTC) creation times compare.
    aware_late = datetime(2026, 1, 1, 9, 0, tzinfo=ZoneInfo("UTC"))
    assert (
        winner(rule(1, 1, at_six, created_at=aware_late), rule(2, 1, at_six, created_at=early)) == 2
    )


def test_higher_tier_never_displaced_by_a_lower_one() -> None:
    progs = [programme(1, file_item(30)), programme(2, file_item(10))]
    rules = [
        # The normal rule is older, ordered first, and starts first...
        rule(1, 1, daily("06:00"), priority=NORMAL, order=0, created_at=datetime(2020, 1, 1)),
        # ...but the emergency bulletin in the middle of it still wins.
        rule(2, 2, daily("06:10"), priority=EMERGENCY, order=9, created_at=datetime(2026, 11, 1)),
        rule(3, 2, daily("06:15"), priority=FILLER, tolerance_s=3600),
    ]
    plan = build_day(rules, progs, DAY, VN)
    assert starts(plan.stations[1]) == ["06:10", "06:20"]
    assert [item.rule_id for item in plan.stations[1]] == [2, 3]
    assert _conflict(plan, 1, 1).outcome == "dropped"
    assert _conflict(plan, 1, 1).winner_rule_id == 2
    filler = _conflict(plan, 1, 3)
    assert filler.outcome == "shifted"
    assert filler.winner_rule_id == 2


def test_rule_crossing_midnight_appears_once_and_next_day_starts_after_it() -> None:
    late_show = programme(1, file_item(40, "Phát thanh đêm"))
    morning = programme(2, file_item(10, "Nhạc sáng"))
    rules = [
        rule(1, 1, daily("23:40"), priority=NORMAL),  # 23:40 -> 00:20
        rule(2, 2, daily("00:05"), priority=FILLER, tolerance_s=3600),
        rule(3, 2, daily("00:10"), priority=FILLER, tolerance_s=0),
    ]
    first, second = (build_day(rules, [late_show, morning], day, VN) for day in (DAY, NEXT))
    day_one = first.stations[1]
    assert [(i.item_id, starts([i])[0]) for i in day_one if i.rule_id == 1] == [
        ("r1-20261126T2340-0", "23:40")
    ]
    crossing = next(i for i in day_one if i.rule_id == 1 and i.start_at.date() == DAY)
    assert crossing.end_at == datetime(2026, 11, 27, 0, 20, tzinfo=VN)
    # The next day's plan does not repeat it and places nothing over its tail.
    assert all(i.item_id != crossing.item_id for i in second.stations[1])
    assert starts(second.stations[1])[:1] == ["00:20"]
    assert second.stations[1][0].rule_id == 2
    assert _conflict(second, 1, 2).winner_rule_id == 1
    assert _conflict(second, 1, 2).winner_occurrence_start == crossing.occurrence_start
    assert _conflict(second, 1, 3).outcome == "dropped"
    assert_no_overlap([first, second])
    # Built together or apart, the days agree.
    assert build_days(rules, [late_show, morning], [DAY, NEXT], VN) == [first, second]


def test_next_day_higher_tier_cuts_into_the_previous_days_block_consistently() -> None:
    long_show = programme(1, file_item(60))
    bulletin = programme(2, file_item(15))
    rules = [
        rule(1, 1, daily("23:30"), priority=NORMAL, tolerance_s=0),
        rule(2, 2, daily("00:00"), priority=PRIORITY),
    ]
    first, second = (build_day(rules, [long_show, bulletin], day, VN) for day in (DAY, NEXT))
    # The 23:30 show would run into the next day's priority bulletin: it is dropped,
    # and the conflict belongs to the day it should have started.
    assert [i.rule_id for i in first.stations[1]] == [2]  # today's 00:00 bulletin
    assert _conflict(first, 1, 1).outcome == "dropped"
    assert _conflict(first, 1, 1).winner_occurrence_start == datetime(2026, 11, 27, tzinfo=VN)
    assert starts(second.stations[1]) == ["00:00"]
    assert_no_overlap([first, second])


def test_shift_across_midnight_lands_in_the_next_days_plan() -> None:
    rules = [
        rule(1, 1, daily("23:30"), priority=PRIORITY),  # 23:30-00:00
        rule(2, 2, daily("23:45"), priority=NORMAL, tolerance_s=3600),  # 10 min
    ]
    progs = [programme(1, file_item(30)), programme(2, file_item(10))]
    first, second = build_days(rules, progs, [DAY, NEXT], VN)
    # 00:00: yesterday's 23:45 bulletin, moved past midnight; then today's 23:30 show.
    assert [(i.rule_id, starts([i])[0]) for i in first.stations[1]] == [(2, "00:00"), (1, "23:30")]
    assert _conflict(first, 1, 2).new_start == datetime(2026, 11, 27, 0, 0, tzinfo=VN)
    moved = [i for i in second.stations[1] if i.item_id == "r2-20261126T2345-0"]
    assert len(moved) == 1
    assert moved[0].shifted
    assert_no_overlap([first, second])


def test_same_rule_overlapping_itself() -> None:
    rules = [rule(1, 1, daily("06:00", "06:20", "06:40", "07:00"), tolerance_s=0)]
    plan = build_day(rules, [programme(1, file_item(30))], DAY, VN)
    assert starts(plan.stations[1]) == ["06:00", "06:40"]
    dropped = [c for c in plan.conflicts]
    assert [c.occurrence_start.strftime("%H:%M") for c in dropped] == ["06:20", "07:00"]
    assert all(c.winner_rule_id == 1 and "same rule" in c.reason for c in dropped)


def test_stations_with_the_same_rules_share_one_timeline() -> None:
    progs = [programme(1, relay_item(30)), programme(2, file_item(10))]
    rules = [
        rule(1, 1, daily("05:00"), stations=range(1, 101), priority=PRIORITY),
        rule(2, 2, daily("05:10"), stations=range(1, 51), tolerance_s=3600),
    ]
    plan = build_day(rules, progs, DAY, VN)
    assert plan.stations[1] is plan.stations[50]
    assert plan.stations[51] is plan.stations[100]
    assert starts(plan.stations[1]) == ["05:00", "05:30"]
    assert starts(plan.stations[100]) == ["05:00"]
    assert [c.station_id for c in plan.conflicts] == list(range(1, 51))
    assert list(plan.stations) == sorted(plan.stations)


def test_stations_argument_limits_and_lists_empty_stations() -> None:
    rules = [rule(1, 1, daily("05:00"), stations=[1, 2, 3])]
    plan = build_day(rules, [programme(1, relay_item(30))], DAY, VN, stations=[2, 9])
    assert set(plan.stations) == {2, 9}
    assert plan.stations[9] == ()
    assert starts(plan.stations[2]) == ["05:00"]


def test_invalid_rules_are_skipped_and_reported() -> None:
    progs = [programme(1, relay_item(30)), programme(2, file_item(90))]
    rules = [
        rule(1, 1, daily("05:00")),
        rule(2, 2, daily("06:00"), slot_s=1800),  # 90 min programme in a 30 min slot
        rule(3, 99, daily("07:00")),  # no such programme
    ]
    plan = build_day(rules, progs, DAY, VN)
    assert starts(plan.stations[1]) == ["05:00"]
    assert [(s.rule_id, s.field) for s in plan.skipped_rules] == [
        (2, "slot_s"),
        (3, "programme_id"),
    ]


def test_duplicate_rule_ids_are_refused() -> None:
    one = rule(1, 1, daily("05:00"))
    other = rule(1, 1, daily("06:00"))
    with pytest.raises(InvalidInput):
        build_day([one, other], [programme(1, file_item(5))], DAY, VN)
    # The very same rule twice is harmless.
    assert build_day([one, one], [programme(1, file_item(5))], DAY, VN).stations[1]


def test_validate_rule() -> None:
    good = programme(1, file_item(10))
    validate_rule(rule(1, 1, daily("05:00"), slot_s=600), good)

    def field_of(rule_, programme_) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
        with pytest.raises(InvalidRule) as info:
            validate_rule(rule_, programme_)
        assert info.value.message
        assert info.value.message_vi
        return info.value.loc

    assert field_of(rule(1, 1, daily("05:00"), slot_s=599), good) == ("slot_s",)
    assert field_of(rule(1, 1, daily("05:00")), programme(1)) == ("programme", "items")
    assert field_of(rule(1, 1, daily("05:00"), priority=10), good) == ("priority",)
    assert field_of(rule(1, 1, daily("05:00"), priority=-1), good) == ("priority",)
    assert field_of(rule(1, 1, daily("05:00"), volume=101), good) == ("volume",)
    assert field_of(rule(1, 1, daily("05:00"), tolerance_s=-1), good) == ("shift_tolerance_s",)
    assert field_of(rule(1, 2, daily("05:00")), good) == ("programme_id",)
    assert field_of(rule(1, 1, daily("05:00")), programme(1, gap_item(5))) == ("programme", "items")
    no_media = ProgrammeItemSpec(kind="file", title="x", duration_ms=1000)
    assert field_of(rule(1, 1, daily("05:00")), programme(1, gap_item(1), no_media)) == (
        "programme",
        "items",
        1,
        "media",
    )
    no_stream = ProgrammeItemSpec(kind="relay", title="x", duration_ms=1000)
    assert field_of(rule(1, 1, daily("05:00")), programme(1, no_stream))[-1] == "stream"
    zero = replace(file_item(1), duration_ms=0)
    assert field_of(rule(1, 1, daily("05:00")), programme(1, zero))[-1] == "duration_ms"
    assert field_of(rule(1, 1, daily("05:00")), programme(1, file_item(25 * 60))) == (
        "programme",
        "items",
    )


def test_preview_reports_what_a_new_rule_would_do() -> None:
    progs = [programme(1, relay_item(30)), programme(2, file_item(20))]
    existing = [
        rule(1, 1, daily("05:00"), stations=[1, 2, 3], priority=PRIORITY),
        rule(2, 2, daily("06:00"), stations=[1, 2, 3], priority=NORMAL, tolerance_s=3600),
    ]
    newcomer = rule(
        9, 2, daily("05:20", "06:05"), stations=[1, 2], priority=PRIORITY, tolerance_s=600
    )
    result = preview(newcomer, progs[1], existing, progs, (DAY, NEXT), VN)
    assert len(result.occurrences) == 4
    # 05:20 clashes with the 05:00 relay (same tier, older) and moves to 05:30.
    assert starts(result.items[1]) == ["05:30", "06:05", "05:30", "06:05"]
    assert {(c.rule_id, c.outcome, c.winner_rule_id) for c in result.suffered} == {
        (9, "shifted", 1)
    }
    assert len(result.suffered) == 4  # 2 stations x 2 days
    # Its 06:05 bulletin pushes rule 2 (normal) out of 06:00 on stations 1 and 2.
    assert {(c.station_id, c.rule_id, c.outcome) for c in result.caused} == {
        (1, 2, "shifted"),
        (2, 2, "shifted"),
    }
    assert all(c.winner_rule_id == 9 for c in result.caused)
    assert all(set(plan.stations) == {1, 2} for plan in result.plans)


def test_preview_of_an_edit_replaces_the_stored_rule() -> None:
    progs = [programme(1, file_item(20))]
    stored = rule(1, 1, daily("05:00"))
    edited = replace(stored, recurrence=daily("07:00"))
    result = preview(edited, progs[0], [stored], progs, (DAY, DAY), VN)
    assert starts(result.items[1]) == ["07:00"]
    assert result.suffered == ()
    assert result.caused == ()


def test_preview_validates() -> None:
    progs = [programme(1, file_item(20))]
    with pytest.raises(InvalidRule):
        preview(rule(1, 1, daily("05:00"), slot_s=60), progs[0], [], progs, (DAY, DAY), VN)
    with pytest.raises(InvalidInput) as info:
        preview(rule(1, 1, daily("05:00")), progs[0], [], progs, (NEXT, DAY), VN)
    assert info.value.loc == ("day_range",)


def test_same_output_whatever_the_input_order() -> None:
    progs = [programme(p, file_item(5 + 7 * p), relay_item(3)) for p in range(1, 6)]
    rules = [
        rule(
            r,
            1 + r % 5,
            daily(f"{5 + r % 4:02d}:{(r * 7) % 60:02d}", "23:50"),
            stations=range(r % 3, 6 + r % 4),
            priority=(0, 3, 5, 9)[r % 4],
            order=r % 2,
            tolerance_s=(0, 900)[r % 2],
        )
        for r in range(1, 13)
    ]
    expected = build_day(rules, progs, DAY, VN)
    assert expected.conflicts
    shuffler = random.Random(7)
    for _ in range(5):
        rules_copy, progs_copy = rules[:], progs[:]
        shuffler.shuffle(rules_copy)
        shuffler.shuffle(progs_copy)
        assert build_day(rules_copy, progs_copy, DAY, VN) == expected


def test_lunar_rule_on_the_first_and_fifteenth() -> None:
    rules = [rule(1, 1, when({"kind": "lunar", "days": [1, 15], "times": ["19:00"]}))]
    plans = build_days(
        rules, [programme(1, file_item(15))], [date(2026, 3, d) for d in range(1, 6)], VN
    )
    assert [plan.day.day for plan in plans if plan.stations[1]] == [3]  # Rằm tháng Giêng


def test_dst_zone_items_have_exact_lengths() -> None:
    new_york = ZoneInfo("America/New_York")
    rules = [
        rule(1, 1, daily("01:30"), tolerance_s=0),
        rule(2, 2, daily("01:00"), priority=PRIORITY),
    ]
    progs = [programme(1, file_item(90)), programme(2, file_item(20))]
    days = [date(2026, 3, 8), date(2026, 11, 1)]
    for plan in build_days(rules, progs, days, new_york):
        for item in plan.stations[1]:
            length = item.end_at.astimezone(UTC) - item.start_at.astimezone(UTC)
            assert length == timedelta(minutes=90 if item.rule_id == 1 else 20)
        assert_no_overlap([plan])


def test_zone_where_midnight_does_not_exist() -> None:
    # Chile moves its clocks from 00:00 to 01:00 on Sunday 6 September 2026.
    santiago = ZoneInfo("America/Santiago")
    rules = [
        rule(1, 1, daily("23:30", "00:30"), priority=NORMAL, tolerance_s=0),
        rule(2, 2, daily("00:00", "01:00"), priority=FILLER, tolerance_s=1800),
    ]
    progs = [programme(1, file_item(45)), programme(2, file_item(20))]
    days = [date(2026, 9, 4) + timedelta(days=n) for n in range(4)]
    plans = build_days(rules, progs, days, santiago)
    assert_no_overlap(plans)
    alone = [build_day(rules, progs, day, santiago) for day in days]
    assert alone == plans
    for plan in plans:
        for item in plan.stations[1]:
            assert item.start_at.astimezone(santiago).date() == plan.day


def test_blocks_chaining_for_days_still_build_consistently() -> None:
    # A 24-hour programme with a tolerance: every block's reach overlaps the next day's,
    # so the cluster never closes and the builder stops at its look-around limit.
    rules = [
        rule(1, 1, daily("00:00"), priority=FILLER, tolerance_s=600),
        rule(2, 2, daily("12:00"), priority=EMERGENCY),
    ]
    progs = [programme(1, file_item(24 * 60)), programme(2, file_item(5))]
    days = [DAY + timedelta(days=n) for n in range(3)]
    plans = build_days(rules, progs, days, VN)
    assert_no_overlap(plans)
    for plan in plans:
        assert [item.rule_id for item in plan.stations[1]] == [2]
        assert {c.outcome for c in plan.conflicts} == {"dropped"}
    assert [build_day(rules, progs, day, VN) for day in days] == plans
