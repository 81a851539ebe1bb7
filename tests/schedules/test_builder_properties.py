"""Property tests of the playlist builder on random rule sets (hypothesis).

For random rules (tiers, orders, creation times, tolerances, targets, programmes with
gaps, times near midnight) built for three consecutive days:

* no two items of a station overlap, and no item appears twice across the days;
* a block is only ever displaced by one that outranks it (so never by a lower tier),
  and the reported winner really holds the wanted time;
* every occurrence of every rule on every targeted station is placed as planned, or
  in the conflict report (shifted: placed at the reported start; dropped: nowhere);
* the same input gives the same output, whatever the order of rules and programmes,
  and whether the days are built one by one or together.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schedules.builder import build_day, build_days
from schedules.plans import (
    DayPlan,
    MediaRef,
    PlannedItem,
    ProgrammeItemSpec,
    ProgrammeSpec,
    RuleSpec,
    StreamRef,
)
from schedules.recurrence import occurrences, parse_recurrence
from tests.schedules.factories import VN, assert_no_overlap

DAY = date(2026, 11, 26)
DAYS = [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]
STATIONS = (1, 2, 3, 4)
MIN = 60_000


@st.composite
def programme_items(draw: st.DrawFn, pid: int) -> tuple[ProgrammeItemSpec, ...]:
    playable = draw(st.sampled_from(["file", "relay"]))
    others = draw(st.lists(st.sampled_from(["file", "relay", "gap"]), max_size=2))
    kinds = draw(st.permutations([playable, *others]))
    items = []
    for index, kind in enumerate(kinds):
        minutes = draw(st.integers(min_value=1, max_value=90))
        ms = minutes * MIN + draw(st.sampled_from([0, 0, 500, 30_000]))
        asset = MediaRef(pid * 10 + index, f"{pid * 10 + index:064x}", 100, ms)
        items.append(
            ProgrammeItemSpec(
                kind=kind,
                title=f"p{pid}-{index}",
                duration_ms=ms,
                media=asset if kind == "file" else None,
                stream=StreamRef(pid, f"http://relay.example/{pid}") if kind == "relay" else None,
                loop=kind == "file" and draw(st.booleans()),
            )
        )
    return tuple(items)


local_times = st.builds(
    time,
    hour=st.sampled_from([0, 0, 1, 5, 6, 12, 17, 22, 23, 23]),
    minute=st.integers(min_value=0, max_value=59),
)


@st.composite
def recurrences(draw: st.DrawFn) -> object:
    form = draw(st.sampled_from(["daily", "once", "weekly"]))
    times = sorted(
        {t.strftime("%H:%M") for t in draw(st.lists(local_times, min_size=1, max_size=3))}
    )
    if form == "once":
        day = draw(st.sampled_from(DAYS))
        data: dict[str, object] = {"kind": "once", "at": f"{day.isoformat()}T{times[0]}"}
    elif form == "weekly":
        days = draw(
            st.lists(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), min_size=1)
        )
        data = {"kind": "weekly", "weekdays": days, "times": times}
    else:
        data = {"kind": "daily", "times": times}
    return parse_recurrence({"when": data})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[RuleSpec], list[ProgrammeSpec]]:
    n_programmes = draw(st.integers(min_value=1, max_value=4))
    programmes = [
        ProgrammeSpec(id=pid, title=f"P{pid}", items=draw(programme_items(pid)))
        for pid in range(1, n_programmes + 1)
    ]
    n_rules = draw(st.integers(min_value=1, max_value=7))
    rules = []
    for rid in range(1, n_rules + 1):
        rules.append(
            RuleSpec(
                id=rid,
                title=f"R{rid}",
                programme_id=draw(st.integers(min_value=1, max_value=n_programmes)),
                station_ids=frozenset(draw(st.sets(st.sampled_from(STATIONS), min_size=1))),
                priority=draw(st.sampled_from([0, 3, 3, 5, 7, 9])),
                order=draw(st.integers(min_value=0, max_value=2)),
                created_at=datetime(2026, 1, draw(st.integers(min_value=1, max_value=3))),
                recurrence=draw(recurrences()),  # type: ignore[arg-type]
                shift_tolerance_s=draw(st.sampled_from([0, 0, 300, 1800, 7200])),
            )
        )
    return rules, programmes


def _rank(rule: RuleSpec) -> tuple[int, int, datetime, int]:
    return (-rule.priority, rule.order, rule.created_at, rule.id)


def _blocks(plans: list[DayPlan], station_id: int) -> dict[tuple[int, datetime], list[PlannedItem]]:
    """Items of a station grouped by block: (rule, occurrence start)."""
    found: dict[tuple[int, datetime], list[PlannedItem]] = {}
    for plan in plans:
        for item in plan.stations.get(station_id, ()):
            found.setdefault((item.rule_id, item.occurrence_start), []).append(item)
    return found


def _block_start(items: list[PlannedItem], programme: ProgrammeSpec) -> datetime:
    first = min(items, key=lambda item: item.start_at)
    index = int(first.item_id.rsplit("-", 1)[1])
    offset = sum(item.duration_ms for item in programme.items[:index])
    return first.start_at - timedelta(milliseconds=offset)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_builder_invariants(scenario: tuple[list[RuleSpec], list[ProgrammeSpec]]) -> None:
    rules, programmes = scenario
    plans = build_days(rules, programmes, DAYS, VN)
    event(f"shifted: {any(c.outcome == 'shifted' for p in plans for c in p.conflicts)}")
    event(f"dropped: {any(c.outcome == 'dropped' for p in plans for c in p.conflicts)}")
    assert_no_overlap(plans)
    by_rule = {rule.id: rule for rule in rules}
    by_programme = {p.id: p for p in programmes}
    middle = plans[1]
    day_start = datetime.combine(DAY, time(), tzinfo=VN)
    day_end = day_start + timedelta(days=1)

    for station_id in STATIONS:
        blocks = _blocks(plans, station_id)
        spans = {
            key: (
                start := _block_start(items, by_programme[by_rule[key[0]].programme_id]),
                start
                + timedelta(milliseconds=by_programme[by_rule[key[0]].programme_id].duration_ms),
            )
            for key, items in blocks.items()
        }
        conflicts = {
            (c.rule_id, c.occurrence_start): c
            for c in middle.conflicts
            if c.station_id == station_id
        }
        assert len(conflicts) == len([c for c in middle.conflicts if c.station_id == station_id])

        # Every occurrence of the middle day: placed as planned, or in the report.
        for rule in rules:
            if station_id not in rule.station_ids:
                continue
            for occ in occurrences(rule.recurrence, day_start, day_end, VN):
                key = (rule.id, occ)
                conflict = conflicts.pop(key, None)
                if conflict is None:
                    assert key in blocks, f"occurrence {key} neither placed nor reported"
                    assert spans[key][0] == occ
                    assert not any(item.shifted for item in blocks[key])
                    continue
                winner = by_rule[conflict.winner_rule_id]
                # Only displaced by a block that outranks it (so never by a lower tier).
                assert winner.priority >= rule.priority
                assert (_rank(winner), conflict.winner_occurrence_start) < (_rank(rule), occ)
                # ...and that block really holds the wanted time.
                held = spans[(winner.id, conflict.winner_occurrence_start)]
                wanted_end = occ + timedelta(
                    milliseconds=by_programme[rule.programme_id].duration_ms
                )
                assert held[0] < wanted_end
                assert occ < held[1]
                if conflict.outcome == "dropped":
                    assert key not in blocks
                    assert conflict.new_start is None
                else:
                    assert conflict.new_start is not None
                    assert spans[key][0] == conflict.new_start
                    shift = conflict.new_start.astimezone(UTC) - occ.astimezone(UTC)
                    assert timedelta(0) < shift <= timedelta(seconds=rule.shift_tolerance_s)
        assert conflicts == {}, f"conflicts for occurrences that do not exist: {conflicts}"

        # Whole blocks (gaps included: nothing is put in a programme's gap) never overlap.
        ordered = sorted(spans.values())
        for (_, end), (start, _) in itertools.pairwise(ordered):
            assert end <= start
        event(f"conflicts on a station: {min(len(middle.conflicts), 3)}")
        event(f"blocks crossing midnight: {sum(1 for a, b in ordered if a < day_end < b) > 0}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_builder_is_deterministic(
    scenario: tuple[list[RuleSpec], list[ProgrammeSpec]], shuffler: object
) -> None:
    import random

    assert isinstance(shuffler, random.Random)
    rules, programmes = scenario
    expected = build_day(rules, programmes, DAY, VN)
    assert build_day(rules, programmes, DAY, VN) == expected
    rules_copy, programmes_copy = rules[:], programmes[:]
    shuffler.shuffle(rules_copy)
    shuffler.shuffle(programmes_copy)
    assert build_day(rules_copy, programmes_copy, DAY, VN) == expected
    # Built alone or with its neighbours, the day is the same.
    assert build_days(rules_copy, programmes_copy, DAYS, VN)[1] == expected
    # Ids never depend on the station.
    by_id: dict[str, PlannedItem] = {}
    for items in expected.stations.values():
        for item in items:
            if item.item_id in by_id and by_id[item.item_id].start_at == item.start_at:
                assert by_id[item.item_id] == item
            by_id.setdefault(item.item_id, item)
