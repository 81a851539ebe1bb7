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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from broadcaster.auth.models import User, user_areas
from kernel.approval import Approval
from kernel.errors import InvalidInput
from kernel.text import fold
from schedules.models import (
    Programme,
    ScheduleRule,
    StreamSource,
    rule_areas,
    rule_stations,
)
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

UNITS = (AreaLevel.WARD, AreaLevel.COMMUNE)
OWNED: tuple[type[Group | Programme | StreamSource | ScheduleRule], ...] = (
    Group,
    Programme,
    StreamSource,
    ScheduleRule,
)


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
    rules: list[str] = field(default_factory=list)
    owned: dict[str, list[str]] = field(default_factory=dict)  # kind: [names]
    pending_approvals: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stations": self.stations,
            "groups": sorted(set(self.groups)),
            "accounts": sorted(set(self.accounts)),
            "rules": sorted(set(self.rules)),
            "owned": {k: sorted(set(v)) for k, v in self.owned.items()},
            "pending_approvals": sorted(set(self.pending_approvals)),
            "retired": self.retired,
            "created": self.created,
        }


# --- checking ----------------------------------------------------------------------------


def check(session: Session, plan: Plan) -> None:
    """Refuse a plan that names unknown units, leaves a station without an area, makes a
    cycle or overlaps another applied plan of the same date: every error listed."""
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
            Reorganisation.status == ReorgStatus.APPLIED,
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

    for i, unit in enumerate(plan.create):
        if unit.code in level:
            errors.append((f"create[{i}]: {unit.code!r} exists", f"Đơn vị {unit.code} đã tồn tại"))
            continue
        if unit.parent is not None and not known(unit.parent, f"create[{i}].parent"):
            continue
        level[unit.code] = unit.level
        parent[unit.code] = unit.parent
    for i, step in enumerate(plan.steps):
        where = f"steps[{i}]"
        if step.kind == "rename":
            known(step.unit, where)
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


def apply(session: Session, plan: Plan, *, by: str) -> tuple[Reorganisation, Effect]:
    """Check and apply `plan` (flushed, not committed); answer the record and its effect."""
    check(session, plan)
    effect = Effect()
    before = unit_of_station(session)
    reorg = Reorganisation(
        name=plan.name,
        effective=plan.effective,
        status=ReorgStatus.APPLIED,
        plan=plan.model_dump(mode="json"),
        undo={},
        created_by=by[:64],
    )
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
        created.stat_code = unit.stat_code
        created.valid_from = plan.effective
        effect.created.append(unit.code)
    undo["created"] = list(effect.created)

    for step in plan.steps:
        if step.kind == "rename":
            target = area(step.unit or "")
            remember(target)
            target.name = step.name or target.name
            target.name_folded = fold(target.name)
            if step.stat_code:
                target.stat_code = step.stat_code
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
    reorg.undo = undo
    session.flush()
    return reorg, effect


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
                effect.rules.append(str(owner))
            else:
                effect.groups.append(str(owner))
    # the old unit's automatic group stays (same stations) but is no longer automatic
    for group in session.scalars(
        select(Group).where(Group.auto.is_(True), Group.gid == source.code)
    ):
        undo["groups"][str(group.id)] = True
        group.auto = False
        effect.groups.append(group.gid)
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
    # objects owned by the old unit: owned by the new one
    for model in OWNED:
        owned: list[Group | Programme | StreamSource | ScheduleRule] = list(
            session.scalars(select(model).where(model.owner_area_id == source.id))
        )
        for obj in owned:
            obj_id = obj.id
            undo["owners"].append([model.__tablename__, obj_id, source.id])
            label = getattr(obj, "title", None) or getattr(obj, "name", None) or str(obj_id)
            effect.owned.setdefault(model.__tablename__, []).append(str(label))
            if isinstance(obj, ScheduleRule) and obj.approval is Approval.DRAFT:
                effect.pending_approvals.append(obj.title)
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
    """What `apply` would do, without changing anything."""
    savepoint = session.begin_nested()
    try:
        _, effect = apply(session, plan, by=by)
        return effect.as_dict()
    finally:
        savepoint.rollback()


# --- reading history ---------------------------------------------------------------------


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

    def as_of(self, day: dt.date) -> Callable[[int, dt.date], int | None]:
        """Every play read by the units of `day` (old units before a change, new after)."""
        return lambda station_id, _: self.at(station_id, day)


def units_on(session: Session, day: dt.date) -> dict[int, int | None]:
    """Each station's ward/commune id on `day`."""
    history = UnitHistory(session)
    return {station_id: history.at(station_id, day) for station_id in history.today}


def list_plans(session: Session) -> list[Reorganisation]:
    return list(session.scalars(select(Reorganisation).order_by(Reorganisation.effective)))


def iter_codes(values: Iterable[str]) -> list[str]:
    return [v.strip() for v in values if v.strip()]


# --- undoing -----------------------------------------------------------------------------

_TABLES = {t.name: t for t in (rule_areas, rule_stations, group_areas, group_stations, user_areas)}
_MODELS = {m.__tablename__: m for m in OWNED}


def undo(session: Session, reorg_id: int, *, today: dt.date) -> Reorganisation:
    """Put everything back as it was before the plan (only before its effective date)."""
    reorg = session.get(Reorganisation, reorg_id)
    if reorg is None:
        raise InvalidInput(f"unknown reorganisation {reorg_id}", message_vi="Không có phương án")
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
    create: list[NewUnit] = []
    steps: list[Step] = []
    merges: dict[str, list[str]] = {}
    errors: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):
        cell = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
        action = cell["action"].lower()
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
                        hamlets=iter_codes(cell["hamlets"].split(";")),
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
    merge_steps = [Step(kind="merge", sources=src, into=into) for into, src in merges.items()]
    return Plan(name=name, effective=effective, create=create, steps=merge_steps + steps)
