"""What the JSON API and the dashboard both read: broadcasts an account may see and their
progress, station commands, the play log and its daily totals, the ward/commune an area
lies in, and what the overview and a station's page show.

Routers and pages call these functions; they run no queries of their own.  Everything
here reads (no writes, no commits): the boundary owns the transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Collection, Sequence
from typing import Literal, TypeVarTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from broadcaster.dispatch import broadcasts, outbox
from broadcaster.dispatch.models import (
    Broadcast,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    TargetStatus,
)
from broadcaster.dispatch.schemas import (
    BroadcastRead,
    CommandRead,
    PlayRead,
    Progress,
    TargetRead,
    TotalRow,
)
from kernel.db import columns_of, paginate
from kernel.errors import NotFoundError
from kernel.security import Principal
from stations import service as stations
from stations.models import Area, AreaLevel, Station, StationState

__all__ = [
    "OTHER_UNIT",
    "all_areas",
    "broadcast_in_scope",
    "broadcast_read",
    "command_target",
    "command_targets",
    "enabled_stations",
    "list_broadcasts",
    "list_plays",
    "play_command",
    "play_query",
    "play_reads",
    "play_statuses",
    "play_totals",
    "playing_title",
    "progress",
    "recent_plays",
    "scoped",
    "station_commands",
    "station_states",
    "stations_behind",
    "totals_csv",
    "unit_of",
    "upcoming",
    "visible_broadcasts",
]

Ts = TypeVarTuple("Ts")

OTHER_UNIT = ("-", "Khác")
"""Key and name of the totals row for stations in no ward/commune."""


# --- areas -------------------------------------------------------------------------------


def all_areas(session: Session) -> dict[int, Area]:
    """Every area by id (the registry is small: one city's wards, communes and hamlets)."""
    return {a.id: a for a in session.scalars(select(Area))}


def unit_of(areas: dict[int, Area], area_id: int | None) -> Area | None:
    """The ward/commune an area lies in (itself for a ward/commune), if any."""
    cursor = areas.get(area_id) if area_id is not None else None
    while cursor is not None and cursor.level not in (AreaLevel.WARD, AreaLevel.COMMUNE):
        cursor = areas.get(cursor.parent_id) if cursor.parent_id else None
    return cursor


def scoped(query: Select[*Ts], scope: Collection[int] | None) -> Select[*Ts]:
    """`query` (which joins `Station`) limited to stations inside `scope`."""
    if scope is not None:
        query = query.where(Station.area_id.in_(scope))
    return query


# --- broadcasts ----------------------------------------------------------------------------


def visible_broadcasts(principal: Principal) -> Select[Broadcast]:
    """Broadcasts the principal may see, newest first: none of their plays lies outside
    the principal's scope."""
    query = select(Broadcast).order_by(Broadcast.id.desc())
    if principal.scope is not None:
        outside = (
            select(Play.broadcast_id)
            .join(Station, Station.id == Play.station_id)
            .where(Play.broadcast_id.is_not(None), Station.area_id.not_in(principal.scope))
        )
        query = query.where(Broadcast.id.not_in(outside))
    return query


def list_broadcasts(
    session: Session, principal: Principal, *, limit: int, offset: int = 0
) -> tuple[list[Broadcast], int]:
    return paginate(session, visible_broadcasts(principal), limit, offset)


def broadcast_in_scope(session: Session, principal: Principal, broadcast_id: int) -> Broadcast:
    """The broadcast, if the principal may see it (`NotFoundError` otherwise)."""
    broadcast = session.scalar(
        visible_broadcasts(principal).where(Broadcast.id == broadcast_id).order_by(None)
    )
    if broadcast is None:
        raise NotFoundError(f"broadcast {broadcast_id} not found")
    return broadcast


def progress(session: Session, command_ids: list[int]) -> Progress:
    """How far some commands have got: targets per status, received, finished."""
    counts = outbox.progress(session, command_ids) if command_ids else {}
    total = sum(counts.values())
    received = sum(
        counts.get(s.value, 0)
        for s in TargetStatus
        if s.rank >= TargetStatus.RECEIVED.rank
        and s not in (TargetStatus.EXPIRED, TargetStatus.STOPPED)
    )
    finished = sum(counts.get(s.value, 0) for s in TargetStatus if s.terminal)
    return Progress(
        total=total,
        by_status=counts,
        received=received,
        finished=finished,
        succeeded=counts.get(TargetStatus.SUCCEEDED.value, 0),
    )


def play_command(session: Session, broadcast: Broadcast) -> Command | None:
    return next((c for c in broadcasts.commands_of(session, broadcast) if c.type == "play"), None)


def _targets(session: Session, play: Command) -> list[TargetRead]:
    rows = session.execute(
        select(
            Station.sid,
            Area.name,
            CommandTarget.status,
            CommandTarget.reason,
            CommandTarget.updated_at,
            Play.status,
            StationState.online,
            StationState.offline_since,
        )
        .join(CommandTarget, CommandTarget.station_id == Station.id)
        .join(Area, Area.id == Station.area_id)
        .outerjoin(Play, (Play.station_id == Station.id) & (Play.cmd_id == play.cmd_id))
        .outerjoin(StationState, StationState.station_id == Station.id)
        .where(CommandTarget.command_id == play.id)
        .order_by(Station.sid)
    ).all()
    return [
        TargetRead(
            sid=sid,
            area=area,
            status=TargetStatus(st).value,
            reason=reason,
            updated_at=updated,
            play_status=PlayStatus(ps).value if ps else None,
            offline_since=(since if not online and TargetStatus(st) in UNREACHED else None),
        )
        for sid, area, st, reason, updated, ps, online, since in rows
    ]


#: a target's statuses before the station took the command
UNREACHED = (TargetStatus.PENDING, TargetStatus.SENT)


def broadcast_read(session: Session, broadcast: Broadcast, *, with_stations: bool) -> BroadcastRead:
    """A broadcast with the progress of its play command (and each station's, if asked)."""
    play = play_command(session, broadcast)
    return BroadcastRead.model_validate(
        columns_of(broadcast, BroadcastRead.model_fields)
        | {
            "cmd_id": play.cmd_id if play else None,
            "route": play.route.value if play else None,
            "groups": list(play.groups) if play else [],
            "progress": progress(session, [play.id] if play else []),
            "stations": _targets(session, play) if with_stations and play is not None else None,
        }
    )


# --- station commands ----------------------------------------------------------------------


def station_commands(
    session: Session,
    station_id: int,
    *,
    limit: int,
    offset: int = 0,
    with_plays: bool = True,
) -> tuple[list[Row[Command, CommandTarget]], int]:
    """Commands sent to one station with its target row, newest first, and their number."""
    query = (
        select(Command, CommandTarget)
        .join(CommandTarget, CommandTarget.command_id == Command.id)
        .where(CommandTarget.station_id == station_id)
        .order_by(Command.id.desc())
    )
    if not with_plays:
        query = query.where(Command.type != "play")
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.execute(query.limit(limit).offset(offset)).all())
    return rows, int(total or 0)


TARGET_FIELDS = ("status", "reason", "station_time", "clock_offset_ms")


def command_read(command: Command, target: CommandTarget | None) -> CommandRead:
    """A command as the API shows it, with how far it got at one station (``-``: not
    for one station)."""
    at_station = (
        columns_of(target, TARGET_FIELDS)
        if target
        else dict.fromkeys(TARGET_FIELDS) | {"status": "-"}
    )
    return CommandRead.model_validate(columns_of(command, CommandRead.model_fields) | at_station)


def command_target(session: Session, command: Command) -> CommandTarget | None:
    """The (first) target row of a command: a one-station command's only one."""
    return session.scalar(
        select(CommandTarget).where(CommandTarget.command_id == command.id).limit(1)
    )


def command_targets(session: Session, command: Command) -> list[tuple[str, int, CommandTarget]]:
    """A command's targets as (sid, area id, target), by sid."""
    rows = session.execute(
        select(Station.sid, Station.area_id, CommandTarget)
        .join(CommandTarget, CommandTarget.station_id == Station.id)
        .where(CommandTarget.command_id == command.id)
        .order_by(Station.sid)
    ).all()
    return [(sid, area_id, target) for sid, area_id, target in rows]


# --- play log ------------------------------------------------------------------------------


def play_query(
    session: Session,
    scope: Collection[int] | None,
    *,
    sid: str | None = None,
    area: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    status: PlayStatus | None = None,
    source: str | None = None,
    started_by: dt.datetime | None = None,
) -> Select[Play, str, str, str]:
    """Plays matching the filters, as (play, station sid, station name, area code).

    `until` is exclusive; `started_by` keeps plays planned to start no later than it
    (what has happened by then).  An unknown area answers `AreaNotFound`.
    """
    query = scoped(
        select(Play, Station.sid, Station.name, Area.code)
        .join(Station, Station.id == Play.station_id)
        .join(Area, Area.id == Station.area_id),
        scope,
    )
    if sid is not None:
        query = query.where(Station.sid == sid)
    if area is not None:
        root = stations.get_area(session, area)
        query = query.where(Station.area_id.in_(stations.subtree_ids(session, [root.id])))
    if since is not None:
        query = query.where(Play.planned_start >= since)
    if until is not None:
        query = query.where(Play.planned_start < until)
    if started_by is not None:
        query = query.where(Play.planned_start <= started_by)
    if status is not None:
        query = query.where(Play.status == status)
    if source is not None:
        query = query.where(Play.source == source)
    return query


def list_plays(
    session: Session,
    query: Select[Play, str, str, str],
    *,
    limit: int,
    offset: int,
    newest_first: bool = False,
) -> tuple[list[Row[Play, str, str, str]], int]:
    """One page of a `play_query` (by planned start, then sid) and its number of rows."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    order = Play.planned_start.desc() if newest_first else Play.planned_start
    rows = session.execute(query.order_by(order, Station.sid).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def play_reads(rows: Sequence[Row[Play, str, str, str]]) -> list[PlayRead]:
    """`list_plays` rows as the API shows them (the play with its station and area)."""
    return [
        PlayRead.model_validate(
            columns_of(p, PlayRead.model_fields) | {"sid": sid, "area_code": code}
        )
        for p, sid, _name, code in rows
    ]


def play_totals(
    session: Session,
    query: Select[Play, str, str, str],
    tz: ZoneInfo,
    *,
    by: Literal["station", "area"] = "area",
    unit_at: Callable[[int, dt.date], int | None] | None = None,
) -> list[TotalRow]:
    """Broadcast minutes and play counts per local day, per station or per ward/commune
    (stations in none under `OTHER_UNIT`), by day then key; minutes to 1/100.

    By area, a play counts for the unit its station lies in today, or, given `unit_at`
    (station id, local day → ward/commune id; see `broadcaster.reorg.service.UnitHistory`),
    for the unit it says: the unit of the play's time, or of a chosen day."""
    areas = all_areas(session)
    rows = session.execute(
        query.with_only_columns(
            Play.planned_start,
            Play.status,
            Play.played_ms,
            Station.sid,
            Station.name,
            Station.area_id,
            Station.id,
        ).order_by(None)
    ).all()
    totals: dict[tuple[dt.date, str], TotalRow] = {}
    for start, status, played_ms, sid, station_name, area_id, station_id in rows:
        day = start.astimezone(tz).date()
        if by == "station":
            key, name = sid, station_name
        else:
            unit = unit_of(areas, unit_at(station_id, day) if unit_at else area_id)
            key, name = (unit.code, unit.name) if unit else OTHER_UNIT
        row = totals.setdefault(
            (day, key),
            TotalRow(
                date=day,
                key=key,
                name=name,
                minutes=0,
                plays=0,
                played=0,
                partial=0,
                missed=0,
                not_heard=0,
            ),
        )
        row.plays += 1
        row.minutes += (played_ms or 0) / 60_000
        if status is PlayStatus.PLAYED:
            row.played += 1
        elif status in (PlayStatus.PARTIAL, PlayStatus.PREEMPTED):
            row.partial += 1
        elif status is PlayStatus.MISSED:
            row.missed += 1
        elif status is PlayStatus.NOT_HEARD:
            row.not_heard += 1
    out = sorted(totals.values(), key=lambda r: (r.date, r.key))
    for row in out:
        row.minutes = round(row.minutes, 2)
    return out


TOTALS_CSV_HEADERS = {
    by: [
        "Ngày",
        code,
        "Tên",
        "Số phút phát",
        "Số lượt",
        "Đã phát",
        "Phát một phần",
        "Không phát",
        "Không nghe được",
    ]
    for by, code in (("station", "Mã trạm"), ("area", "Mã địa bàn"))
}


def totals_csv(rows: Sequence[TotalRow], *, by: Literal["station", "area"]) -> str:
    """`play_totals` as CSV for spreadsheets (UTF-8 with BOM, CRLF, Vietnamese headers)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TOTALS_CSV_HEADERS[by])
    for r in rows:
        writer.writerow(
            [
                r.date.isoformat(),
                r.key,
                r.name,
                f"{r.minutes:.2f}",
                r.plays,
                r.played,
                r.partial,
                r.missed,
                r.not_heard,
            ]
        )
    return out.getvalue()


# --- stations: overview, one station's page, convergence ----------------------------------


def station_states(
    session: Session, scope: Collection[int] | None
) -> list[tuple[Station, StationState | None]]:
    """Enabled stations inside the scope with their live state (None: never connected)."""
    rows = session.execute(
        scoped(
            select(Station, StationState)
            .outerjoin(StationState, StationState.station_id == Station.id)
            .where(Station.enabled.is_(True))
            .order_by(Station.sid),
            scope,
        )
    ).all()
    return [(station, state) for station, state in rows]


def stations_behind(
    session: Session, scope: Collection[int] | None
) -> list[tuple[str, StationState]]:
    """Enabled stations behind their desired state (not applied yet, or missing media)."""
    rows = session.execute(
        scoped(
            select(Station.sid, StationState)
            .join(StationState, StationState.station_id == Station.id)
            .where(Station.enabled.is_(True))
            .order_by(Station.sid),
            scope,
        )
    ).all()
    return [
        (sid, state)
        for sid, state in rows
        if state.applied_version != state.desired_published_version or state.missing
    ]


def enabled_stations(session: Session, scope: Collection[int] | None) -> list[Station]:
    return list(
        session.scalars(
            scoped(select(Station).where(Station.enabled.is_(True)).order_by(Station.sid), scope)
        )
    )


def upcoming(
    session: Session, scope: Collection[int] | None, now: dt.datetime, *, limit: int = 8
) -> list[Row[str, dt.datetime, dt.datetime, int, str, int]]:
    """What plays now or next: (title, start, end, priority, source, number of stations)."""
    rows = session.execute(
        scoped(
            select(
                Play.title,
                Play.planned_start,
                Play.planned_end,
                Play.priority,
                Play.source,
                func.count(Play.id),
            )
            .join(Station, Station.id == Play.station_id)
            .where(
                Play.status.in_([PlayStatus.PLANNED, PlayStatus.PLAYING]),
                Play.planned_end >= now,
            )
            .group_by(Play.title, Play.planned_start, Play.planned_end, Play.priority, Play.source)
            .order_by(Play.planned_start, Play.title)
            .limit(limit),
            scope,
        )
    ).all()
    return list(rows)


def recent_plays(
    session: Session, station_id: int, now: dt.datetime, *, limit: int = 15
) -> list[Play]:
    """A station's plays planned to start by `now`, newest first."""
    return list(
        session.scalars(
            select(Play)
            .where(Play.station_id == station_id, Play.planned_start <= now)
            .order_by(Play.planned_start.desc())
            .limit(limit)
        )
    )


def play_statuses(
    session: Session, station_id: int, item_ids: Sequence[str]
) -> dict[str, PlayStatus]:
    """The play-log status of some playlist items at one station."""
    rows = session.execute(
        select(Play.item_id, Play.status).where(
            Play.station_id == station_id, Play.item_id.in_(list(item_ids))
        )
    )
    return {item_id: status for item_id, status in rows if item_id is not None}


def playing_title(
    session: Session, station_id: int, *, item_id: str | None, cmd_id: str | None
) -> str | None:
    """The title of what a station reports playing (a playlist item or a command)."""
    match = Play.item_id == item_id if item_id else Play.cmd_id == cmd_id
    return session.scalar(select(Play.title).where(Play.station_id == station_id, match).limit(1))
