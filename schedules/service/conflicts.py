"""What the plan does to each rule: the day's conflicts, and a preview of a rule before
it is saved."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel.approval import Approval
from kernel.db import utcnow
from kernel.errors import DomainError, InvalidInput
from kernel.security import Principal
from schedules.builder import DRAFT_RULE_ID, MAX_PREVIEW_DAYS, build_days, preview
from schedules.models import ScheduleRule
from schedules.plans import Conflict, PlannedItem
from schedules.schemas import (
    ConflictGroup,
    PreviewPlacement,
    PreviewRead,
    RuleCreate,
    SkippedRuleRead,
)
from schedules.service.planning import plan_inputs
from schedules.service.rules import check_body, list_rules
from schedules.service.scope import reaches_owner
from schedules.service.targets import current_targets
from stations import service as stations
from stations.targets import TargetResolver


def _rule_column(session: Session, column: Any) -> dict[int, Any]:
    return {rid: value for rid, value in session.execute(select(ScheduleRule.id, column))}


def _group_conflicts(
    conflicts: Iterable[Conflict],
    titles: Mapping[int, str],
    sids: Mapping[int, str],
    *,
    keep: Callable[[int], bool] = lambda _: True,
) -> list[ConflictGroup]:
    grouped: dict[tuple[Any, ...], list[Conflict]] = defaultdict(list)
    for c in conflicts:
        if keep(c.station_id):
            key = (c.occurrence_start, c.rule_id, c.winner_rule_id, c.outcome, c.new_start)
            grouped[key].append(c)
    out: list[ConflictGroup] = []
    for key in sorted(grouped, key=lambda k: (k[0], k[1], k[2], k[3], k[4] or k[0])):
        members = grouped[key]
        first = members[0]
        stations_ = sorted(sids.get(c.station_id, str(c.station_id)) for c in members)
        out.append(
            ConflictGroup(
                rule_id=first.rule_id,
                rule_title=titles.get(first.rule_id, f"#{first.rule_id}"),
                occurrence_start=first.occurrence_start,
                winner_rule_id=first.winner_rule_id,
                winner_rule_title=titles.get(first.winner_rule_id, f"#{first.winner_rule_id}"),
                winner_occurrence_start=first.winner_occurrence_start,
                outcome=first.outcome,
                new_start=first.new_start,
                reason=first.reason,
                reason_vi=first.reason_vi,
                station_count=len(stations_),
                stations=stations_,
            )
        )
    return out


def conflict_report(
    session: Session, day: date, tz: tzinfo, *, principal: Principal
) -> tuple[list[ConflictGroup], list[SkippedRuleRead]]:
    """The day's conflicts on the caller's stations, grouped by occurrence (which rule
    beat which, shifted or dropped, on how many stations), and the rules the builder
    had to leave out (invalid programme, no station left to play on)."""
    resolver = TargetResolver(session)
    rules, programmes = plan_inputs(session, resolver=resolver)
    plan = build_days(rules, programmes.values(), [day], tz)[0]
    scope = principal.scope
    in_scope: Callable[[int], bool] = lambda _: True  # noqa: E731
    if scope is not None:
        in_scope = stations.station_ids_in(session, scope).__contains__
    titles = _rule_column(session, ScheduleRule.title)
    owners = _rule_column(session, ScheduleRule.owner_area_id)
    involved = {c.station_id for c in plan.conflicts if in_scope(c.station_id)}
    groups = _group_conflicts(
        plan.conflicts, titles, stations.station_sids(session, involved), keep=in_scope
    )
    skipped = [
        SkippedRuleRead(
            rule_id=s.rule_id,
            rule_title=titles.get(s.rule_id, ""),
            field=s.field,
            reason=s.reason,
            reason_vi=s.reason_vi,
        )
        for s in plan.skipped_rules
        if principal.city_wide or reaches_owner(principal, owners.get(s.rule_id))
    ]
    for rule in rules:
        if not rule.station_ids and (
            principal.city_wide or reaches_owner(principal, owners.get(rule.id))
        ):
            skipped.append(
                SkippedRuleRead(
                    rule_id=rule.id,
                    rule_title=rule.title,
                    field="targets",
                    reason="the targets resolve to no enabled station (deleted or disabled?)",
                    reason_vi="Không còn trạm nào (đang hoạt động) thuộc đối tượng phát",
                )
            )
    skipped.sort(key=lambda s: s.rule_id)
    return groups, skipped


def preview_rule(
    session: Session,
    data: RuleCreate,
    *,
    principal: Principal,
    tz: tzinfo,
    day_from: date,
    day_to: date,
    replaces: ScheduleRule | None = None,
) -> PreviewRead:
    """What saving ``data`` (as a new rule, or as ``replaces``) would do, saving nothing."""
    if day_to < day_from:
        raise InvalidInput(
            f"'to' ({day_to}) is before 'from' ({day_from})",
            field=("query", "to"),
            message_vi="Ngày kết thúc trước ngày bắt đầu",
        )
    if (day_to - day_from).days + 1 > MAX_PREVIEW_DAYS:
        raise InvalidInput(
            f"preview at most {MAX_PREVIEW_DAYS} days at a time",
            field=("query", "to"),
            message_vi=f"Chỉ xem trước tối đa {MAX_PREVIEW_DAYS} ngày",
        )
    resolver = TargetResolver(session)
    checked = check_body(
        session,
        data,
        principal=principal,
        rule_id=replaces.id if replaces is not None else DRAFT_RULE_ID,
        created_at=replaces.created_at if replaces is not None else utcnow(),
        resolver=resolver,
    )
    existing, programmes = plan_inputs(session, resolver=resolver)
    result = preview(
        checked.spec, checked.programme, existing, programmes.values(), (day_from, day_to), tz
    )
    placements: dict[tuple[dt.datetime, dt.datetime, dt.datetime, bool], int] = defaultdict(int)
    for items in result.items.values():
        blocks: dict[dt.datetime, list[PlannedItem]] = defaultdict(list)
        for item in items:
            blocks[item.occurrence_start].append(item)
        for occurrence, block in blocks.items():
            key = (occurrence, block[0].start_at, block[-1].end_at, block[0].shifted)
            placements[key] += 1
    titles = _rule_column(session, ScheduleRule.title)
    titles[checked.spec.id] = data.title
    involved = {c.station_id for c in (*result.suffered, *result.caused)}
    sids = stations.station_sids(session, involved)
    return PreviewRead(
        date_from=day_from,
        date_to=day_to,
        duration_ms=checked.programme.duration_ms,
        station_count=len(checked.spec.station_ids),
        occurrences=list(result.occurrences),
        placements=[
            PreviewPlacement(
                occurrence_start=k[0],
                start_at=k[1],
                end_at=k[2],
                shifted=k[3],
                station_count=count,
            )
            for k, count in sorted(placements.items())
        ],
        suffered=_group_conflicts(result.suffered, titles, sids),
        caused=_group_conflicts(result.caused, titles, sids),
    )


def rule_body(session: Session, rule: ScheduleRule) -> RuleCreate:
    """A saved rule as the body that would create it (for previews of it)."""
    return RuleCreate(
        title=rule.title,
        programme_id=rule.programme_id,
        targets=current_targets(session, rule),
        tier=rule.tier,
        order=rule.order,
        volume=rule.volume,
        recurrence=rule.recurrence,
        shift_tolerance_s=rule.shift_tolerance_s,
        slot_s=rule.slot_s,
    )


@dataclass(frozen=True)
class PendingBlock:
    """Where a rule waiting for approval would play if it were approved now."""

    rule_id: int
    title: str
    priority: int
    start_at: dt.datetime
    end_at: dt.datetime
    shifted: bool
    stations: int


def pending_blocks(
    session: Session,
    *,
    principal: Principal,
    station_ids: Collection[int],
    day_from: date,
    day_to: date,
    tz: tzinfo,
    limit: int = 200,
) -> list[PendingBlock]:
    """The blocks the enabled rules waiting for approval (in the principal's scope) would
    place on `station_ids` from `day_from` to `day_to`, each previewed against the plan
    as it is (what approving that one rule would do).  A draft that cannot be previewed
    (programme or targets no longer valid) is left out: approving it fails anyway."""
    chosen = set(station_ids)
    drafts, _ = list_rules(
        session, scope=principal.scope, approval=Approval.DRAFT, enabled=True, limit=limit
    )
    if not drafts or not chosen:
        return []
    resolver = TargetResolver(session)
    existing, programmes = plan_inputs(session, resolver=resolver)
    out: list[PendingBlock] = []
    for rule in drafts:
        try:
            checked = check_body(
                session,
                rule_body(session, rule),
                principal=None,
                rule_id=rule.id,
                created_at=rule.created_at,
                resolver=resolver,
            )
            if not chosen & checked.spec.station_ids:
                continue
            result = preview(
                checked.spec,
                checked.programme,
                existing,
                programmes.values(),
                (day_from, day_to),
                tz,
            )
        except DomainError:
            continue
        blocks: dict[tuple[dt.datetime, dt.datetime, bool], set[int]] = defaultdict(set)
        for station_id, items in result.items.items():
            if station_id not in chosen or not items:
                continue
            per: dict[dt.datetime, list[PlannedItem]] = defaultdict(list)
            for item in items:
                per[item.occurrence_start].append(item)
            for block in per.values():
                blocks[(block[0].start_at, block[-1].end_at, block[0].shifted)].add(station_id)
        out.extend(
            PendingBlock(
                rule_id=rule.id,
                title=rule.title,
                priority=checked.spec.priority,
                start_at=start,
                end_at=end,
                shifted=shifted,
                stations=len(sids),
            )
            for (start, end, shifted), sids in blocks.items()
        )
    return out
