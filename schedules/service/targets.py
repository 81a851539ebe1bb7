"""A rule's targets: stored in three association tables (stations, groups, areas, by
id) and resolved when a plan is built, through the registry's one target rule
(`stations.targets`).  The rule also keeps a snapshot of the names as last saved, so a
deleted target is reported (``lost_targets``) instead of vanishing silently.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from kernel.errors import InvalidInput, PermissionDeniedError
from kernel.security import Principal
from schedules.models import ScheduleRule, rule_areas, rule_groups, rule_stations
from schedules.schemas import TargetsIn
from stations import targets as registry
from stations.targets import TargetResolver, TargetRows

#: (table, target column) per kind, in the order of `TargetRows.ids()`
_TABLES = (
    (rule_stations, rule_stations.c.station_id),
    (rule_groups, rule_groups.c.group_id),
    (rule_areas, rule_areas.c.area_id),
)


def look_up(session: Session, targets: TargetsIn) -> TargetRows:
    """The ids the request names (a 422 on the first unknown name)."""
    names = registry.TargetNames(
        stations=targets.stations, groups=targets.groups, areas=targets.areas
    )
    return registry.look_up(session, names)


def check_targets(
    resolver: TargetResolver, rows: TargetRows, *, principal: Principal | None
) -> frozenset[int]:
    """The enabled stations the targets reach; none is a 422, and a caller whose areas
    do not hold every one of them (or a named station or area) is refused."""
    if rows.empty:
        raise InvalidInput(
            "Name at least one station, group or area",
            field="targets",
            message_vi="Cần chọn ít nhất một trạm, nhóm hoặc địa bàn",
        )
    ids = resolver.resolve(*rows.ids())
    if not ids:
        raise InvalidInput(
            "The targets resolve to no (enabled) station",
            field="targets",
            message_vi="Không có trạm nào (đang hoạt động) thuộc đối tượng đã chọn",
        )
    if principal is not None and principal.scope is not None and not principal.city_wide:
        scope = principal.scope
        if (
            any(area_id not in scope for _, _, area_id in rows.stations)
            or any(area_id not in scope for area_id, _ in rows.areas)
            or any(resolver.area_of[s] not in scope for s in ids)
        ):
            raise PermissionDeniedError(
                "the targets include stations outside your areas",
                message_vi="Đối tượng phát có trạm nằm ngoài phạm vi được giao",
            )
    return ids


def set_targets(session: Session, rule: ScheduleRule, rows: TargetRows) -> None:
    """Replace the rule's association rows (the rule must have an id) and its snapshot."""
    for table, _ in _TABLES:
        session.execute(delete(table).where(table.c.rule_id == rule.id))
    for (table, column), ids in zip(_TABLES, rows.ids(), strict=True):
        if ids:
            session.execute(insert(table), [{"rule_id": rule.id, column.key: i} for i in ids])
    rule.target_names = {
        "stations": [[s, n] for s, n, _ in rows.stations],
        "groups": [[g, n] for g, n in rows.groups],
        "areas": [[a, n] for a, n in rows.areas],
    }


def target_ids(
    session: Session, rule_ids: Collection[int]
) -> dict[int, tuple[list[int], list[int], list[int]]]:
    """The stored target ids of rules: (stations, groups, areas) per rule (three queries)."""
    found: dict[int, tuple[list[int], list[int], list[int]]] = {
        rid: ([], [], []) for rid in rule_ids
    }
    if rule_ids:
        ids = list(rule_ids)
        for slot, (table, column) in enumerate(_TABLES):
            for rid, target in session.execute(
                select(table.c.rule_id, column).where(table.c.rule_id.in_(ids))
            ):
                found[rid][slot].append(target)
    return found


@dataclass
class RuleTargets:
    """The targets stored for a rule: ids and current names."""

    stations: list[tuple[int, str]] = field(default_factory=list)
    groups: list[tuple[int, str]] = field(default_factory=list)
    areas: list[tuple[int, str]] = field(default_factory=list)

    def ids(self) -> tuple[list[int], list[int], list[int]]:
        return (
            [i for i, _ in self.stations],
            [i for i, _ in self.groups],
            [i for i, _ in self.areas],
        )

    def as_request(self) -> TargetsIn:
        return TargetsIn(
            stations=[n for _, n in self.stations],
            groups=[n for _, n in self.groups],
            areas=[n for _, n in self.areas],
        )


def rule_targets(session: Session, rule_ids: Collection[int]) -> dict[int, RuleTargets]:
    """The stored targets of rules, with their current names, sorted by name."""
    stored = target_ids(session, rule_ids)
    names = registry.names(
        session,
        stations={s for t in stored.values() for s in t[0]},
        groups={g for t in stored.values() for g in t[1]},
        areas={a for t in stored.values() for a in t[2]},
    )
    out: dict[int, RuleTargets] = {}
    for rid, (stations, groups, areas) in stored.items():

        def named(ids: list[int], by_id: dict[int, str]) -> list[tuple[int, str]]:
            return sorted(((i, by_id[i]) for i in ids if i in by_id), key=lambda p: p[1])

        out[rid] = RuleTargets(
            stations=named(stations, names.stations),
            groups=named(groups, names.groups),
            areas=named(areas, names.areas),
        )
    return out


def current_targets(session: Session, rule: ScheduleRule) -> TargetsIn:
    """The rule's targets as a request would name them."""
    return rule_targets(session, [rule.id])[rule.id].as_request()


def lost_targets(rule: ScheduleRule, current: RuleTargets) -> list[str]:
    """Targets saved with the rule that no longer exist (deleted station/group/area)."""
    saved = rule.target_names or {}
    lost: list[str] = []
    for kind, label in (("stations", "station"), ("groups", "group"), ("areas", "area")):
        present = {i for i, _ in getattr(current, kind)}
        for entry in saved.get(kind, []):
            if entry[0] not in present:
                lost.append(f"{label}:{entry[1]}")
    return lost
