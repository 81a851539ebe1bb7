"""Administrative reorganisation as one operation: merge units, rename, move hamlets,
dissolve a level (a city whose wards then hang under the province).

A `Plan` is checked as a whole first: every error is listed and nothing changes.  It is
then applied in the caller's transaction (the boundary commits through
`kernel.changes.commit_change`); `preview` applies it inside a savepoint and rolls back,
so the preview is exactly what applying would do.  History is kept: a retired unit keeps
its row (``valid_to``), the lineage says which unit became which, and `StationUnit`
rows say which ward/commune each station belonged to over time, so reports over a period
can be read by the old units or by the new ones.  A plan can be undone until its
effective date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from audio_library.models import MediaAsset
from broadcaster.alarms.models import AlarmSubscription
from broadcaster.auth.models import User, user_areas
from kernel.approval import Approval
from kernel.errors import InvalidInput
from kernel.security import Role
from kernel.text import fold
from schedules.models import (
    Programme,
    ScheduleRule,
    StreamSource,
    rule_areas,
    rule_groups,
    rule_stations,
)
from schedules.service.targets import target_ids
from stations import service as stations
from stations.models import (
    Area,
    AreaLevel,
    AreaLineage,
    Group,
    Reorganisation,
    ReorgStatus,
    Station,
    StationUnit,
    group_areas,
    group_stations,
)
from stations.schemas import AreaCreate
from stations.targets import TargetResolver

UNITS = (AreaLevel.WARD, AreaLevel.COMMUNE)
Owned = Group | Programme | StreamSource | ScheduleRule | MediaAsset
#: what a unit owns, passed to its heir (media assets too: the new unit's operators and
#: approvers reach them)
OWNED: tuple[type[Owned], ...] = (Group, Programme, StreamSource, ScheduleRule, MediaAsset)


class NewUnit(BaseModel):  # the registry checks code and name (`AreaCreate`)
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    level: AreaLevel
    parent: str | None = None
    stat_code: str | None = Field(default=None, max_length=16)


class Step(BaseModel):
    """``merge`` (sources → into), ``rename`` (unit → name), ``move`` (hamlets → into),
    ``dissolve`` (unit; its children and stations → into)."""

    kind: str = Field(pattern="^(merge|rename|move|dissolve)$")
    sources: list[str] = []
    into: str | None = None
    unit: str | None = None
    name: str | None = None
    stat_code: str | None = None
    hamlets: list[str] = []


class Plan(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    effective: dt.date
    create: list[NewUnit] = []
    steps: list[Step] = []
    # rules (by key) that end with the old structure, e.g. the dissolved city's relay step
    end_rules: list[str] = []


class ReorgRefused(InvalidInput):
    """A plan that cannot be applied; `errors` lists every reason."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(
            "; ".join(e for e, _ in errors),
            field="plan",
            message_vi="Phương án sắp xếp không hợp lệ: " + "; ".join(v for _, v in errors),
        )
        self.errors = errors


@dataclass
class Effect:
    """What a plan moves (the preview, and the audit entry's ``after``)."""

    stations: dict[str, list[str | None]] = field(default_factory=dict)  # sid: [old, new]
    groups: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)  # alarm subscriptions moved
    rules: list[str] = field(default_factory=list)
    owned: dict[str, list[str]] = field(default_factory=dict)  # kind: [names]
    counts: dict[str, int] = field(default_factory=dict)  # kind: objects moved
    # drafts the heir's approvers inherit: (kind, id, old unit) -> entry
    pending: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    # what the move steps change in the reach of current rules and accounts' scopes
    # (`MoveReach`): one entry each, with the sids no longer reached and newly reached
    rule_reach: list[dict[str, Any]] = field(default_factory=list)
    account_scopes: list[dict[str, Any]] = field(default_factory=list)

    def waiting(
        self, obj: ScheduleRule | MediaAsset, old: Area, new: Area | None, *, why: str
    ) -> None:
        """`obj`, waiting for approval, passes from `old` to `new`: ``owned`` (its owner
        becomes `new`, whose approvers now decide) or ``target`` (a rule aimed at `old`
        is carried over to the same stations, still waiting)."""
        kind = obj.__tablename__
        entry = self.pending.setdefault(
            (kind, obj.id, old.code),
            {
                "kind": kind,
                "id": obj.id,
                "title": obj.title,
                "old": old.code,
                "new": new.code if new is not None else None,
                "owned": False,
                "target": False,
            },
        )
        entry[why] = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "stations": self.stations,
            "groups": sorted(set(self.groups)),
            "accounts": sorted(set(self.accounts)),
            "subscriptions": sorted(set(self.subscriptions)),
            "rules": sorted(set(self.rules)),
            "owned": {k: sorted(set(v)) for k, v in self.owned.items()},
            "counts": dict(sorted(self.counts.items())),
            "pending_approvals": [self.pending[k] for k in sorted(self.pending)],
            "retired": self.retired,
            "created": self.created,
            "rule_reach": self.rule_reach,
            "account_scopes": self.account_scopes,
        }


# --- checking ----------------------------------------------------------------------------


def check(session: Session, plan: Plan, *, exclude: int | None = None) -> None:
    """Refuse a plan that names unknown units, leaves a station without an area, makes a
    cycle or overlaps another applied or scheduled plan of the same date (other than
    `exclude`, the scheduled record being applied): every error listed."""
    errors: list[tuple[str, str]] = []
    areas = {a.code: a for a in session.scalars(select(Area))}
    level = {code: a.level for code, a in areas.items()}
    parent: dict[str, str | None] = {
        a.code: (areas_by_id(areas)[a.parent_id].code if a.parent_id else None)
        for a in areas.values()
    }
    retired: set[str] = {c for c, a in areas.items() if a.valid_to is not None}
    overlap = session.scalar(
        select(Reorganisation.name).where(
            Reorganisation.effective == plan.effective,
            Reorganisation.status.in_((ReorgStatus.APPLIED, ReorgStatus.SCHEDULED)),
            Reorganisation.id != (exclude or 0),
        )
    )
    if overlap is not None:
        errors.append(
            (
                f"another reorganisation ({overlap}) takes effect on {plan.effective}",
                f"Đã có phương án khác ({overlap}) có hiệu lực ngày {plan.effective:%d/%m/%Y}",
            )
        )

    def known(code: str | None, where: str) -> bool:
        if code is None:
            errors.append((f"{where}: a unit is required", f"{where}: thiếu đơn vị"))
            return False
        if code not in level or code in retired:
            errors.append((f"{where}: unknown unit {code!r}", f"{where}: không có đơn vị {code}"))
            return False
        return True

    def national(unit_level: AreaLevel, code: str | None, where: str) -> None:
        """A province's or ward/commune's code must be in the national list."""
        try:
            stations.national_stat_code(unit_level, code)
        except InvalidInput as exc:
            errors.append((f"{where}: {exc}", exc.message_vi or str(exc)))

    for i, unit in enumerate(plan.create):
        if unit.code in level:
            errors.append((f"create[{i}]: {unit.code!r} exists", f"Đơn vị {unit.code} đã tồn tại"))
            continue
        if unit.parent is not None and not known(unit.parent, f"create[{i}].parent"):
            continue
        national(unit.level, unit.stat_code, f"create[{i}]")
        level[unit.code] = unit.level
        parent[unit.code] = unit.parent
    for i, step in enumerate(plan.steps):
        where = f"steps[{i}]"
        if step.kind == "rename":
            if known(step.unit, where) and step.stat_code:
                national(level[step.unit or ""], step.stat_code, where)
            if not step.name:
                errors.append((f"{where}: a new name is required", f"{where}: thiếu tên mới"))
            continue
        optional = step.kind == "dissolve" and step.into is None  # children become roots
        # an unknown heir is listed, and the step's own units are still checked
        into_ok = optional or known(step.into, f"{where}.into")
        into = step.into
        if step.kind == "move":
            for hamlet in step.hamlets:
                if known(hamlet, where) and into_ok:
                    if level[hamlet] is not AreaLevel.HAMLET:
                        errors.append(
                            (f"{where}: {hamlet!r} is not a hamlet", f"{hamlet} không phải ấp")
                        )
                    parent[hamlet] = into
            continue
        sources = step.sources if step.kind == "merge" else [step.unit or ""]
        for source in sources:
            if not known(source or None, where) or not into_ok:
                continue
            if source == into:
                errors.append(
                    (f"{where}: {source!r} merges into itself", f"{source} gộp vào chính nó")
                )
                continue
            for child, up in list(parent.items()):
                if up == source:
                    parent[child] = into
            retired.add(source)
            stations_left = session.scalar(
                select(Station.sid).join(Area).where(Area.code == source).limit(1)
            )
            if into is None and stations_left is not None:
                errors.append(
                    (
                        f"{where}: station {stations_left} would be left without an area",
                        f"Trạm {stations_left} sẽ không thuộc địa bàn nào",
                    )
                )
    for code, up in parent.items():
        if code in retired:
            continue
        seen = {code}
        cursor = up
        while cursor is not None:
            if cursor in seen:
                errors.append((f"the plan makes a cycle at {code!r}", f"Vòng lặp tại {code}"))
                break
            seen.add(cursor)
            cursor = parent.get(cursor)
        if up is None and level[code] not in (AreaLevel.PROVINCE, AreaLevel.CITY):
            errors.append(
                (f"{code!r} would be left without a parent", f"{code} không còn cấp trên")
            )
            orphans = session.scalars(select(Station.sid).join(Area).where(Area.code == code))
            errors.extend(
                (
                    f"station {sid} would be left without an area ({code!r} has no parent)",
                    f"Trạm {sid} sẽ không thuộc địa bàn nào",
                )
                for sid in orphans
            )
        elif up is not None and level.get(up) is not None and level[up].rank >= level[code].rank:
            errors.append(
                (
                    f"{code!r} ({level[code].value}) cannot sit under {up!r} ({level[up].value})",
                    f"{code} không thể thuộc {up}",
                )
            )
    for key in plan.end_rules:
        if session.scalar(select(ScheduleRule.id).where(ScheduleRule.key == key)) is None:
            errors.append((f"unknown rule {key!r}", f"Không có lịch {key}"))
    if errors:
        raise ReorgRefused(errors)


def areas_by_id(areas: Mapping[str, Area]) -> dict[int, Area]:
    return {a.id: a for a in areas.values()}


# --- applying ----------------------------------------------------------------------------


def unit_of_station(session: Session) -> dict[int, int | None]:
    """Each station's ward/commune id (None if it lies in none), today's structure."""
    parents = dict(session.execute(select(Area.id, Area.parent_id)).all())
    levels = dict(session.execute(select(Area.id, Area.level)).all())
    out: dict[int, int | None] = {}
    for station_id, area_id in session.execute(select(Station.id, Station.area_id)):
        cursor: int | None = area_id
        while cursor is not None and levels[cursor] not in UNITS:
            cursor = parents[cursor]
        out[station_id] = cursor
    return out


def apply(
    session: Session, plan: Plan, *, by: str, record: Reorganisation | None = None
) -> tuple[Reorganisation, Effect]:
    """Check and apply `plan` now (flushed, not committed), into `record` when a scheduled
    one comes due; answer the record and its effect."""
    check(session, plan, exclude=record.id if record is not None else None)
    effect = Effect()
    before = unit_of_station(session)
    reorg = record or Reorganisation(
        name=plan.name,
        effective=plan.effective,
        plan=plan.model_dump(mode="json"),
        created_by=by[:64],
    )
    reorg.status = ReorgStatus.APPLIED
    reorg.undo = {}
    session.add(reorg)
    session.flush()
    undo: dict[str, Any] = {"areas": {}, "stations": {}, "links": [], "owners": [], "groups": {}}

    def area(code: str) -> Area:
        found = session.scalar(select(Area).where(Area.code == code))
        assert found is not None  # checked
        return found

    def remember(a: Area) -> None:
        undo["areas"].setdefault(
            str(a.id),
            {
                "name": a.name,
                "parent_id": a.parent_id,
                "stat_code": a.stat_code,
                "valid_to": a.valid_to.isoformat() if a.valid_to else None,
            },
        )

    for unit in plan.create:  # through the registry: a new ward gets its automatic group
        created = stations.create_area(
            session,
            AreaCreate(code=unit.code, name=unit.name, level=unit.level, parent_code=unit.parent),
        )
        # checked against the national list; not against the units this plan retires,
        # whose codes the new ones often take (Phường 1's 27694 is Phường Long An's)
        created.stat_code = stations.national_stat_code(unit.level, unit.stat_code)
        created.valid_from = plan.effective
        effect.created.append(unit.code)
    undo["created"] = list(effect.created)

    moving = any(step.kind == "move" for step in plan.steps)
    moves = MoveReach(session, plan) if moving else None
    for step in plan.steps:
        if moves is not None and step.kind == "move":
            moves.before()
        if step.kind == "rename":
            target = area(step.unit or "")
            remember(target)
            target.name = step.name or target.name
            target.name_folded = fold(target.name)
            if step.stat_code:
                target.stat_code = stations.national_stat_code(target.level, step.stat_code)
            lineage(session, reorg, target, target, "rename")
        elif step.kind == "move":
            into = area(step.into or "")
            for code in step.hamlets:
                hamlet = area(code)
                remember(hamlet)
                hamlet.parent_id = into.id
                lineage(session, reorg, hamlet, into, "move")
        else:
            heir = area(step.into) if step.into else None
            sources = step.sources if step.kind == "merge" else [step.unit or ""]
            for code in sources:
                _retire(session, reorg, area(code), heir, step.kind, effect, undo, remember)
        session.flush()
        if moves is not None and step.kind == "move":
            moves.after()

    for rule in session.scalars(
        select(ScheduleRule).where(ScheduleRule.key.in_(plan.end_rules), ScheduleRule.enabled)
    ):
        rule.enabled = False
        undo.setdefault("ended", []).append(rule.id)
        effect.rules.append(rule.key or str(rule.id))
    after = unit_of_station(session)
    names = dict(session.execute(select(Area.id, Area.code)).all())
    sids = dict(session.execute(select(Station.id, Station.sid)).all())
    for station_id, old in before.items():
        new = after.get(station_id)
        if old == new:
            continue
        effect.stations[sids[station_id]] = [
            names.get(old) if old else None,
            names.get(new) if new else None,
        ]
        _history(session, reorg, station_id, old, new, plan.effective, undo)
    if moves is not None:
        moves.record(effect, sids)
    reorg.undo = undo
    session.flush()
    return reorg, effect


Reach = dict[int, frozenset[int]]  # rule or account id: station ids


class MoveReach:
    """What the plan's move steps change in who reaches which stations.

    A hamlet that moves takes its stations from one ward/commune to another: a rule that
    targets the old unit (by area, or through a group listing it, such as its automatic
    group) no longer reaches them and one targeting the new unit starts to; an account
    scoped to the old unit loses them and one scoped to the new unit gains them.  Each
    move step is bracketed (`before`, `after`): the targets are resolved by the one
    target rule (`stations.targets.TargetResolver`) on either side of the step, inside
    the caller's transaction (the preview's savepoint), and only the differences the
    moves make are kept (not those of the merges, whose targets are carried over).

    The rules that count are the **current** ones: enabled, not among the rules the plan
    ends (``end_rules``) and not over before the plan's effective date (``ends_on`` empty
    or on/after it), whatever their approval state (a rule waiting for approval reaches
    the new stations once approved).  A rule reaches enabled stations only, as when the
    plans are built.  The accounts that count are those with a scope (every role but
    administrator, whose scope is everything): a scope holds every station, enabled or
    not, in the account's areas and below them.
    """

    def __init__(self, session: Session, plan: Plan) -> None:
        self.session = session
        ended = set(plan.end_rules)
        self.rules = {
            rule.id: rule
            for rule in session.scalars(
                select(ScheduleRule)
                .where(
                    ScheduleRule.enabled.is_(True),
                    or_(ScheduleRule.ends_on.is_(None), ScheduleRule.ends_on >= plan.effective),
                )
                .order_by(ScheduleRule.id)
            )
            if rule.key is None or rule.key not in ended
        }
        self.users = {
            user.id: user for user in session.scalars(select(User).where(User.role != Role.ADMIN))
        }
        # the reach before the first move, and as the moves alone leave it
        self.first: tuple[Reach, Reach] = ({}, {})
        self.now: tuple[Reach, Reach] = ({}, {})
        self._before: tuple[Reach, Reach] = ({}, {})

    def _reach(self) -> tuple[Reach, Reach]:
        """Each current rule's stations and each account's scope, now."""
        self.session.flush()
        targets = target_ids(self.session, list(self.rules))
        resolver = TargetResolver(self.session)
        resolver.load_groups({g for t in targets.values() for g in t[1]})
        rules = {rid: resolver.resolve(*targets[rid]) for rid in self.rules}
        areas: dict[int, list[int]] = {uid: [] for uid in self.users}
        for uid, area_id in self.session.execute(
            select(user_areas.c.user_id, user_areas.c.area_id)
        ):
            if uid in areas:
                areas[uid].append(area_id)
        scope = TargetResolver(self.session, enabled_only=False)
        return rules, {uid: scope.resolve((), (), ids) for uid, ids in areas.items()}

    def before(self) -> None:
        """Called just before a move step."""
        self._before = self._reach()
        for first, now, seen in zip(self.first, self.now, self._before, strict=True):
            for key, ids in seen.items():
                first.setdefault(key, ids)
                now.setdefault(key, ids)

    def after(self) -> None:
        """Called just after it: what it took away and added, on top of earlier moves."""
        for now, old, new in zip(self.now, self._before, self._reach(), strict=True):
            for key, ids in old.items():
                now[key] = (now[key] - (ids - new[key])) | (new[key] - ids)

    def record(self, effect: Effect, sids: Mapping[int, str]) -> None:
        """The rules and accounts whose reach the moves change, into `effect`."""

        def diff(key: int, which: int) -> tuple[list[str], list[str]] | None:
            old, new = self.first[which][key], self.now[which][key]
            if old == new:
                return None
            return sorted(sids[i] for i in old - new), sorted(sids[i] for i in new - old)

        for rid, rule in self.rules.items():
            if (change := diff(rid, 0)) is not None:
                effect.rule_reach.append(
                    {
                        "id": rid,
                        "rule": rule.key or rule.title or str(rid),
                        "title": rule.title,
                        "programme": rule.programme.title,
                        "lost": change[0],
                        "gained": change[1],
                    }
                )
        for uid, user in self.users.items():
            if (change := diff(uid, 1)) is not None:
                effect.account_scopes.append(
                    {
                        "username": user.username,
                        "role": user.role.value,
                        "lost": change[0],
                        "gained": change[1],
                    }
                )
        effect.rule_reach.sort(key=lambda r: (r["rule"], r["id"]))
        effect.account_scopes.sort(key=lambda a: a["username"])


def lineage(session: Session, reorg: Reorganisation, old: Area, new: Area, kind: str) -> None:
    session.add(
        AreaLineage(
            reorganisation_id=reorg.id,
            old_area_id=old.id,
            new_area_id=new.id,
            kind=kind,
            effective=reorg.effective,
        )
    )


def _retire(
    session: Session,
    reorg: Reorganisation,
    source: Area,
    into: Area | None,
    kind: str,
    effect: Effect,
    undo: dict[str, Any],
    remember: Any,
) -> None:
    """`source` ends: its children and stations go to `into`; whatever targeted it
    targets the same stations (its children and its own stations); scopes and owned
    objects pass to `into`."""
    remember(source)
    children = list(session.scalars(select(Area).where(Area.parent_id == source.id)))
    for child in children:
        remember(child)
        child.parent_id = into.id if into else None
    own = list(session.scalars(select(Station).where(Station.area_id == source.id)))
    for station in own:
        undo["stations"].setdefault(str(station.id), station.area_id)
        station.area_id = into.id if into is not None else station.area_id
    session.flush()
    # targets (rules, groups) naming the old unit: its children and its own stations
    for link, owner_col, station_link in (
        (rule_areas, "rule_id", rule_stations),
        (group_areas, "group_id", group_stations),
    ):
        owners = list(session.scalars(select(link.c[owner_col]).where(link.c.area_id == source.id)))
        for owner in owners:
            undo["links"].append([link.name, owner_col, owner, "area_id", source.id, "removed"])
            session.execute(
                delete(link).where(link.c[owner_col] == owner, link.c.area_id == source.id)
            )
            have = set(session.scalars(select(link.c.area_id).where(link.c[owner_col] == owner)))
            for child in children:
                if child.id not in have:
                    session.execute(insert(link).values({owner_col: owner, "area_id": child.id}))
                    undo["links"].append(
                        [link.name, owner_col, owner, "area_id", child.id, "added"]
                    )
            has = set(
                session.scalars(
                    select(station_link.c.station_id).where(station_link.c[owner_col] == owner)
                )
            )
            for station in own:
                if station.id not in has:
                    session.execute(
                        insert(station_link).values({owner_col: owner, "station_id": station.id})
                    )
                    undo["links"].append(
                        [station_link.name, owner_col, owner, "station_id", station.id, "added"]
                    )
            if link is rule_areas:
                rule = session.get_one(ScheduleRule, owner)
                effect.rules.append(rule.key or rule.title or str(owner))
                if rule.approval is Approval.DRAFT:
                    effect.waiting(rule, source, into, why="target")
            else:
                effect.groups.append(session.get_one(Group, owner).gid)
    # the old unit's automatic group stays (same stations) but is no longer automatic;
    # draft rules aimed at it are carried over unchanged, still waiting for approval
    for group in list(
        session.scalars(select(Group).where(Group.auto.is_(True), Group.gid == source.code))
    ):
        undo["groups"][str(group.id)] = True
        group.auto = False
        effect.groups.append(group.gid)
        for rule in session.scalars(
            select(ScheduleRule)
            .join(rule_groups, rule_groups.c.rule_id == ScheduleRule.id)
            .where(rule_groups.c.group_id == group.id, ScheduleRule.approval == Approval.DRAFT)
        ):
            effect.waiting(rule, source, into, why="target")
    # accounts scoped to the old unit: scoped to the new one
    users = list(
        session.scalars(select(user_areas.c.user_id).where(user_areas.c.area_id == source.id))
    )
    for user_id in users:
        session.execute(
            delete(user_areas).where(
                user_areas.c.user_id == user_id, user_areas.c.area_id == source.id
            )
        )
        undo["links"].append(["user_areas", "user_id", user_id, "area_id", source.id, "removed"])
        if into is not None:
            exists = session.scalar(
                select(user_areas.c.user_id).where(
                    user_areas.c.user_id == user_id, user_areas.c.area_id == into.id
                )
            )
            if exists is None:
                session.execute(insert(user_areas).values(user_id=user_id, area_id=into.id))
                undo["links"].append(
                    ["user_areas", "user_id", user_id, "area_id", into.id, "added"]
                )
        effect.accounts.append(session.get_one(User, user_id).username)
    # technicians' alarm subscriptions for the old unit: for the new one (the same
    # stations, so nobody stops being told); with no heir they stay on the old unit
    if into is not None:
        for subscription in session.scalars(
            select(AlarmSubscription).where(AlarmSubscription.area_id == source.id)
        ):
            undo.setdefault("subscriptions", []).append([subscription.id, source.id])
            subscription.area_id = into.id
            effect.subscriptions.append(subscription.name)
    # objects owned by the old unit: owned by the new one
    for model in OWNED:
        owned: list[Owned] = list(
            session.scalars(select(model).where(model.owner_area_id == source.id))
        )
        for obj in owned:
            obj_id = obj.id
            undo["owners"].append([model.__tablename__, obj_id, source.id])
            label = getattr(obj, "title", None) or getattr(obj, "name", None) or str(obj_id)
            effect.owned.setdefault(model.__tablename__, []).append(str(label))
            effect.counts[model.__tablename__] = effect.counts.get(model.__tablename__, 0) + 1
            if isinstance(obj, ScheduleRule | MediaAsset) and obj.approval is Approval.DRAFT:
                effect.waiting(obj, source, into, why="owned")
        session.execute(
            update(model)
            .where(model.owner_area_id == source.id)
            .values(owner_area_id=into.id if into else None)
        )
    source.valid_to = reorg.effective
    effect.retired.append(source.code)
    if into is not None:
        lineage(session, reorg, source, into, kind)


def _history(
    session: Session,
    reorg: Reorganisation,
    station_id: int,
    old: int | None,
    new: int | None,
    effective: dt.date,
    undo: dict[str, Any],
) -> None:
    """Close the station's open unit row (or write one for its old unit) and open one
    for the new unit from `effective`."""
    current = session.scalar(
        select(StationUnit).where(
            StationUnit.station_id == station_id, StationUnit.valid_to.is_(None)
        )
    )
    if current is not None:
        current.valid_to = effective
        undo.setdefault("closed", []).append(current.id)
    periods: list[tuple[int | None, dt.date | None, dt.date | None]] = []
    if current is None:
        periods.append((old, None, effective))
    periods.append((new, effective, None))
    for area_id, start, end in periods:
        if area_id is not None:
            session.add(
                StationUnit(
                    station_id=station_id,
                    area_id=area_id,
                    valid_from=start,
                    valid_to=end,
                    reorganisation_id=reorg.id,
                )
            )


def preview(session: Session, plan: Plan, *, by: str) -> dict[str, Any]:
    """What `apply` would do on its effective date, without changing anything: the plans
    scheduled before that date are applied first (a later plan may name their units)."""
    savepoint = session.begin_nested()
    try:
        for earlier in scheduled(session, before=plan.effective):
            try:
                with session.begin_nested():
                    apply(session, Plan.model_validate(earlier.plan), by=by, record=earlier)
            except ReorgRefused:
                pass  # it would fail on its own date; this plan is checked without it
        _, effect = apply(session, plan, by=by)
        return effect.as_dict()
    finally:
        savepoint.rollback()
        session.expire_all()


def scheduled(session: Session, *, before: dt.date | None = None) -> list[Reorganisation]:
    """The plans waiting for their date (those dated before `before`), oldest date first."""
    query = select(Reorganisation).where(Reorganisation.status == ReorgStatus.SCHEDULED)
    if before is not None:
        query = query.where(Reorganisation.effective < before)
    return list(session.scalars(query.order_by(Reorganisation.effective, Reorganisation.id)))


def submit(
    session: Session, plan: Plan, *, by: str, today: dt.date
) -> tuple[Reorganisation, dict[str, Any]]:
    """Apply `plan` now if its effective date has come (`today`, local), else check it
    (every error listed) and keep it scheduled for the worker to apply on that date."""
    if plan.effective <= today:
        applied, effect = apply(session, plan, by=by)
        return applied, effect.as_dict()
    moves = preview(session, plan, by=by)
    record = Reorganisation(
        name=plan.name,
        effective=plan.effective,
        status=ReorgStatus.SCHEDULED,
        plan=plan.model_dump(mode="json"),
        undo={"preview": moves},
        created_by=by[:64],
    )
    session.add(record)
    session.flush()
    return record, moves


@dataclass
class Outcome:
    """A scheduled plan that came due: applied (`effect`) or refused (`errors`)."""

    record: Reorganisation
    effect: dict[str, Any] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


def apply_next_due(session: Session, *, today: dt.date) -> Outcome | None:
    """Apply the oldest scheduled plan whose effective date is `today` or earlier, in a
    savepoint (flushed; the caller commits and audits it); None when none is due.  A plan
    the structure no longer allows is marked `FAILED` with its errors, nothing of it
    applied.  Idempotent: an applied plan is no longer scheduled."""
    due = scheduled(session, before=today + dt.timedelta(days=1))
    if not due:
        return None
    record = due[0]
    try:
        with session.begin_nested():
            _, effect = apply(
                session, Plan.model_validate(record.plan), by=record.created_by, record=record
            )
    except ReorgRefused as exc:
        session.expire_all()
        record.status = ReorgStatus.FAILED
        record.undo = {"errors": [list(e) for e in exc.errors]}
        session.flush()
        return Outcome(record, errors=exc.errors)
    return Outcome(record, effect=effect.as_dict())


# --- reading history ---------------------------------------------------------------------


Units = Literal["today", "then"] | dt.date
"""Which units a figure by ward/commune reads after a reorganisation: today's, the unit
each station belonged to at the time (``then``), or the units of one day."""


def parse_units(value: str) -> Units:
    """An API's ``units`` parameter: ``today``, ``then`` or a date (YYYY-MM-DD)."""
    if value == "today":
        return "today"
    if value == "then":
        return "then"
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"units: invalid date {value!r}",
            field=("query", "units"),
            message_vi="Ngày không hợp lệ",
        ) from exc


def unit_choice(value: str | None) -> Literal["today", "then"]:
    """A page's ``don_vi`` choice, read leniently: anything but ``then`` is today's."""
    return "then" if value == "then" else "today"


class UnitHistory:
    """Which ward/commune each station belonged to on a given day: its `StationUnit`
    row covering the day, else the unit its area lies in today."""

    def __init__(self, session: Session) -> None:
        self.today = unit_of_station(session)
        self.rows: dict[int, list[tuple[dt.date | None, dt.date | None, int]]] = {}
        for row in session.scalars(select(StationUnit).order_by(StationUnit.id)):
            self.rows.setdefault(row.station_id, []).append(
                (row.valid_from, row.valid_to, row.area_id)
            )

    def at(self, station_id: int, day: dt.date) -> int | None:
        for start, end, area_id in self.rows.get(station_id, ()):
            if (start is None or start <= day) and (end is None or day < end):
                return area_id
        return self.today.get(station_id)

    def changes(self, since: dt.datetime, until: dt.datetime, tz: ZoneInfo) -> list[dt.datetime]:
        """The local midnights strictly inside [since, until) at which a station changed
        unit (where a period spanning a reorganisation is cut to read it by the units of
        each part's time)."""
        days = {start for rows in self.rows.values() for start, _, _ in rows if start}
        cuts = (dt.datetime.combine(day, dt.time(0), tz) for day in days)
        return sorted(c for c in cuts if since < c < until)

    def periods(
        self, area_ids: Collection[int], tz: ZoneInfo
    ) -> tuple[set[int], list[tuple[int, dt.datetime | None, dt.datetime | None]]]:
        """The stations that have a unit history, and the periods (station id, from, to;
        local midnights, None: open) in which one of `area_ids` was their unit."""
        out: list[tuple[int, dt.datetime | None, dt.datetime | None]] = []
        for station_id, rows in self.rows.items():
            for start, end, area_id in rows:
                if area_id in area_ids:
                    out.append(
                        (
                            station_id,
                            dt.datetime.combine(start, dt.time(0), tz) if start else None,
                            dt.datetime.combine(end, dt.time(0), tz) if end else None,
                        )
                    )
        return set(self.rows), out

    def as_of(self, day: dt.date) -> Callable[[int, dt.date], int | None]:
        """Every play read by the units of `day` (old units before a change, new after)."""
        return lambda station_id, _: self.at(station_id, day)


def former_subtree(session: Session, area_ids: Collection[int]) -> set[int]:
    """`area_ids` and the areas that lay below them before applied reorganisations
    moved them away (a dissolved city's former wards, communes and hamlets)."""
    moved: list[tuple[int, int]] = []  # (area, its parent before the move)
    for undo_data in session.scalars(
        select(Reorganisation.undo).where(Reorganisation.status == ReorgStatus.APPLIED)
    ):
        for area_id, old in (undo_data or {}).get("areas", {}).items():
            if old.get("parent_id") is not None:
                moved.append((int(area_id), int(old["parent_id"])))
    found = set(area_ids)
    while True:
        more = {area for area, parent in moved if parent in found} - found
        if not more:
            return found
        more = stations.subtree_ids(session, more) | more
        found |= more


def units_on(session: Session, day: dt.date) -> dict[int, int | None]:
    """Each station's ward/commune id on `day`."""
    history = UnitHistory(session)
    return {station_id: history.at(station_id, day) for station_id in history.today}


def list_plans(session: Session) -> list[Reorganisation]:
    return list(session.scalars(select(Reorganisation).order_by(Reorganisation.effective)))


def get_plan(session: Session, reorg_id: int) -> Reorganisation | None:
    return session.get(Reorganisation, reorg_id)


def iter_codes(values: Iterable[str]) -> list[str]:
    return [v.strip() for v in values if v.strip()]


# --- undoing -----------------------------------------------------------------------------

_TABLES = {t.name: t for t in (rule_areas, rule_stations, group_areas, group_stations, user_areas)}
_MODELS = {m.__tablename__: m for m in OWNED}


def undo(session: Session, reorg_id: int, *, today: dt.date) -> Reorganisation:
    """Put everything back as it was before the plan (only before its effective date);
    a scheduled plan is cancelled."""
    reorg = session.get(Reorganisation, reorg_id)
    if reorg is None:
        raise InvalidInput(f"unknown reorganisation {reorg_id}", message_vi="Không có phương án")
    if reorg.status is ReorgStatus.SCHEDULED:  # not applied yet: cancelled
        reorg.status = ReorgStatus.UNDONE
        session.flush()
        return reorg
    if reorg.status is not ReorgStatus.APPLIED or today >= reorg.effective:
        raise InvalidInput(
            "only an applied reorganisation can be undone, before its effective date",
            message_vi="Chỉ hoàn tác được phương án đã áp dụng, trước ngày có hiệu lực",
        )
    data = reorg.undo
    for table, owner_col, owner, col, value, what in reversed(data.get("links", [])):
        link = _TABLES[table]
        if what == "added":
            session.execute(delete(link).where(link.c[owner_col] == owner, link.c[col] == value))
        else:
            session.execute(insert(link).values({owner_col: owner, col: value}))
    for subscription_id, area_id in data.get("subscriptions", []):
        session.execute(
            update(AlarmSubscription)
            .where(AlarmSubscription.id == subscription_id)
            .values(area_id=area_id)
        )
    for table, obj_id, owner_area in data.get("owners", []):
        model = _MODELS[table]
        session.execute(update(model).where(model.id == obj_id).values(owner_area_id=owner_area))
    if data.get("ended"):
        session.execute(
            update(ScheduleRule).where(ScheduleRule.id.in_(data["ended"])).values(enabled=True)
        )
    for group_id in data.get("groups", {}):
        session.execute(update(Group).where(Group.id == int(group_id)).values(auto=True))
    for station_id, area_id in data.get("stations", {}).items():
        session.execute(
            update(Station).where(Station.id == int(station_id)).values(area_id=area_id)
        )
    for area_id, old in data.get("areas", {}).items():
        valid_to = dt.date.fromisoformat(old["valid_to"]) if old["valid_to"] else None
        session.execute(
            update(Area)
            .where(Area.id == int(area_id))
            .values(
                name=old["name"],
                name_folded=fold(old["name"]),
                parent_id=old["parent_id"],
                stat_code=old["stat_code"],
                valid_to=valid_to,
            )
        )
    session.execute(delete(StationUnit).where(StationUnit.reorganisation_id == reorg.id))
    session.execute(delete(AreaLineage).where(AreaLineage.reorganisation_id == reorg.id))
    if data.get("closed"):
        session.execute(
            update(StationUnit).where(StationUnit.id.in_(data["closed"])).values(valid_to=None)
        )
    for code in reversed(data.get("created", [])):
        stations.delete_area(session, code)
    reorg.status = ReorgStatus.UNDONE
    session.flush()
    session.expire_all()
    return reorg


# --- the decision as a spreadsheet -------------------------------------------------------

CSV_COLUMNS = ("action", "old", "new", "name", "level", "parent", "stat_code", "hamlets")


def plan_from_csv(text: str, *, name: str, effective: dt.date) -> Plan:
    """A decision given as CSV rows (`CSV_COLUMNS`): ``create`` (new, name, level, parent,
    stat_code), ``merge`` (old → new), ``move`` (hamlets ``a;b`` → new), ``rename`` (old,
    name), ``dissolve`` (old → new)."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    return plan_from_rows(rows, name=name, effective=effective)


def plan_from_rows(
    rows: Iterable[Mapping[str, str | None]], *, name: str, effective: dt.date, first: int = 2
) -> Plan:
    """The decision's rows (the spreadsheet's, or the dashboard form's), numbered from
    `first` in the errors (a spreadsheet's first row is its header); blank rows skipped."""
    create: list[NewUnit] = []
    steps: list[Step] = []
    merges: dict[str, list[str]] = {}
    errors: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=first):
        cell = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
        action = cell["action"].lower()
        if not any(cell.values()):
            continue
        try:
            if action == "create":
                create.append(
                    NewUnit(
                        code=cell["new"],
                        name=cell["name"],
                        level=AreaLevel(cell["level"]),
                        parent=cell["parent"] or None,
                        stat_code=cell["stat_code"] or None,
                    )
                )
            elif action == "merge":
                merges.setdefault(cell["new"], []).append(cell["old"])
            elif action == "move":
                steps.append(
                    Step(
                        kind="move",
                        hamlets=iter_codes(cell["hamlets"].replace(",", ";").split(";")),
                        into=cell["new"],
                    )
                )
            elif action == "rename":
                steps.append(Step(kind="rename", unit=cell["old"], name=cell["name"]))
            elif action == "dissolve":
                steps.append(Step(kind="dissolve", unit=cell["old"], into=cell["new"] or None))
            else:
                errors.append(
                    (f"line {line}: unknown action {action!r}", f"Dòng {line}: thao tác không rõ")
                )
        except ValueError as exc:
            errors.append((f"line {line}: {exc}", f"Dòng {line}: dữ liệu không hợp lệ"))
    if errors:
        raise ReorgRefused(errors)
    if not create and not merges and not steps:
        raise ReorgRefused([("the decision has no rows", "Phương án chưa có dòng nào")])
    merge_steps = [Step(kind="merge", sources=src, into=into) for into, src in merges.items()]
    try:
        return Plan(name=name, effective=effective, create=create, steps=merge_steps + steps)
    except ValueError as exc:  # the decision's name
        raise ReorgRefused([(str(exc), "Tên phương án cần 1–200 ký tự")]) from exc
