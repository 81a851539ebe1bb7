"""Targets: the stations, groups and areas a schedule rule or a broadcast names.

One rule for what a target reaches, used by schedules, broadcasts, the group API and
the ``desired`` config alike:

- an **area** reaches every station in it and in every area below it;
- a **group** reaches its listed stations and every station its listed areas reach; the
  built-in group ``all`` reaches every station;
- only enabled stations are targeted (`TargetResolver(enabled_only=False)` counts every
  station, for the registry's own views).

`TargetResolver` loads the stations and the area tree once and memoises each area
subtree, each group and each distinct target set, so the whole fleet (10,000 stations,
hundreds of rules) costs a handful of queries.  `look_up` turns target *names* into ids,
answering `InvalidInput` on the first unknown one.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from kernel.db import among
from kernel.errors import InvalidInput
from kernel.signals import SIGNAL_ID, PlanSignal
from stations.models import ALL_GROUP, Area, Group, Station, group_areas, group_stations

__all__ = [
    "FLEETS",
    "Fleet",
    "FleetCache",
    "FleetRead",
    "Names",
    "TargetNames",
    "TargetResolver",
    "TargetRows",
    "insert_per_station",
    "look_up",
    "names",
    "resolve",
    "resolve_names",
    "station_groups",
]

_LABELS = {"stations": "station", "groups": "group", "areas": "area"}


@dataclass(frozen=True)
class TargetNames:
    """Stations (sids), groups (gids) and areas (codes) as a person names them."""

    stations: Sequence[str] = ()
    groups: Sequence[str] = ()
    areas: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class TargetRows:
    """What the names stand for: ``(id, name)`` pairs, stations with their area id."""

    stations: list[tuple[int, str, int]]
    groups: list[tuple[int, str]]
    areas: list[tuple[int, str]]

    @property
    def empty(self) -> bool:
        return not (self.stations or self.groups or self.areas)

    def ids(self) -> tuple[list[int], list[int], list[int]]:
        return (
            [s for s, _, _ in self.stations],
            [g for g, _ in self.groups],
            [a for a, _ in self.areas],
        )


@dataclass(frozen=True, slots=True)
class Fleet:
    """What `TargetResolver` reads before it resolves anything: the stations it may
    reach (their area and, ``with_sids``, their sid) and the area tree.  Never changed
    once loaded, so one may serve many resolvers (`FleetCache`)."""

    by_area: Mapping[int, Sequence[int]]
    area_of: Mapping[int, int]
    sid_of: Mapping[int, str]
    stations: frozenset[int]
    parent_of: Mapping[int, int | None]
    children: Mapping[int, Sequence[int]]
    #: the codes of the root areas (each the whole city or province)
    roots: frozenset[str] = frozenset()

    @classmethod
    def load(cls, session: Session, *, enabled_only: bool = True, with_sids: bool = False) -> Fleet:
        by_area: dict[int, list[int]] = defaultdict(list)
        area_of: dict[int, int] = {}
        sid_of: dict[int, str] = {}
        query = select(Station.id, Station.area_id, Station.sid if with_sids else literal(""))
        if enabled_only:
            query = query.where(Station.enabled.is_(True))
        for station_id, area_id, sid in session.execute(query):
            by_area[area_id].append(station_id)
            area_of[station_id] = area_id
            if with_sids:
                sid_of[station_id] = sid
        children: dict[int, list[int]] = defaultdict(list)
        parent_of: dict[int, int | None] = {}
        roots: set[str] = set()
        for area_id, parent_id, code in session.execute(select(Area.id, Area.parent_id, Area.code)):
            parent_of[area_id] = parent_id
            if parent_id is not None:
                children[parent_id].append(area_id)
            else:
                roots.add(code)
        return cls(
            by_area=dict(by_area),
            area_of=area_of,
            sid_of=sid_of,
            stations=frozenset(area_of),
            parent_of=parent_of,
            children=dict(children),
            roots=frozenset(roots),
        )


class TargetResolver:
    """Resolves targets (by id) to station ids for the whole fleet at once.

    Built per use (a request, a plan build): loads the stations and the area tree once
    (or takes them from a `Fleet`: `FLEETS`, `resolve_names`); each area subtree and
    each group is resolved once and memoised, and identical target sets share one
    frozenset.
    """

    def __init__(
        self,
        session: Session,
        *,
        enabled_only: bool = True,
        with_sids: bool = False,
        fleet: Fleet | None = None,
    ) -> None:
        self.session = session
        if fleet is None:
            fleet = Fleet.load(session, enabled_only=enabled_only, with_sids=with_sids)
        # read-only from here on (a `Fleet` may be shared by every request of the process)
        self.by_area: Mapping[int, Sequence[int]] = fleet.by_area
        self.area_of: Mapping[int, int] = fleet.area_of
        #: each station's sid (``with_sids``: what a broadcast's targets are sent and
        #: answered by, read with the rest instead of once more by id)
        self.sid_of: Mapping[int, str] = fleet.sid_of
        self.stations = fleet.stations
        self.children: Mapping[int, Sequence[int]] = fleet.children
        #: every area's parent (None: a root, the whole city)
        self.parent_of: Mapping[int, int | None] = fleet.parent_of
        self._areas: dict[int, frozenset[int]] = {}
        self._groups: dict[int, frozenset[int]] = {}
        self._sets: dict[tuple[tuple[int, ...], ...], frozenset[int]] = {}

    def area(self, area_id: int) -> frozenset[int]:
        found = self._areas.get(area_id)
        if found is None:
            ids: set[int] = set()
            stack, seen = [area_id], set()
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                ids.update(self.by_area.get(current, ()))
                stack.extend(self.children.get(current, ()))
            found = frozenset(ids)
            self._areas[area_id] = found
        return found

    def load_groups(self, group_ids: Collection[int]) -> None:
        """Resolve the given groups in three queries (done before `resolve`)."""
        wanted = [g for g in set(group_ids) if g not in self._groups]
        if not wanted:
            return
        members: dict[int, set[int]] = {g: set() for g in wanted}
        everyone: set[int] = set()
        for gid, key, builtin in self.session.execute(
            select(Group.id, Group.gid, Group.builtin).where(Group.id.in_(wanted))
        ):
            if builtin and key == ALL_GROUP:
                everyone.add(gid)
        for gid, station_id in self.session.execute(
            select(group_stations.c.group_id, group_stations.c.station_id).where(
                group_stations.c.group_id.in_(wanted)
            )
        ):
            if station_id in self.stations:
                members[gid].add(station_id)
        for gid, area_id in self.session.execute(
            select(group_areas.c.group_id, group_areas.c.area_id).where(
                group_areas.c.group_id.in_(wanted)
            )
        ):
            members[gid] |= self.area(area_id)
        for gid in wanted:
            self._groups[gid] = self.stations if gid in everyone else frozenset(members[gid])

    def group(self, group_id: int) -> frozenset[int]:
        if group_id not in self._groups:
            self.load_groups([group_id])
        return self._groups[group_id]

    def resolve(
        self, stations: Iterable[int], groups: Iterable[int], areas: Iterable[int]
    ) -> frozenset[int]:
        key = (tuple(sorted(stations)), tuple(sorted(groups)), tuple(sorted(areas)))
        found = self._sets.get(key)
        if found is None:
            self.load_groups(key[1])
            ids: set[int] = {s for s in key[0] if s in self.stations}
            for group_id in key[1]:
                ids |= self.group(group_id)
            for area_id in key[2]:
                ids |= self.area(area_id)
            found = frozenset(ids)
            self._sets[key] = found
        return found


def _named(*columns: Any) -> Any:
    """``columns`` (the id, the name, ...) of the rows whose name (the second column) is
    among the bound ``names``."""
    return select(*columns).where(columns[1].in_(bindparam("names", expanding=True)))


#: `look_up`'s statements, built once: a broadcast's way out builds none of its own
#: (a statement built per call costs its construction and its cache key each time)
_LOOK_UP = {
    "stations": _named(Station.id, Station.sid, Station.area_id),
    "groups": _named(Group.id, Group.gid),
    "areas": _named(Area.id, Area.code),
}


def look_up(
    session: Session,
    targets: TargetNames,
    *,
    field: str = "targets",
    areas_read: Mapping[str, int | None] | None = None,
) -> TargetRows:
    """The ids the names stand for (one query per kind); an unknown name is an
    `InvalidInput` on its entry (``targets.groups.2``).  ``areas_read``: the area ids of
    the names' codes, read already (`FleetCache.read`; None: a code that names no area),
    so the areas are not read again."""

    def rows(kind: str, wanted: Sequence[str]) -> dict[str, Any]:
        """The columns of `_LOOK_UP` (the id, the name, ...) of each wanted name, by name."""
        found: dict[str, Any] = {}
        if kind == "areas" and areas_read is not None:
            found = {code: (i, code) for code, i in areas_read.items() if i is not None}
        elif wanted:
            for row in session.execute(_LOOK_UP[kind], {"names": sorted(set(wanted))}):
                found[row[1]] = tuple(row)
        for index, name in enumerate(wanted):
            if name not in found:
                raise InvalidInput(
                    f"unknown {_LABELS[kind]} {name!r}",
                    field=(field, kind, index),
                    message_vi=f"Không tìm thấy {name}",
                )
        return found

    stations: dict[str, tuple[int, str, int]] = rows("stations", targets.stations)
    groups: dict[str, tuple[int, str]] = rows("groups", targets.groups)
    areas: dict[str, tuple[int, str]] = rows("areas", targets.areas)
    return TargetRows(
        stations=[stations[n] for n in dict.fromkeys(targets.stations)],
        groups=[groups[n] for n in dict.fromkeys(targets.groups)],
        areas=[areas[n] for n in dict.fromkeys(targets.areas)],
    )


class Reached(NamedTuple):
    """A station a broadcast's names reach: its id, sid and area (a plain row, not the
    ORM entity: a city-wide emergency reads thousands of them on its way out)."""

    id: int
    sid: str
    area_id: int


class Resolution(NamedTuple):
    """What `resolve_names` found: the stations, the rows the names stand for, and the
    resolver (the area tree) it used."""

    stations: list[Reached]
    rows: TargetRows
    resolver: TargetResolver
    #: the values of `resolve_names`'s ``also`` (None when they were not read)
    also: tuple[Any, ...] | None = None


def resolve_names(
    session: Session,
    targets: TargetNames,
    *,
    field: str = "targets",
    enabled_only: bool = True,
    also: tuple[Any, ...] = (),
) -> Resolution:
    """`resolve`, with what it read on the way (a broadcast's route needs the areas).

    The enabled fleet comes from `FLEETS` (read again only when the registry changed),
    and so, for names without groups, does the sorted list of the stations they reach:
    a city- or province-wide emergency does not read and sort its thousands of stations
    on its way out.  ``also``: scalar subqueries the caller wants read in the same
    statement (`FleetCache.read`); their values are `Resolution.also` (None without
    ``enabled_only``: nothing was read with the fleet)."""
    if not enabled_only:
        rows = look_up(session, targets, field=field)
        resolver = TargetResolver(session, enabled_only=False, with_sids=True)
        return Resolution(_reached(resolver, rows), rows, resolver)
    # the registry's key, the areas' codes and the ``also`` columns in one statement
    # (on PostgreSQL each statement is a round trip on an emergency's way out)
    read = FLEETS.read(session, area_codes=targets.areas, also=also)
    rows = look_up(session, targets, field=field, areas_read=read.areas)
    resolver = TargetResolver(session, fleet=read.fleet)
    if rows.groups:  # a group's members are read afresh each time (`load_groups`)
        return Resolution(_reached(resolver, rows), rows, resolver, read.also)
    key = (tuple(sorted(s for s, _, _ in rows.stations)), tuple(sorted(a for a, _ in rows.areas)))
    reached = read.reached.get(key)
    if reached is None:
        reached = read.reached.remember(key, _reached(resolver, rows))
    return Resolution(list(reached), rows, resolver, read.also)


def _reached(resolver: TargetResolver, rows: TargetRows) -> list[Reached]:
    ids = resolver.resolve(*rows.ids())
    return sorted((Reached(i, resolver.sid_of[i], resolver.area_of[i]) for i in ids), key=_by_sid)


class _ReachedMemo:
    """The stations each set of names reached in one `Fleet`, forgotten all at once past
    `MAX_REACHED` stations in all (a province's fleet many times over)."""

    MAX_REACHED = 100_000

    def __init__(self) -> None:
        self._lists: dict[tuple[tuple[int, ...], ...], tuple[Reached, ...]] = {}
        self._held = 0

    def get(self, key: tuple[tuple[int, ...], ...]) -> tuple[Reached, ...] | None:
        return self._lists.get(key)

    def remember(
        self, key: tuple[tuple[int, ...], ...], reached: list[Reached]
    ) -> tuple[Reached, ...]:
        if self._held + len(reached) > self.MAX_REACHED:
            self._lists.clear()
            self._held = 0
        kept = self._lists[key] = tuple(reached)
        self._held += len(kept)
        return kept


#: a prime that weighs each station's area by its id in the fingerprint below, so that
#: two stations trading areas change the sum
_MIX = 65521


class FleetCache:
    """The enabled fleet (`Fleet`, with sids) of each database, kept in memory between
    broadcasts while the registry is unchanged.

    Unchanged means: the plan signal has not moved (every change of a station, an area
    or a group goes through the change helper, which moves it: `kernel.changes`) and a
    fingerprint of the enabled stations' areas and of the area tree, computed by the
    database in the same statement, is the same.  The fingerprint covers what reaches
    the registry without the change helper (a script, a restored copy, a test's rows),
    and a new empty area, which the helper records without moving the signal.  One
    statement of aggregates instead of reading every station: on an idle machine a
    city-wide emergency's route at 10,000 stations took 6 ms instead of 34.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: by connection pool (a request's engine carries its own options; they share it)
        self._fleets: WeakKeyDictionary[Any, tuple[tuple[Any, ...], Fleet, _ReachedMemo]] = (
            WeakKeyDictionary()
        )

    def current(self, session: Session) -> tuple[Fleet, _ReachedMemo]:
        """The fleet as of ``session``'s database now, and what names reached in it."""
        read = self.read(session)
        return read.fleet, read.reached

    def peek(self, session: Session) -> Fleet | None:
        """The fleet last read for ``session``'s database, if any, as it was then (maybe
        no longer current: for a guess at what to read, never for an answer)."""
        with self._lock:
            cached = self._fleets.get(session.get_bind().engine.pool)
        return cached[1] if cached is not None else None

    def read(
        self, session: Session, *, area_codes: Sequence[str] = (), also: tuple[Any, ...] = ()
    ) -> FleetRead:
        """`current`, and in the same statement the ids of the areas ``area_codes`` name
        (at most `KEYED_AREAS` codes; more are left to `look_up`) and the values of the
        scalar subqueries ``also``."""
        codes = list(dict.fromkeys(area_codes))
        keyed = len(codes) <= KEYED_AREAS
        statement = _registry_key_with(len(codes) if keyed else 0, also)
        params = {f"area_{i}": code for i, code in enumerate(codes)} if keyed else {}
        row = tuple(session.execute(statement, params).one())
        key, rest = row[:_KEY_COLUMNS], row[_KEY_COLUMNS:]
        areas = dict(zip(codes, rest[: len(codes)], strict=True)) if keyed else None
        values = rest[len(codes) :] if keyed else rest
        pool = session.get_bind().engine.pool
        with self._lock:
            cached = self._fleets.get(pool)
        if cached is None or cached[0] != key:
            cached = (key, Fleet.load(session, with_sids=True), _ReachedMemo())
            with self._lock:
                self._fleets[pool] = cached
        return FleetRead(cached[1], cached[2], areas, tuple(values))


def _wide(column: Any) -> Any:
    """As a 64-bit integer (PostgreSQL's 32-bit products would overflow)."""
    return cast(column, BigInteger)


def _registry_key() -> Any:
    enabled = (
        select(
            func.count().label("stations"),
            func.coalesce(func.sum(Station.id), 0).label("station_ids"),
            func.coalesce(func.sum(_wide(Station.area_id) * (Station.id % _MIX + 1)), 0).label(
                "placed"
            ),
        )
        .where(Station.enabled.is_(True))
        .subquery()
    )
    tree = select(
        func.count().label("areas"),
        func.coalesce(func.sum(Area.id), 0).label("area_ids"),
        func.coalesce(
            func.sum(_wide(func.coalesce(Area.parent_id, 0)) * (Area.id % _MIX + 1)), 0
        ).label("nested"),
    ).subquery()
    signal = select(PlanSignal.generation, PlanSignal.changed_at).where(PlanSignal.id == SIGNAL_ID)
    return select(
        enabled,
        tree,
        signal.with_only_columns(PlanSignal.generation).scalar_subquery(),
        signal.with_only_columns(PlanSignal.changed_at).scalar_subquery(),
    ).select_from(enabled.join(tree, true()))  # one row each: aggregates


_REGISTRY_KEY = _registry_key()
_KEY_COLUMNS = len(_REGISTRY_KEY.selected_columns)
#: at most this many area codes are read with the registry's key (`FleetCache.read`),
#: one scalar subquery each (a broadcast names a few areas; a list longer than this is
#: read by `look_up`'s own statement)
KEYED_AREAS = 8


@lru_cache(maxsize=64)
def _registry_key_with(codes: int, also: tuple[Any, ...]) -> Any:
    """`_REGISTRY_KEY`, then the id of the area of each of ``codes`` codes (bound as
    ``area_0`` ...; NULL: no such area), then the ``also`` columns (built once each)."""
    if not codes and not also:
        return _REGISTRY_KEY
    areas = [
        select(Area.id).where(Area.code == bindparam(f"area_{i}")).scalar_subquery()
        for i in range(codes)
    ]
    return _REGISTRY_KEY.add_columns(*areas, *also)


class FleetRead(NamedTuple):
    """What `FleetCache.read` read: the fleet, what names reached in it, the ids of the
    area codes asked for (None when they were too many to read with the key) and the
    values of the ``also`` columns."""

    fleet: Fleet
    reached: _ReachedMemo
    areas: dict[str, int | None] | None
    also: tuple[Any, ...]


#: the process's fleets (`resolve_names`)
FLEETS = FleetCache()


def _by_sid(station: Reached) -> str:
    return station.sid


def resolve(
    session: Session, targets: TargetNames, *, field: str = "targets", enabled_only: bool = True
) -> list[Reached]:
    """Every station the names reach, each once, ordered by sid (code point order, the
    same on every database)."""
    return resolve_names(session, targets, field=field, enabled_only=enabled_only).stations


@dataclass(frozen=True, slots=True)
class Names:
    """Current names of stations (sid), groups (gid) and areas (code), by id."""

    stations: dict[int, str]
    groups: dict[int, str]
    areas: dict[int, str]


def names(
    session: Session,
    *,
    stations: Collection[int] = (),
    groups: Collection[int] = (),
    areas: Collection[int] = (),
) -> Names:
    """The current names of the given ids (an id missing from the answer was deleted)."""
    found = Names(stations={}, groups={}, areas={})
    for ids, key, name, into in (
        (stations, Station.id, Station.sid, found.stations),
        (groups, Group.id, Group.gid, found.groups),
        (areas, Area.id, Area.code, found.areas),
    ):
        if ids:
            query = select(key, name).where(key.in_(list(ids)))
            into.update({i: n for i, n in session.execute(query)})
    return found


def station_groups(session: Session) -> dict[int, list[str]]:
    """For every station, the gids of the groups it belongs to (``all`` excluded).

    Computed for the whole fleet at once with the group rule above (every station, as
    the ``desired`` config and the broker's topic rules name disabled ones too).
    """
    resolver = TargetResolver(session, enabled_only=False)
    result: dict[int, list[str]] = {station_id: [] for station_id in resolver.stations}
    groups = list(session.execute(select(Group.id, Group.gid).where(Group.builtin.is_(False))))
    resolver.load_groups([group_id for group_id, _ in groups])
    for group_id, gid in sorted(groups, key=lambda g: g[1]):
        for station_id in resolver.group(group_id):
            result[station_id].append(gid)
    return result


#: Station ids bound in one statement of `insert_per_station` (within SQLite's 32,766 and
#: PostgreSQL's 65,535 parameters).
IDS_PER_STATEMENT = 5_000


def insert_per_station(
    session: Session,
    table: Table,
    station_ids: Iterable[int],
    values: Mapping[str, Any],
    *,
    flag: tuple[str, Collection[int]] | None = None,
) -> None:
    """One row of ``table`` per station of ``station_ids`` that exists (each once): its id
    in ``station_id``, the same ``values`` in every row, and (``flag=(column, ids)``) that
    column true for the stations in ``ids``.

    ``INSERT ... SELECT`` from the stations: the values are bound (and converted to the
    column types) once per statement, not once per row as an executemany does; for a
    city-wide emergency that conversion (timestamps above all) was most of the API call.
    """
    ids = list(dict.fromkeys(station_ids))
    names = [*values, "station_id"]
    if flag is not None:
        names.append(flag[0])
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = ids[start : start + IDS_PER_STATEMENT]
        columns: list[ColumnElement[Any] | InstrumentedAttribute[int]] = [
            literal(value, table.c[name].type) for name, value in values.items()
        ]
        columns.append(Station.id)
        if flag is not None:
            flagged = [i for i in chunk if i in flag[1]]
            if len(flagged) == len(chunk):  # every row (a command sent to each station)
                columns.append(literal(True, Boolean))
            else:
                columns.append(
                    among(session, Station.id, flagged) if flagged else literal(False, Boolean)
                )
        query = select(*columns).where(among(session, Station.id, chunk))
        session.execute(insert(table).from_select(names, query))
