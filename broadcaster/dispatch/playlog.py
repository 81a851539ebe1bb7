"""Proof of play: station events stored once, and the plan reconciled against them.

Outcome of a planned item or broadcast play at one station:

- ``played``: started and finished, at least `PLAYED_SHARE` of the expected length;
- ``partial``: started, then ended early (finished short, preempted or stopped after
  it began, or no end event arrived);
- ``preempted``: preempted before any of it played;
- ``skipped``: not started (busy with something of equal or higher priority, or media
  missing), or a broadcast the station rejected;
- ``failed``: the station reported a failure before playing;
- ``missed``: no event at all by the planned end plus `MISSED_GRACE` (or a broadcast
  that expired before it reached the station);
- ``cancelled``: removed from the plan before it was due;
- ``not_heard``: reported played (fully or in part) while the station had an alarm that
  keeps the loudspeakers silent (speaker-line fault, amplifier overheat): truthful proof
  of play counts it apart from the plays people heard (`reconcile_hearing`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from broadcaster.alarms import service as alarms
from broadcaster.alarms.models import Alarm
from broadcaster.dispatch.models import Play, PlayStatus, StationEvent
from kernel.db import among
from stations.targets import IDS_PER_STATEMENT, insert_per_station

PLAYED_SHARE = 0.9
MISSED_GRACE = dt.timedelta(minutes=2)
STALE_PLAYING = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class EventIn:
    station_id: int
    event_id: str
    type: str
    at: dt.datetime
    received_at: dt.datetime
    item_id: str | None = None
    cmd_id: str | None = None
    desired_version: int | None = None
    position_ms: int | None = None
    reason: str | None = None
    fault: str | None = None
    sha256: str | None = None


def store_event(session: Session, event: EventIn) -> bool:
    """Insert the event unless this station already sent that `event_id`; True if new.

    The statement says which row went in (``RETURNING``): its rowcount does not (-1 on
    PostgreSQL through psycopg, where every duplicate was taken for a new event)."""
    dialect = session.get_bind().dialect.name
    return (
        session.execute(_INSERT_EVENTS[dialect == "postgresql"], _event_row(event)).first()
        is not None
    )


#: The event insert, built once (a burst stores thousands): a Core statement on the
#: table with the values as parameters, [sqlite, postgresql], saying which rows went in.
_EVENTS = cast(Table, StationEvent.__table__)
_INSERT_EVENTS = tuple(
    statement.on_conflict_do_nothing().returning(_EVENTS.c.station_id, _EVENTS.c.event_id)
    for statement in (sqlite.insert(_EVENTS), postgresql.insert(_EVENTS))
)
_PLAYS = cast(Table, Play.__table__)


def play_for(session: Session, event: EventIn) -> Play | None:
    if event.item_id is not None:
        return session.scalar(
            select(Play).where(Play.station_id == event.station_id, Play.item_id == event.item_id)
        )
    if event.cmd_id is not None:
        return session.scalar(
            select(Play).where(Play.station_id == event.station_id, Play.cmd_id == event.cmd_id)
        )
    return None


def apply_event(play: Play, event: EventIn) -> None:
    """Move the play's outcome on with a new (deduplicated) event."""
    kind = event.type
    if kind == "relay.fallback":
        play.reason = (event.reason or "relay unavailable; fallback played")[:500]
    elif kind == "play.started":
        if play.status in (PlayStatus.PLANNED, PlayStatus.MISSED):
            play.status = PlayStatus.PLAYING
        play.started_at = play.started_at or event.at
    elif kind in ("play.finished", "play.preempted", "play.failed"):
        played = _played_ms(play, event)
        play.ended_at = event.at
        play.played_ms = played
        if kind == "play.finished":
            full = played >= PLAYED_SHARE * play.expected_ms
            play.status = PlayStatus.PLAYED if full else PlayStatus.PARTIAL
        elif kind == "play.preempted":
            play.status = PlayStatus.PARTIAL if played > 0 else PlayStatus.PREEMPTED
        else:
            play.status = PlayStatus.PARTIAL if played > 0 else PlayStatus.FAILED
        if event.reason:
            play.reason = event.reason[:500]
    elif kind == "play.skipped":
        play.status = PlayStatus.SKIPPED
        play.played_ms = 0
        play.reason = (event.reason or "skipped")[:500]
    play.updated_at = event.received_at


NOT_HEARD_REASON = "speaker or amplifier fault alarm"


def reconcile_hearing(session: Session, play: Play) -> None:
    """A play the station reports as (partly) played while it had a silencing alarm
    (speaker line, amplifier overheat) between its start and end is `not_heard`."""
    if play.status not in (PlayStatus.PLAYED, PlayStatus.PARTIAL):
        return
    _reconcile(play, alarms.silencing_alarms(session, [play.station_id]).get(play.station_id, []))


def _reconcile(play: Play, silencing: Sequence[Alarm]) -> None:
    """`reconcile_hearing` against the station's `alarms.silencing_alarms`."""
    if play.status not in (PlayStatus.PLAYED, PlayStatus.PARTIAL):
        return
    start = play.started_at or play.planned_start
    end = play.ended_at or play.planned_end
    if alarms.silenced_between(silencing, start, end) is not None:
        play.status = PlayStatus.NOT_HEARD
        play.reason = NOT_HEARD_REASON


def record_events(session: Session, events: Sequence[EventIn]) -> list[str]:
    """Store a batch of events and move their plays on, as `play_for`, `store_event`,
    `apply_event` and `reconcile_hearing` would one by one, in order; each event's
    outcome: "event", "event_duplicate" or "event_unknown_item" (names an item or
    command this station has no play for: not stored).

    One statement reads the plays, one the stations' silencing alarms, and one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` stores every new event (an event id
    the station sent before, or twice in the batch, is a duplicate).  Not for fault
    events: they change the station's alarms (`live.record_fault`)."""
    outcomes = ["event_unknown_item"] * len(events)
    if not events:
        return outcomes
    station_ids = sorted({e.station_id for e in events})
    items = sorted({e.item_id for e in events if e.item_id is not None})
    cmds = sorted({e.cmd_id for e in events if e.item_id is None and e.cmd_id is not None})
    by_item: dict[tuple[int, str], Play] = {}
    by_cmd: dict[tuple[int, str], Play] = {}
    for first in range(0, len(station_ids), IDS_PER_STATEMENT) if items or cmds else ():
        named = []
        if items:
            named.append(Play.item_id.in_(items))
        if cmds:
            named.append(Play.cmd_id.in_(cmds))
        for found in session.scalars(
            select(Play).where(
                among(session, Play.station_id, station_ids[first : first + IDS_PER_STATEMENT]),
                or_(*named),
            )
        ):
            if found.item_id is not None:
                by_item[(found.station_id, found.item_id)] = found
            if found.cmd_id is not None:
                by_cmd[(found.station_id, found.cmd_id)] = found
    plays: list[Play | None] = []
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for index, event in enumerate(events):
        assert not event.type.startswith("fault."), "fault events take store_event"
        play = None
        if event.item_id is not None:
            play = by_item.get((event.station_id, event.item_id))
        elif event.cmd_id is not None:
            play = by_cmd.get((event.station_id, event.cmd_id))
        plays.append(play)
        if play is None and (event.item_id is not None or event.cmd_id is not None):
            continue
        outcomes[index] = "event_duplicate"
        rows.setdefault((event.station_id, event.event_id), _event_row(event))
    stored: set[tuple[int, str]] = set()
    if rows:
        dialect = session.get_bind().dialect.name
        stored = {
            (int(station_id), str(event_id))
            for station_id, event_id in session.execute(
                _INSERT_EVENTS[dialect == "postgresql"], list(rows.values())
            )
        }
    silencing: dict[int, list[Alarm]] | None = None
    for index, (event, target) in enumerate(zip(events, plays, strict=True)):
        if outcomes[index] == "event_unknown_item":
            continue
        key = (event.station_id, event.event_id)
        if key not in stored:
            continue  # stored before, or an earlier copy in this batch was
        stored.discard(key)
        outcomes[index] = "event"
        if target is None:
            continue
        apply_event(target, event)
        if target.status in (PlayStatus.PLAYED, PlayStatus.PARTIAL):
            if silencing is None:
                silencing = alarms.silencing_alarms(session, station_ids)
            _reconcile(target, silencing.get(target.station_id, []))
    return outcomes


def _event_row(event: EventIn) -> dict[str, Any]:
    return {
        "station_id": event.station_id,
        "event_id": event.event_id,
        "type": event.type,
        "at": event.at,
        "received_at": event.received_at,
        "item_id": event.item_id,
        "cmd_id": event.cmd_id,
        "desired_version": event.desired_version,
        "position_ms": event.position_ms,
        "reason": event.reason[:500] if event.reason else None,
        "fault": event.fault,
        "sha256": event.sha256,
    }


def _played_ms(play: Play, event: EventIn) -> int:
    if event.position_ms is not None:
        return max(0, int(event.position_ms))
    if play.started_at is not None:
        return max(0, int((event.at - play.started_at).total_seconds() * 1000))
    return 0


@dataclass(frozen=True, slots=True)
class PlannedPlay:
    station_id: int
    item_id: str
    rule_id: int | None
    title: str
    kind: str
    priority: int
    start: dt.datetime
    end: dt.datetime


def record_plan(
    session: Session,
    station_id: int,
    items: Sequence[PlannedPlay],
    *,
    window: tuple[dt.datetime, dt.datetime],
    now: dt.datetime,
) -> None:
    """Make the station's planned plays in `window` match the published plan.

    Items not yet started that left the plan are cancelled; new ones are added (unless
    they were already over when first planned); moved ones are updated.  Past and
    finished rows are never touched.
    """
    record_plans(session, {station_id: items}, window=window, now=now)


def record_plans(
    session: Session,
    plans: Mapping[int, Sequence[PlannedPlay]],
    *,
    window: tuple[dt.datetime, dt.datetime],
    now: dt.datetime,
) -> None:
    """:func:`record_plan` for many stations: one query reads their planned plays, one
    statement inserts the new ones."""
    if not plans:
        return
    start, end = window
    current_by_station: dict[int, dict[str, Play]] = {station_id: {} for station_id in plans}
    with session.no_autoflush:
        rows = session.scalars(
            select(Play).where(
                among(session, Play.station_id, list(plans)),
                Play.source == "schedule",
                Play.planned_start >= start,
                Play.planned_start < end,
            )
        )
        for play in rows:
            if play.item_id is not None:
                current_by_station[play.station_id][play.item_id] = play
    new_rows: list[dict[str, Any]] = []
    for station_id, items in plans.items():
        new_rows.extend(_plan_station(station_id, items, current_by_station[station_id], now))
    if new_rows:
        session.execute(insert(Play), new_rows)


def _plan_station(
    station_id: int, items: Sequence[PlannedPlay], current: dict[str, Play], now: dt.datetime
) -> list[dict[str, Any]]:
    """Cancel, update in place, and return the rows to insert for one station."""
    wanted = {item.item_id for item in items}
    for item_id, play in current.items():
        if item_id not in wanted and play.status is PlayStatus.PLANNED and play.planned_start > now:
            play.status = PlayStatus.CANCELLED
            play.reason = "removed from the schedule"
            play.updated_at = now
    new_rows = []
    for item in items:
        existing = current.get(item.item_id)
        expected = int((item.end - item.start).total_seconds() * 1000)
        if existing is None and item.end <= now:
            # a slot that was over before it was ever planned (the first start of the
            # service, a rule created later in the day) can be neither played nor missed
            continue
        if existing is None:
            new_rows.append(
                {
                    "station_id": station_id,
                    "source": "schedule",
                    "item_id": item.item_id,
                    "rule_id": item.rule_id,
                    "title": item.title[:500],
                    "kind": item.kind,
                    "priority": item.priority,
                    "planned_start": item.start,
                    "planned_end": item.end,
                    "expected_ms": expected,
                    "status": PlayStatus.PLANNED.value,
                    "updated_at": now,
                }
            )
        elif existing.status in (PlayStatus.PLANNED, PlayStatus.CANCELLED) and (
            existing.status is not PlayStatus.PLANNED
            or existing.title != item.title[:500]
            or existing.priority != item.priority
            or existing.planned_start != item.start
            or existing.planned_end != item.end
            or existing.expected_ms != expected
        ):
            # only a row whose plan moved is written (a config-only change touches none)
            existing.status = PlayStatus.PLANNED
            existing.reason = None
            existing.title = item.title[:500]
            existing.priority = item.priority
            existing.planned_start = item.start
            existing.planned_end = item.end
            existing.expected_ms = expected
            existing.updated_at = now
    return new_rows


def expect(session: Session, cmd_id: str, *, start: dt.datetime, expected_ms: int) -> None:
    """The plays of a command last ``expected_ms`` from ``start`` after all (a spoken
    emergency's plays were planned before the speech existed)."""
    session.execute(
        update(Play)
        .where(Play.cmd_id == cmd_id)
        .values(
            expected_ms=expected_ms,
            planned_end=start + dt.timedelta(milliseconds=expected_ms),
        )
    )


def record_broadcast(
    session: Session,
    *,
    station_ids: Iterable[int],
    cmd_id: str,
    broadcast_id: int,
    title: str,
    kind: str,
    priority: int,
    start: dt.datetime,
    expected_ms: int,
    now: dt.datetime,
) -> None:
    insert_per_station(
        session,
        _PLAYS,
        station_ids,
        {
            "source": "broadcast",
            "cmd_id": cmd_id,
            "broadcast_id": broadcast_id,
            "title": title[:500],
            "kind": kind,
            "priority": priority,
            "planned_start": start,
            "planned_end": start + dt.timedelta(milliseconds=expected_ms),
            "expected_ms": expected_ms,
            "status": PlayStatus.PLANNED,
            "updated_at": now,
        },
    )


def mark_missed(session: Session, now: dt.datetime) -> int:
    """Plans with no event by their end (+ grace): missed; plays left open: partial."""
    missed = session.execute(
        update(Play)
        .where(Play.status == PlayStatus.PLANNED, Play.planned_end < now - MISSED_GRACE)
        .values(status=PlayStatus.MISSED, reason="no play event from the station", updated_at=now)
    )
    stale = session.execute(
        update(Play)
        .where(Play.status == PlayStatus.PLAYING, Play.planned_end < now - STALE_PLAYING)
        .values(status=PlayStatus.PARTIAL, reason="no end event from the station", updated_at=now)
    )
    return int(getattr(missed, "rowcount", 0) or 0) + int(getattr(stale, "rowcount", 0) or 0)


def missed_by_station(session: Session, since: dt.datetime) -> dict[int, int]:
    """Plays found missed that were due to end since ``since``, per station (alarms)."""
    rows = session.execute(
        select(Play.station_id, func.count())
        .where(Play.status == PlayStatus.MISSED, Play.planned_end >= since)
        .group_by(Play.station_id)
    )
    return {station_id: int(n) for station_id, n in rows}


def purge_cancelled(session: Session, older_than: dt.datetime) -> None:
    session.execute(
        delete(Play).where(Play.status == PlayStatus.CANCELLED, Play.updated_at < older_than)
    )
