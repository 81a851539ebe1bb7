"""Live station state: births and deaths, reported state, telemetry.

Called by the firmware bridge's consumer (wired in `broadcaster`) with plain values, one
transaction per batch of messages.  Rules (PROTOCOL.md, "Connection"):

- a birth is always accepted and sets ``bdseq``; the station is online from then;
- a death whose ``bdseq`` differs from the last accepted birth is stale and ignored
  (a quick reconnect's birth can reach us before the previous connection's will);
- offline time is the server's receipt time, never the station's clock;
- each birth with a new ``bdseq`` opens a connection interval; how it ends is its cause
  (``ConnectionCause``): ``power`` when the station last reported mains lost, else
  ``will`` (its death), ``link`` (a new connection with no death seen) or ``server``;
- any message from a station moves ``last_seen``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from kernel.db import among
from stations.models import (
    ConnectionCause,
    Station,
    StationConnection,
    StationState,
    TelemetrySample,
)
from stations.targets import IDS_PER_STATEMENT


def load_states(session: Session, station_ids: Sequence[int]) -> dict[int, StationState]:
    """The existing state rows of many stations, in one query (keep the result while
    working: ``state_of`` then finds them in the session instead of asking the database
    once per station)."""
    if not station_ids:
        return {}
    rows = session.scalars(
        select(StationState).where(among(session, StationState.station_id, station_ids))
    )
    return {row.station_id: row for row in rows}


#: the station's state lists media it misses (`StationState.missing` not empty), said in
#: SQL: the list is not read and decoded station by station
MISSES_MEDIA = func.coalesce(StationState.missing.cast(String), "[]") != "[]"


def missing_media(session: Session) -> list[int]:
    """The online stations that applied the plan last published to them and still miss
    some of its media (`MISSES_MEDIA`), by id.  At 10,000 stations in step, reading
    each with its station as entities took 0.9 s on the 2-core test machine."""
    return list(
        session.scalars(
            select(StationState.station_id).where(
                StationState.online.is_(True),
                StationState.desired_published_version > 0,
                StationState.applied_version == StationState.desired_published_version,
                MISSES_MEDIA,
            )
        )
    )


def all_announce(session: Session, station_ids: Sequence[int], capability: str) -> bool:
    """Whether every one of the stations announced ``capability`` in its last birth (a
    station never born announced nothing)."""
    ids = list(dict.fromkeys(station_ids))
    if not ids:
        return False
    seen = 0
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        rows = session.execute(
            select(StationState.capabilities).where(
                among(session, StationState.station_id, ids[start : start + IDS_PER_STATEMENT])
            )
        )
        for (capabilities,) in rows:
            if capability not in (capabilities or ()):
                return False
            seen += 1
    return seen == len(ids)


def _new_state(station_id: int) -> dict[str, Any]:
    """The columns of a station's state row before anything is known of it."""
    return {
        "station_id": station_id,
        "online": False,
        "capabilities": [],
        "missing": [],
        "faults": [],
        "desired_version": 0,
        "desired_published_version": 0,
    }


def _insert_missing_states(session: Session, station_ids: Sequence[int]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: the ingest thread and the desired publisher may
    both touch a new station at once, and neither may fail for it."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(StationState).on_conflict_do_nothing()
    session.execute(statement, [_new_state(i) for i in station_ids])


def state_of(session: Session, station_id: int) -> StationState:
    """The station's state row, created on first use (`_insert_missing_states`)."""
    state = session.get(StationState, station_id)
    if state is not None:
        return state
    _insert_missing_states(session, [station_id])
    state = session.get(StationState, station_id)
    assert state is not None
    return state


def states_of(session: Session, station_ids: Sequence[int]) -> dict[int, StationState]:
    """`state_of` for many stations: the existing rows in one query, the missing ones
    created with one statement and read with one more (keep the result while working:
    the session holds its rows only weakly).  A station per statement cost the desired
    publisher four round trips each when it met stations whose births were not stored
    yet (10,000 new stations on PostgreSQL: minutes instead of seconds)."""
    states = load_states(session, station_ids)
    missing = sorted(set(station_ids) - states.keys())
    if missing:
        with session.no_autoflush:
            _insert_missing_states(session, missing)
            states |= load_states(session, missing)
    return states


def peek_state(session: Session, station_id: int) -> StationState:
    """The station's state row, or an unsaved empty one: for readers, which write nothing."""
    state = session.get(StationState, station_id)
    if state is not None:
        return state
    return StationState(
        station_id=station_id,
        online=False,
        capabilities=[],
        missing=[],
        faults=[],
        desired_version=0,
        desired_published_version=0,
    )


def sid_index(session: Session) -> dict[str, int]:
    """sid -> station id for every registered station."""
    return {sid: sid_id for sid, sid_id in session.execute(select(Station.sid, Station.id))}


def record_birth(
    session: Session,
    station_id: int,
    *,
    bdseq: int,
    received_at: dt.datetime,
    firmware: str | None,
    model: str | None,
    capabilities: Sequence[str],
    held_version: int | None,
    connections: Connections | None = None,
) -> None:
    """``connections``: the stations' latest intervals read for a batch of births
    (`last_connections`), kept current here; without it, this station's is read."""
    state = state_of(session, station_id)
    cause = ending_cause(state, ConnectionCause.LINK)
    _connected(session, station_id, bdseq, received_at, cause, connections)
    if not state.online:
        state.online_since = received_at
    state.online = True
    state.bdseq = bdseq
    state.offline_since = None
    state.last_seen = received_at
    state.firmware = firmware
    state.model = model
    state.capabilities = list(capabilities)
    state.held_version = held_version


def record_death(
    session: Session, station_id: int, *, bdseq: int, received_at: dt.datetime
) -> bool:
    """Mark the station offline unless the death is stale; return whether it applied."""
    state = state_of(session, station_id)
    if state.bdseq is not None and bdseq != state.bdseq:
        return False
    cause = ending_cause(state, ConnectionCause.WILL)
    if state.online:
        state.online = False
        state.offline_since = received_at
        state.online_since = None
        _disconnected(session, station_id, received_at, cause)
    else:  # shown offline since the server lost the broker: now the station's death is known
        last = _last_connection(session, station_id)
        if last is not None and last.bdseq == bdseq and last.cause is ConnectionCause.SERVER:
            last.cause = cause
    return True


#: what the station reports while its mains supply is lost (telemetry ``on_battery``, or
#: these fault events; the same evidence as the "mains lost" alarm)
MAINS_LOST_FAULTS = frozenset({"on_battery", "power_lost"})


def on_battery(state: StationState) -> bool:
    """Whether the station's latest report says it runs on battery (mains lost)."""
    telemetry = state.telemetry or {}
    return telemetry.get("on_battery") is True or bool(
        MAINS_LOST_FAULTS.intersection(state.faults or ())
    )


def ending_cause(state: StationState, otherwise: ConnectionCause) -> ConnectionCause:
    """Why the station's current connection ends: ``power`` when its latest telemetry or
    faults said mains were lost, else ``otherwise`` (``will`` for its death, ``link`` for
    a reconnect that no death preceded)."""
    return ConnectionCause.POWER if on_battery(state) else otherwise


def mark_all_offline(session: Session, *, at: dt.datetime) -> int:
    """Every station the server believed online, offline from ``at``: the server lost
    the broker and can no longer vouch for them (their deaths would not reach it).  When
    it reconnects, their retained births (or wills) are delivered again and restore the
    truth.  Returns how many changed."""
    result = session.execute(
        update(StationState)
        .where(StationState.online.is_(True))
        .values(online=False, offline_since=at, online_since=None)
    )
    session.execute(
        update(StationConnection)
        .where(StationConnection.offline_at.is_(None))
        .values(offline_at=at, cause=ConnectionCause.SERVER)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _last_connection(session: Session, station_id: int) -> StationConnection | None:
    return session.scalar(
        select(StationConnection)
        .where(StationConnection.station_id == station_id)
        .order_by(StationConnection.online_at.desc(), StationConnection.id.desc())
        .limit(1)
    )


#: station id -> its latest connection interval (None: it never connected)
Connections = dict[int, StationConnection | None]


def last_connections(session: Session, station_ids: Sequence[int]) -> Connections:
    """`_last_connection` of many stations, one statement per `IDS_PER_STATEMENT` (a
    reconnect storm's batch of births reads them all at once).  Keep the result while
    working: the session holds its rows only weakly."""
    ids = sorted(set(station_ids))
    out: Connections = dict.fromkeys(ids)
    if not ids:  # a batch without births (every broadcast's acks): no statement to build
        return out
    later = aliased(StationConnection)
    latest = (
        select(later.id)
        .where(later.station_id == StationConnection.station_id)
        .order_by(later.online_at.desc(), later.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    for first in range(0, len(ids), IDS_PER_STATEMENT):
        part = ids[first : first + IDS_PER_STATEMENT]
        for row in session.scalars(
            select(StationConnection).where(
                among(session, StationConnection.station_id, part), StationConnection.id == latest
            )
        ):
            out[row.station_id] = row
    return out


def _connected(
    session: Session,
    station_id: int,
    bdseq: int,
    at: dt.datetime,
    replaced: ConnectionCause,
    connections: Connections | None = None,
) -> None:
    """A birth: a new connection interval, unless it repeats the current one (a retained
    birth delivered again; after the server lost the broker it reopens that interval).
    An open interval it follows is closed with the cause ``replaced``."""
    if connections is not None and station_id in connections:
        last = connections[station_id]
    else:
        last = _last_connection(session, station_id)
    if last is not None and last.bdseq == bdseq:
        if last.cause is ConnectionCause.SERVER:
            last.offline_at, last.cause = None, None
        return
    if last is not None and last.offline_at is None:
        last.offline_at, last.cause = at, replaced
    opened = StationConnection(station_id=station_id, bdseq=bdseq, online_at=at)
    session.add(opened)
    if connections is not None:
        connections[station_id] = opened


def _disconnected(
    session: Session, station_id: int, at: dt.datetime, cause: ConnectionCause
) -> None:
    last = _last_connection(session, station_id)
    if last is not None and last.offline_at is None:
        last.offline_at, last.cause = at, cause


def online_seconds(session: Session, since: dt.datetime, until: dt.datetime) -> dict[int, float]:
    """Seconds each station was connected within [since, until), for every station with
    a connection history begun before ``until`` (others: not in the result)."""
    seconds: dict[int, float] = {}
    rows = session.execute(
        select(
            StationConnection.station_id, StationConnection.online_at, StationConnection.offline_at
        ).where(StationConnection.online_at < until)
    )
    for station_id, online_at, offline_at in rows:
        start, end = max(online_at, since), min(offline_at or until, until)
        seconds[station_id] = seconds.get(station_id, 0.0) + max((end - start).total_seconds(), 0.0)
    return seconds


def last_causes(session: Session, station_ids: Iterable[int]) -> dict[int, ConnectionCause | None]:
    """How each station's latest connection ended (None: still open, or no history)."""
    latest = (
        select(func.max(StationConnection.id))
        .where(among(session, StationConnection.station_id, list(station_ids)))
        .group_by(StationConnection.station_id)
    )
    rows = session.execute(
        select(StationConnection.station_id, StationConnection.cause).where(
            StationConnection.id.in_(latest)
        )
    )
    return {station_id: cause for station_id, cause in rows}


def reconnects_since(
    session: Session, since: dt.datetime, station_ids: Iterable[int] | None = None
) -> dict[int, int]:
    """Connections begun since ``since``, per station (link flapping)."""
    query = (
        select(StationConnection.station_id, func.count())
        .where(StationConnection.online_at >= since)
        .group_by(StationConnection.station_id)
    )
    if station_ids is not None:
        query = query.where(among(session, StationConnection.station_id, list(station_ids)))
    return {station_id: int(n) for station_id, n in session.execute(query)}


def connections(
    session: Session,
    station_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[StationConnection], int]:
    """The station's connection intervals that overlap [since, until) (either bound
    optional), newest first, and how many there are."""
    conditions = [StationConnection.station_id == station_id]
    if since is not None:
        conditions.append(
            or_(StationConnection.offline_at.is_(None), StationConnection.offline_at > since)
        )
    if until is not None:
        conditions.append(StationConnection.online_at < until)
    total = session.scalar(select(func.count()).select_from(StationConnection).where(*conditions))
    rows = session.scalars(
        select(StationConnection)
        .where(*conditions)
        .order_by(StationConnection.online_at.desc(), StationConnection.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


def record_reported(
    session: Session,
    station_id: int,
    *,
    applied_version: int | None,
    missing: Sequence[str],
    received_at: dt.datetime,
    cache_bytes: int | None,
    volume: int | None,
) -> None:
    state = state_of(session, station_id)
    state.applied_version = applied_version
    state.missing = sorted(set(missing))
    state.reported_at = received_at
    state.cache_bytes = cache_bytes
    if volume is not None:
        state.volume = volume
    state.last_seen = max(filter(None, (state.last_seen, received_at)))


def touch(session: Session, station_id: int, received_at: dt.datetime) -> None:
    state = state_of(session, station_id)
    state.last_seen = max(filter(None, (state.last_seen, received_at)))


def touch_many(session: Session, seen: Mapping[int, dt.datetime]) -> None:
    """`touch` for many stations: one ``UPDATE`` for all (executemany) of the rows that
    exist, `state_of` for a station that has none yet.  For stations whose state row no
    ORM object of this session holds (the statement writes behind the identity map)."""
    if not seen:
        return
    ids = sorted(seen)
    have: set[int] = set()
    for first in range(0, len(ids), IDS_PER_STATEMENT):
        have.update(
            session.scalars(
                select(StationState.station_id).where(
                    among(session, StationState.station_id, ids[first : first + IDS_PER_STATEMENT])
                )
            )
        )
    for station_id in ids:
        if station_id not in have:
            touch(session, station_id, seen[station_id])
    table = cast(Table, StationState.__table__)
    rows = [{"b_station": i, "b_seen": seen[i]} for i in ids if i in have]
    if rows:
        session.execute(
            update(table)
            .where(
                table.c.station_id == bindparam("b_station"),
                or_(table.c.last_seen.is_(None), table.c.last_seen < bindparam("b_seen")),
            )
            .values(last_seen=bindparam("b_seen")),
            rows,
        )


def record_fault(session: Session, station_id: int, fault: str, *, raised: bool) -> None:
    state = state_of(session, station_id)
    faults = set(state.faults or [])
    if raised:
        faults.add(fault)
    else:
        faults.discard(fault)
    state.faults = sorted(faults)


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    station_id: int
    at: dt.datetime
    received_at: dt.datetime
    seq: int
    data: dict[str, Any]


def record_telemetry(session: Session, rows: Iterable[TelemetryRow]) -> int:
    """Store a batch of telemetry (history + latest per station); return the row count."""
    batch = list(rows)
    if not batch:
        return 0
    session.execute(
        insert(TelemetrySample),
        [
            {
                "station_id": r.station_id,
                "at": r.at,
                "received_at": r.received_at,
                "seq": r.seq,
                "data": r.data,
            }
            for r in batch
        ],
    )
    latest: dict[int, TelemetryRow] = {}
    for row in batch:
        current = latest.get(row.station_id)
        if current is None or row.received_at >= current.received_at:
            latest[row.station_id] = row
    # One SELECT for the batch's state rows, and no autoflush while updating them: loading
    # them one by one flushed the previous station's UPDATE before each SELECT (two round
    # trips per station), which capped ingest at about a third of this.
    states = states_of(session, list(latest))
    with session.no_autoflush:
        for station_id, row in latest.items():
            state = states[station_id]
            # the newest by the station's clock; but a kept sample dated after this one
            # arrived was stamped by a clock running fast, since set back (NTP back
            # after a drift): the station must not stay stuck on that report
            if (
                state.telemetry_at is None
                or row.at >= state.telemetry_at
                or state.telemetry_at > row.received_at
            ):
                state.telemetry = row.data
                state.telemetry_at = row.at
                if "volume" in row.data:
                    state.volume = row.data["volume"]
            state.last_seen = max(filter(None, (state.last_seen, row.received_at)))
    return len(batch)


def telemetry_between(
    session: Session,
    station_id: int,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
) -> list[TelemetrySample]:
    query = select(TelemetrySample).where(TelemetrySample.station_id == station_id)
    if since is not None:
        query = query.where(TelemetrySample.at >= since)
    if until is not None:
        query = query.where(TelemetrySample.at < until)
    return list(session.scalars(query.order_by(TelemetrySample.at).limit(limit)))


def telemetry_series(
    session: Session,
    station_id: int,
    keys: Sequence[str],
    *,
    since: dt.datetime,
    points: int = 300,
    limit: int = 20_000,
) -> tuple[list[dt.datetime], dict[str, list[float | None]]]:
    """The station's numeric telemetry `keys` since `since` for charts: the sample times
    and one series per key (None where a sample lacks the value), thinned evenly to at
    most `points` samples (of the first `limit`)."""
    samples = telemetry_between(session, station_id, since=since, until=None, limit=limit)
    step = max(1, -(-len(samples) // max(1, points)))
    kept = samples[::step]
    series: dict[str, list[float | None]] = {}
    for key in keys:
        values: list[float | None] = []
        for sample in kept:
            value = sample.data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.append(float(value))
            else:
                values.append(None)
        series[key] = values
    return [sample.at for sample in kept], series


def purge_telemetry(session: Session, *, older_than: dt.datetime) -> int:
    result = session.execute(
        delete(TelemetrySample).where(TelemetrySample.received_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
