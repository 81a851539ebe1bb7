"""The daily playlist builder: schedule rules + programmes -> each station's timeline.

Pure and deterministic: plain frozen dataclasses in, plain frozen dataclasses out, no I/O,
no clock, no wire format.  The schedules service fills :class:`RuleSpec` and
:class:`ProgrammeSpec`; dispatch turns the :class:`PlannedItem` of a :class:`DayPlan` into
each station's ``desired`` playlist.

Semantics
---------
* **Block.**  One occurrence of a rule (see :mod:`schedules.recurrence`) is its programme
  played as one block, starting at the occurrence instant, on every station in
  ``station_ids``.  The block lasts the programme's total duration (the sum of its items,
  gaps included); each ``file``/``relay`` item becomes a :class:`PlannedItem` with exact
  start/end, a ``gap`` produces no item but keeps its time (nothing else is put there).
* **Clashes** are resolved per station, by rank: higher ``priority`` first; on equal
  priority lower ``order`` wins, then earlier ``created_at`` (naive = UTC), then the lower
  rule id, then the earlier occurrence (two occurrences of one rule).  Blocks are placed
  greedily in rank order, so a block is never displaced by a block of lower rank; in
  particular a higher tier is never displaced by a lower one.  A block whose start is
  taken is moved to the earliest later start at which the whole block fits, if that is at
  most ``shift_tolerance_s`` after the occurrence (0 = never shift); otherwise it is
  dropped.  Either way a :class:`Conflict` records the losing rule and occurrence, the
  rule holding the wanted time (the winner) and the outcome.
* **Midnight.**  An item belongs to the day on which it *starts* and is emitted whole:
  an item that starts at 23:50 and ends at 00:20 is in that day's plan only, with its
  real ``end_at``, and the next day's plan starts after it.  Blocks are resolved in
  *clusters*: maximal runs of occurrences whose reach (occurrence .. occurrence +
  shift tolerance + duration) chain-overlap.  A cluster is resolved as a whole,
  whichever day is being built, so consecutive days agree: an item crossing midnight
  appears exactly once and nothing the next day places overlaps it.  To find the
  clusters touching a day the builder looks at neighbouring days, widening the window a
  day at a time up to :data:`MAX_LOOKAROUND_DAYS` on either side.  (Only a schedule
  whose blocks chain-overlap without a break for longer than that could be cut at an
  arbitrary point; none of the forms a commune uses comes close.)  A :class:`Conflict`
  belongs to the day of the losing *occurrence*, even when the block moved to the next
  day.
* **Item ids** are ``r{rule}-{YYYYMMDDTHHMM[SS]}-{index}``: the rule, the occurrence's
  local start, the item's index in the programme.  They match the protocol's id pattern,
  do not depend on the station, and stay the same when a block is shifted, so
  republishing does not make stations re-stage anything.
* **Scale.**  Stations with the same set of applicable rules share one timeline
  (grouped by rule set, computed once, the same tuple object in every entry); resolved
  clusters and built items are memoised across groups too.
* **Validation.**  :func:`validate_rule` is what the API calls before saving.  The
  builder skips a rule that fails it (or names a missing programme) and lists it in
  :attr:`DayPlan.skipped_rules` rather than failing every station's playlist.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from kernel.errors import InvalidInput
from kernel.tiers import tier_of
from schedules.exceptions import InvalidRule, ProgrammeNotFound
from schedules.plans import (
    Conflict,
    DayPlan,
    PlannedItem,
    ProgrammeItemSpec,
    ProgrammeSpec,
    RulePreview,
    RuleSpec,
    SkippedRule,
    validate_rule,
)
from schedules.recurrence import Recurrence, localize, occurrences

__all__ = [
    "MAX_LOOKAROUND_DAYS",
    "MAX_PREVIEW_DAYS",
    "build_day",
    "build_days",
    "item_id",
    "preview",
]

#: How many days around the built day the builder may look to close a cluster.
MAX_LOOKAROUND_DAYS = 7
#: Longest day range :func:`preview` accepts.
MAX_PREVIEW_DAYS = 62

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 24 * 3600 * 1000


# ------------------------------------------------------------------------- helpers


def _to_ms(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _EPOCH) // _MS


def _midnight_ms(day: date, tz: tzinfo) -> int:
    return _to_ms(localize(datetime.combine(day, time()), tz))


def item_id(rule_id: int, occurrence_start: datetime, index: int) -> str:
    """``r{rule}-{YYYYMMDDTHHMM[SS]}-{index}`` from the occurrence's local start."""
    stamp = occurrence_start.strftime("%Y%m%dT%H%M")
    if occurrence_start.second:
        stamp += f"{occurrence_start.second:02d}"
    return f"r{rule_id}-{stamp}-{index}"


@dataclass(frozen=True, slots=True)
class _Segment:
    index: int
    offset_ms: int
    spec: ProgrammeItemSpec


@dataclass(frozen=True, slots=True)
class _Rule:
    spec: RuleSpec
    programme: ProgrammeSpec
    duration_ms: int
    tolerance_ms: int
    rank: tuple[int, int, datetime, int]
    segments: tuple[_Segment, ...]

    @property
    def reach_ms(self) -> int:
        return self.duration_ms + self.tolerance_ms


def _compile(rule: RuleSpec, programme: ProgrammeSpec) -> _Rule:
    created = rule.created_at
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    segments: list[_Segment] = []
    offset = 0
    for index, item in enumerate(programme.items):
        if item.kind != "gap":
            segments.append(_Segment(index=index, offset_ms=offset, spec=item))
        offset += item.duration_ms
    return _Rule(
        spec=rule,
        programme=programme,
        duration_ms=offset,
        tolerance_ms=rule.shift_tolerance_s * 1000,
        rank=(-rule.priority, rule.order, created, rule.id),
        segments=tuple(segments),
    )


# (occurrence ms, rule id): one block.  Sorted by occurrence, then rule id.
_Block = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _Placement:
    block: _Block
    start_ms: int | None  # None: dropped
    winner: _Block | None  # who held the wanted time (None: placed as planned)


def _resolve_cluster(blocks: Sequence[_Block], rules: Mapping[int, _Rule]) -> list[_Placement]:
    """Greedy placement by rank: the heart of the clash rules (see the module doc)."""
    ranked = sorted(blocks, key=lambda block: (rules[block[1]].rank, block[0]))
    starts: list[int] = []  # busy intervals, sorted, never overlapping
    ends: list[int] = []
    owners: list[_Block] = []
    placements: list[_Placement] = []

    def fits(at: int, length: int) -> bool:
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and ends[i] > at:
            return False
        return i + 1 >= len(starts) or starts[i + 1] >= at + length

    def occupy(at: int, length: int, owner: _Block) -> None:
        i = bisect.bisect_right(starts, at)
        starts.insert(i, at)
        ends.insert(i, at + length)
        owners.insert(i, owner)

    for block in ranked:
        occ, rule_id = block
        rule = rules[rule_id]
        length = rule.duration_ms
        if fits(occ, length):
            occupy(occ, length, block)
            placements.append(_Placement(block, occ, None))
            continue
        # The winner: the earliest busy interval overlapping the wanted time.
        i = max(bisect.bisect_right(starts, occ) - 1, 0)
        while ends[i] <= occ:
            i += 1
        winner = owners[i]
        moved: int | None = None
        if rule.tolerance_ms > 0:
            latest = occ + rule.tolerance_ms
            for candidate in sorted(end for end in ends if occ < end <= latest):
                if fits(candidate, length):
                    moved = candidate
                    break
        if moved is not None:
            occupy(moved, length, block)
        placements.append(_Placement(block, moved, winner))
    return placements


def _clusters(
    blocks: Sequence[_Block], rules: Mapping[int, _Rule]
) -> list[tuple[int, int, list[_Block]]]:
    """Split sorted blocks into clusters: (first occurrence, reach end, blocks)."""
    found: list[tuple[int, int, list[_Block]]] = []
    current: list[_Block] = []
    first = reach_end = 0
    for block in blocks:
        occ, rule_id = block
        end = occ + rules[rule_id].reach_ms
        if current and occ < reach_end:
            current.append(block)
            reach_end = max(reach_end, end)
            continue
        if current:
            found.append((first, reach_end, current))
        current, first, reach_end = [block], occ, end
    if current:
        found.append((first, reach_end, current))
    return found


#: station_id of a conflict computed once for a group of stations (set per station).
_ANY_STATION = 0


class _Context:
    """Everything one build shares across days and station groups (caches included)."""

    def __init__(
        self, rules: Iterable[RuleSpec], programmes: Iterable[ProgrammeSpec], tz: tzinfo
    ) -> None:
        self.tz = tz
        by_id: dict[int, ProgrammeSpec] = {}
        for programme in programmes:
            if programme.id in by_id and by_id[programme.id] != programme:
                raise InvalidInput(
                    f"Programme {programme.id} given twice",
                    field="programmes",
                    message_vi=f"Chương trình {programme.id} bị lặp",
                )
            by_id[programme.id] = programme
        self.rules: dict[int, _Rule] = {}
        skipped: list[SkippedRule] = []
        seen: dict[int, RuleSpec] = {}
        for rule in rules:
            if rule.id in seen:
                if seen[rule.id] == rule:
                    continue
                raise InvalidInput(
                    f"Rule {rule.id} given twice",
                    field="rules",
                    message_vi=f"Lịch phát {rule.id} bị lặp",
                )
            seen[rule.id] = rule
            found = by_id.get(rule.programme_id)
            try:
                if found is None:
                    raise ProgrammeNotFound(rule.programme_id, rule_id=rule.id)
                validate_rule(rule, found)
            except (InvalidRule, ProgrammeNotFound) as exc:
                loc = ".".join(str(part) for part in getattr(exc, "loc", ("programme_id",)))
                skipped.append(SkippedRule(rule.id, loc, exc.message, exc.message_vi))
                continue
            self.rules[rule.id] = _compile(rule, found)
        self.skipped = tuple(sorted(skipped, key=lambda s: s.rule_id))
        self._occurrences: dict[tuple[Recurrence, date, date], list[int]] = {}
        self._clusters: dict[tuple[_Block, ...], list[_Placement]] = {}
        self._items: dict[tuple[int, int, int], tuple[PlannedItem, ...]] = {}
        self._moments: dict[int, datetime] = {}

    def moment(self, ms: int) -> datetime:
        found = self._moments.get(ms)
        if found is None:
            found = (_EPOCH + timedelta(milliseconds=ms)).astimezone(self.tz)
            self._moments[ms] = found
        return found

    def occurrences_ms(self, rule_id: int, first: date, last: date) -> list[int]:
        """Occurrence instants (ms) of a rule between the local days first..last.

        Cached by recurrence: rules sharing one (e.g. every commune's 06:00 and 18:00
        programme) are expanded once.
        """
        recurrence = self.rules[rule_id].spec.recurrence
        key = (recurrence, first, last)
        found = self._occurrences.get(key)
        if found is None:
            start = localize(datetime.combine(first, time()), self.tz)
            end = localize(datetime.combine(last + timedelta(days=1), time()), self.tz)
            found = [_to_ms(moment) for moment in occurrences(recurrence, start, end, self.tz)]
            self._occurrences[key] = found
        return found

    def resolve(self, cluster: list[_Block]) -> list[_Placement]:
        key = tuple(cluster)
        found = self._clusters.get(key)
        if found is None:
            found = _resolve_cluster(cluster, self.rules)
            self._clusters[key] = found
        return found

    def items(self, block: _Block, start_ms: int) -> tuple[PlannedItem, ...]:
        occ_ms, rule_id = block
        key = (rule_id, occ_ms, start_ms)
        found = self._items.get(key)
        if found is None:
            rule = self.rules[rule_id]
            spec = rule.spec
            occurrence = self.moment(occ_ms)
            built: list[PlannedItem] = []
            for segment in rule.segments:
                item = segment.spec
                begin = start_ms + segment.offset_ms
                built.append(
                    PlannedItem(
                        item_id=item_id(spec.id, occurrence, segment.index),
                        kind="file" if item.kind == "file" else "relay",
                        title=item.title or rule.programme.title,
                        start_at=self.moment(begin),
                        end_at=self.moment(begin + item.duration_ms),
                        priority=spec.priority,
                        rule_id=spec.id,
                        programme_id=rule.programme.id,
                        occurrence_start=occurrence,
                        media=item.media,
                        stream=item.stream,
                        fallback=item.fallback,
                        volume=spec.volume,
                        loop=item.loop and item.kind == "file",
                        shifted=start_ms != occ_ms,
                    )
                )
            found = tuple(built)
            self._items[key] = found
        return found

    def conflict(self, placement: _Placement) -> Conflict:
        assert placement.winner is not None
        occ_ms, rule_id = placement.block
        win_ms, win_rule_id = placement.winner
        loser = self.rules[rule_id].spec
        winner = self.rules[win_rule_id].spec
        occurrence = self.moment(occ_ms)
        winner_at = self.moment(win_ms)
        why = _why(winner, loser)
        when = f"{occurrence:%Y-%m-%d %H:%M}"
        if placement.start_ms is None:
            outcome: Literal["shifted", "dropped"] = "dropped"
            new_start = None
            tolerance = loser.shift_tolerance_s
            reason = (
                f"{_upper_first(_name(loser))} at {when} dropped: {_name(winner)} "
                f"holds the time ({why}) and no free slot within {tolerance} s"
            )
            reason_vi = (
                f"{_upper_first(_name_vi(loser))} lúc {when} bị bỏ: {_name_vi(winner)} "
                f"đã chiếm giờ ({_why_vi(winner, loser)}) và không có "
                f"khoảng trống trong {tolerance} giây"
            )
        else:
            outcome = "shifted"
            new_start = self.moment(placement.start_ms)
            moved = f"{new_start:%Y-%m-%d %H:%M:%S}"
            reason = (
                f"{_upper_first(_name(loser))} at {when} moved to {moved}: "
                f"{_name(winner)} holds the time ({why})"
            )
            reason_vi = (
                f"{_upper_first(_name_vi(loser))} lúc {when} dời sang {moved}: "
                f"{_name_vi(winner)} đã chiếm giờ ({_why_vi(winner, loser)})"
            )
        return Conflict(
            station_id=_ANY_STATION,
            rule_id=loser.id,
            occurrence_start=occurrence,
            winner_rule_id=winner.id,
            winner_occurrence_start=winner_at,
            outcome=outcome,
            new_start=new_start,
            reason=reason,
            reason_vi=reason_vi,
        )


DRAFT_RULE_ID = 0
"""The id a preview gives the rule being drafted (not saved yet; saved rules start at 1)."""


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _name(spec: RuleSpec) -> str:
    if spec.id == DRAFT_RULE_ID:
        return f"the rule being drafted ({spec.title})"
    return f"rule {spec.id} ({spec.title})"


def _name_vi(spec: RuleSpec) -> str:
    if spec.id == DRAFT_RULE_ID:
        return f"quy tắc đang soạn ({spec.title})"
    return f"lịch {spec.id} ({spec.title})"


def _why(winner: RuleSpec, loser: RuleSpec) -> str:
    if winner.id == loser.id:
        return "an earlier occurrence of the same rule"
    if winner.priority != loser.priority:
        return (
            f"priority {winner.priority} ({tier_of(winner.priority)}) over "
            f"{loser.priority} ({tier_of(loser.priority)})"
        )
    if winner.order != loser.order:
        return f"same priority, order {winner.order} before {loser.order}"
    if winner.created_at != loser.created_at:
        return "same priority and order, created earlier"
    return "same priority, order and creation time, lower rule id"


def _why_vi(winner: RuleSpec, loser: RuleSpec) -> str:
    if winner.id == loser.id:
        return "lần phát trước của cùng lịch"
    if winner.priority != loser.priority:
        return f"mức ưu tiên {winner.priority} cao hơn {loser.priority}"
    if winner.order != loser.order:
        return f"cùng mức ưu tiên, thứ tự {winner.order} trước {loser.order}"
    if winner.created_at != loser.created_at:
        return "cùng mức ưu tiên và thứ tự, tạo trước"
    return "cùng mức ưu tiên, thứ tự và thời điểm tạo, mã lịch nhỏ hơn"


def _plan_group(
    ctx: _Context, rule_ids: tuple[int, ...], day: date
) -> tuple[tuple[PlannedItem, ...], list[Conflict]]:
    """The timeline of one station group (one rule set) for ``day``."""
    tz = ctx.tz
    day_start = _midnight_ms(day, tz)
    day_end = _midnight_ms(day + timedelta(days=1), tz)
    max_reach = max(ctx.rules[rule_id].reach_ms for rule_id in rule_ids)
    span = 1 + -(-max_reach // _DAY_MS)  # days: one more than the longest reach
    back = ahead = span
    while True:
        first_day, last_day = day - timedelta(days=back), day + timedelta(days=ahead)
        window_start = _midnight_ms(first_day, tz)
        window_end = _midnight_ms(last_day + timedelta(days=1), tz)
        blocks = sorted(
            (occ, rule_id)
            for rule_id in rule_ids
            for occ in ctx.occurrences_ms(rule_id, first_day, last_day)
        )
        relevant = [
            cluster
            for cluster in _clusters(blocks, ctx.rules)
            if cluster[0] < day_end and cluster[1] > day_start
        ]
        open_left = bool(relevant) and relevant[0][0] < window_start + max_reach
        open_right = bool(relevant) and relevant[-1][1] > window_end
        grow_left = open_left and back < span + MAX_LOOKAROUND_DAYS
        grow_right = open_right and ahead < span + MAX_LOOKAROUND_DAYS
        if not (grow_left or grow_right):
            break
        back += 1 if grow_left else 0
        ahead += 1 if grow_right else 0

    items: list[PlannedItem] = []
    conflicts: list[Conflict] = []
    for _, _, cluster in relevant:
        for placement in ctx.resolve(cluster):
            start = placement.start_ms
            if start is not None and day_start <= start < day_end:
                items.extend(ctx.items(placement.block, start))
            if placement.winner is not None and day_start <= placement.block[0] < day_end:
                conflicts.append(ctx.conflict(placement))
    items.sort(key=lambda item: (item.start_at, item.item_id))
    return tuple(items), conflicts


def _build(ctx: _Context, day: date, stations: Iterable[int] | None) -> DayPlan:
    wanted = None if stations is None else frozenset(stations)
    per_station: dict[int, list[int]] = defaultdict(list)
    for rule_id in sorted(ctx.rules):
        for station_id in ctx.rules[rule_id].spec.station_ids:
            if wanted is None or station_id in wanted:
                per_station[station_id].append(rule_id)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for station_id, applicable in per_station.items():
        groups[tuple(applicable)].append(station_id)

    timelines: dict[int, tuple[PlannedItem, ...]] = {}
    station_conflicts: list[Conflict] = []
    for rule_ids, members in groups.items():
        items, conflicts = _plan_group(ctx, rule_ids, day)
        for station_id in members:
            timelines[station_id] = items
        for c in conflicts:
            station_conflicts.extend(replace(c, station_id=station_id) for station_id in members)
    for station_id in wanted or ():
        timelines.setdefault(station_id, ())
    station_conflicts.sort(key=lambda c: (c.station_id, c.occurrence_start, c.rule_id))
    return DayPlan(
        day=day,
        stations={station_id: timelines[station_id] for station_id in sorted(timelines)},
        conflicts=tuple(station_conflicts),
        skipped_rules=ctx.skipped,
    )


def build_day(
    rules: Iterable[RuleSpec],
    programmes: Iterable[ProgrammeSpec],
    day: date,
    tz: tzinfo,
    *,
    stations: Iterable[int] | None = None,
) -> DayPlan:
    """Every station's items starting on local ``day`` in ``tz``, and that day's conflicts.

    ``stations`` limits the plan to those stations (each gets an entry, empty if no rule
    targets it); by default every station some rule targets is planned.
    """
    return _build(_Context(rules, programmes, tz), day, stations)


def build_days(
    rules: Iterable[RuleSpec],
    programmes: Iterable[ProgrammeSpec],
    days: Iterable[date],
    tz: tzinfo,
    *,
    stations: Iterable[int] | None = None,
) -> list[DayPlan]:
    """:func:`build_day` for several days sharing one set of caches (e.g. today and
    tomorrow for the ``desired`` window).  Items are never repeated across the days."""
    ctx = _Context(rules, programmes, tz)
    wanted = None if stations is None else tuple(stations)
    return [_build(ctx, day, wanted) for day in days]


def preview(
    rule: RuleSpec,
    programme: ProgrammeSpec,
    existing_rules: Iterable[RuleSpec],
    programmes: Iterable[ProgrammeSpec],
    day_range: tuple[date, date],
    tz: tzinfo,
) -> RulePreview:
    """What ``rule`` (new, or an edit of an existing rule with the same id) would do over
    ``day_range`` (first and last local day, inclusive), without saving anything.

    ``occurrences`` are the instants the recurrence yields; ``items`` the rule's items
    per targeted station once clashes are resolved; ``suffered`` its own occurrences that
    are shifted or dropped; ``caused`` the other rules' conflicts that appear or change
    because of it (compared with the plan without it).  Raises :class:`InvalidRule` if
    the rule itself is invalid and :class:`InvalidInput` for a bad day range.
    """
    first, last = day_range
    if last < first:
        raise InvalidInput(
            f"The preview ends ({last}) before it starts ({first})",
            field="day_range",
            message_vi=f"Khoảng xem trước kết thúc ({last}) trước khi bắt đầu ({first})",
        )
    count = (last - first).days + 1
    if count > MAX_PREVIEW_DAYS:
        raise InvalidInput(
            f"Preview at most {MAX_PREVIEW_DAYS} days at a time, got {count}",
            field="day_range",
            message_vi=f"Chỉ xem trước tối đa {MAX_PREVIEW_DAYS} ngày mỗi lần",
        )
    validate_rule(rule, programme)
    others = [existing for existing in existing_rules if existing.id != rule.id]
    catalogue = {p.id: p for p in programmes if p.id != programme.id}
    catalogue[programme.id] = programme
    days = [first + timedelta(days=offset) for offset in range(count)]
    targets = sorted(rule.station_ids)
    with_rule = build_days([*others, rule], catalogue.values(), days, tz, stations=targets)
    without = build_days(others, catalogue.values(), days, tz, stations=targets)

    start = localize(datetime.combine(first, time()), tz)
    end = localize(datetime.combine(last + timedelta(days=1), time()), tz)
    fired = tuple(occurrences(rule.recurrence, start, end, tz))
    items: dict[int, list[PlannedItem]] = {station_id: [] for station_id in targets}
    for plan in with_rule:
        for station_id, planned in plan.stations.items():
            items[station_id].extend(item for item in planned if item.rule_id == rule.id)
    before = {
        (c.station_id, c.rule_id, c.occurrence_start, c.outcome, c.new_start)
        for plan in without
        for c in plan.conflicts
    }
    suffered: list[Conflict] = []
    caused: list[Conflict] = []
    for plan in with_rule:
        for c in plan.conflicts:
            if c.rule_id == rule.id:
                suffered.append(c)
            elif (
                c.station_id,
                c.rule_id,
                c.occurrence_start,
                c.outcome,
                c.new_start,
            ) not in before:
                caused.append(c)
    return RulePreview(
        rule_id=rule.id,
        occurrences=fired,
        items={station_id: tuple(found) for station_id, found in items.items()},
        suffered=tuple(suffered),
        caused=tuple(caused),
        plans=tuple(with_rule),
    )
