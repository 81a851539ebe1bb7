"""What the JSON API and the dashboard both read: broadcasts an account may see and their
progress, station commands, the play log and its daily totals, the ward/commune an area
lies in, and what the overview and a station's page show.

Routers and pages call these functions; they run no queries of their own.  Everything
here reads (no writes, no commits): the boundary owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, NamedTuple, TypeVarTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from audio_library.models import CATEGORIES, MediaAsset
from broadcaster.dispatch import broadcasts, outbox, staged
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
    MinutesRow,
    PlayRead,
    Progress,
    TargetRead,
    TotalRow,
)
from broadcaster.reorg import service as reorg
from kernel import spreadsheets
from kernel.db import among, columns_of, paginate
from kernel.errors import InvalidInput, NotFoundError
from kernel.security import Principal
from kernel.tiers import Tier, tier_of
from schedules.models import ItemKind, ProgrammeItem, ScheduleRule
from stations import service as stations
from stations.models import Area, AreaLevel, Station, StationState

__all__ = [
    "NOT_HEARD_MINUTES",
    "OTHER_UNIT",
    "UnitAt",
    "all_areas",
    "broadcast_in_scope",
    "broadcast_minutes",
    "broadcast_progress",
    "broadcast_read",
    "command_target",
    "command_targets",
    "enabled_stations",
    "keyed_plays",
    "latest_targets",
    "list_broadcasts",
    "list_plays",
    "minutes_csv",
    "minutes_xlsx",
    "month_window",
    "play_command",
    "play_query",
    "play_reads",
    "play_statuses",
    "play_totals",
    "playing_title",
    "progress",
    "recent_plays",
    "report_window",
    "scoped",
    "station_commands",
    "station_states",
    "stations_behind",
    "totals_csv",
    "unit_of",
    "unit_reader",
    "upcoming",
    "visible_broadcasts",
]

Ts = TypeVarTuple("Ts")

OTHER_UNIT = ("-", "Khác")
"""Key and name of the totals row for stations in no ward/commune."""

UnitAt = Callable[[int, dt.date], int | None]


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


def unit_reader(session: Session, units: reorg.Units) -> UnitAt | None:
    """(station id, local day) → the ward/commune id a play counts for under `units`
    (None for today's units: the station's area today)."""
    if units == "today":
        return None
    history = reorg.UnitHistory(session)
    return history.at if units == "then" else history.as_of(units)


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
        raise NotFoundError(
            f"broadcast {broadcast_id} not found", message_vi="Không tìm thấy lượt phát"
        )
    return broadcast


def progress(session: Session, command_ids: list[int]) -> Progress:
    """How far some commands have got: targets per status, received, finished."""
    return _progress(outbox.progress(session, command_ids) if command_ids else {})


def latest_targets(broadcast_id: int) -> Select[int]:
    """Ids of each station's latest target row among the broadcast's play commands: the
    original's, or a "send again" copy's for a station that missed the original."""
    return (
        select(func.max(CommandTarget.id))
        .join(Command, Command.id == CommandTarget.command_id)
        .where(Command.broadcast_id == broadcast_id, Command.type == "play")
        .group_by(CommandTarget.station_id)
    )


def broadcast_progress(session: Session, broadcast: Broadcast) -> Progress:
    """How far a broadcast has got, station by station (each station's latest copy)."""
    rows = session.execute(
        select(CommandTarget.status, func.count())
        .where(CommandTarget.id.in_(latest_targets(broadcast.id)))
        .group_by(CommandTarget.status)
    )
    counts = {s.value: 0 for s in TargetStatus}
    # the stations of a command whose rows are not written yet (`staged`): PENDING
    counts[TargetStatus.PENDING.value] = staged.pending_of_broadcast(session, broadcast.id)
    for status, count in rows:
        counts[TargetStatus(status).value] += int(count)
    return _progress(counts)


def _progress(counts: dict[str, int]) -> Progress:
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


def _targets(session: Session, broadcast: Broadcast) -> list[TargetRead]:
    """Each station's latest target of the broadcast, by sid; a station whose rows are
    still staged (`staged`: the moments after an emergency's publish) as PENDING."""
    rows = session.execute(
        select(
            Station.id,
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
        .join(Command, Command.id == CommandTarget.command_id)
        .join(Area, Area.id == Station.area_id)
        .outerjoin(Play, (Play.station_id == Station.id) & (Play.cmd_id == Command.cmd_id))
        .outerjoin(StationState, StationState.station_id == Station.id)
        .where(CommandTarget.id.in_(latest_targets(broadcast.id)))
        .order_by(Station.sid)
    ).all()
    listed = [
        TargetRead(
            sid=sid,
            area=area,
            status=TargetStatus(st).value,
            reason=reason,
            updated_at=updated,
            play_status=PlayStatus(ps).value if ps else None,
            offline_since=(since if not online and TargetStatus(st) in UNREACHED else None),
        )
        for _, sid, area, st, reason, updated, ps, online, since in rows
    ]
    listed.extend(
        TargetRead(
            sid=pending.sid,
            area=pending.area,
            status=TargetStatus.PENDING.value,
            reason=None,
            updated_at=pending.staged_at,
            offline_since=pending.offline_since,
        )
        for pending in staged_targets(session, broadcast.id, {row[0] for row in rows})
    )
    return sorted(listed, key=lambda target: target.sid)


#: a target's statuses before the station took the command
UNREACHED = (TargetStatus.PENDING, TargetStatus.SENT)


class StagedTarget(NamedTuple):
    """A station of a broadcast whose target row is not written yet (`staged`): PENDING
    since ``staged_at``."""

    station_id: int
    sid: str
    name: str
    area: str
    staged_at: dt.datetime
    offline_since: dt.datetime | None  # offline: since when


def staged_targets(
    session: Session, broadcast_id: int, written: Collection[int] = ()
) -> list[StagedTarget]:
    """The broadcast's stations still staged (the moments after an emergency's publish,
    before its per-station rows are written), less those in ``written``, by sid."""
    staged_at = {
        station_id: at
        for station_id, at in staged.staged_of_broadcast(session, broadcast_id).items()
        if station_id not in written
    }
    if not staged_at:
        return []
    rows = session.execute(
        select(
            Station.id,
            Station.sid,
            Station.name,
            Area.name,
            StationState.online,
            StationState.offline_since,
        )
        .join(Area, Area.id == Station.area_id)
        .outerjoin(StationState, StationState.station_id == Station.id)
        .where(among(session, Station.id, sorted(staged_at)))
        .order_by(Station.sid)
    )
    return [
        StagedTarget(i, sid, name, area, staged_at[i], None if online is not False else since)
        for i, sid, name, area, online, since in rows
    ]


def broadcast_read(session: Session, broadcast: Broadcast, *, with_stations: bool) -> BroadcastRead:
    """A broadcast with the progress of its play command (and each station's, if asked)."""
    plays = [c for c in broadcasts.commands_of(session, broadcast) if c.type == "play"]
    play = plays[0] if plays else None
    return BroadcastRead.model_validate(
        columns_of(broadcast, BroadcastRead.model_fields)
        | {
            "cmd_id": play.cmd_id if play else None,
            "route": play.route.value if play else None,
            "groups": list(play.groups) if play else [],
            "resends": [c.cmd_id for c in plays[1:]],
            "progress": broadcast_progress(session, broadcast),
            "stations": _targets(session, broadcast) if with_stations and plays else None,
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
    if target is not None and target.clock_offset_ms is None:
        # the answer and the record of the send were stored by transactions that ran
        # at once (PostgreSQL): neither saw the other's time
        at_station["clock_offset_ms"] = outbox.clock_offset_ms(command, target)
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


def keyed_plays(
    session: Session,
    query: Select[Play, str, str, str],
    by: Literal["station", "area"],
    *columns: Any,
    unit_at: Callable[[int, dt.datetime], int | None] | None = None,
) -> list[tuple[Any, ...]]:
    """`columns` of a `play_query`'s plays, each row led by its key and name: the
    station's sid and name, or its ward/commune's code and name (`OTHER_UNIT` for
    stations in none).  By area, `unit_at(station id, play's planned start)` names the
    area to count the play for (the unit of another time, after a reorganisation);
    without it, the station's area today."""
    areas = all_areas(session) if by == "area" else {}
    out: list[tuple[Any, ...]] = []
    for sid, station_name, area_id, station_id, start, *values in session.execute(
        query.with_only_columns(
            Station.sid, Station.name, Station.area_id, Station.id, Play.planned_start, *columns
        ).order_by(None)
    ):
        if by == "station":
            out.append((sid, station_name, *values))
        else:
            unit = unit_of(areas, unit_at(station_id, start) if unit_at else area_id)
            out.append(((unit.code, unit.name) if unit else OTHER_UNIT) + tuple(values))
    return out


def play_totals(
    session: Session,
    query: Select[Play, str, str, str],
    tz: ZoneInfo,
    *,
    by: Literal["station", "area"] = "area",
    unit_at: UnitAt | None = None,
) -> list[TotalRow]:
    """Broadcast minutes and play counts per local day, per station or per ward/commune
    (stations in none under `OTHER_UNIT`), by day then key; minutes to 1/100.  The
    minutes are airtime heard: a not-heard play's (reported played during a speaker or
    amplifier fault) are counted apart, in ``not_heard_minutes``.

    By area, a play counts for the unit its station lies in today, or, given `unit_at`
    (station id, local day → ward/commune id; see `broadcaster.reorg.service.UnitHistory`),
    for the unit it says: the unit of the play's time, or of a chosen day."""
    totals: dict[tuple[dt.date, str], TotalRow] = {}
    for key, name, start, status, played_ms in keyed_plays(
        session,
        query,
        by,
        Play.planned_start,
        Play.status,
        Play.played_ms,
        unit_at=(lambda sid, start: unit_at(sid, start.astimezone(tz).date())) if unit_at else None,
    ):
        day = start.astimezone(tz).date()
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
        if status is PlayStatus.NOT_HEARD:
            row.not_heard_minutes += (played_ms or 0) / 60_000
        else:
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
        row.not_heard_minutes = round(row.not_heard_minutes, 2)
    return out


#: the column of airtime not heard (reported played during a speaker/amplifier fault)
NOT_HEARD_MINUTES = "Phút không nghe được"

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
        NOT_HEARD_MINUTES,
    ]
    for by, code in (("station", "Mã trạm"), ("area", "Mã địa bàn"))
}


def totals_csv(rows: Sequence[TotalRow], *, by: Literal["station", "area"]) -> str:
    """`play_totals` as CSV for Vietnamese Excel (`kernel.spreadsheets.excel_csv`: UTF-8
    with BOM, CRLF, Vietnamese headers, ``;`` and the decimal comma)."""
    table: list[list[spreadsheets.Cell]] = [
        [
            r.date.isoformat(),
            r.key,
            r.name,
            float(r.minutes),
            r.plays,
            r.played,
            r.partial,
            r.missed,
            r.not_heard,
            float(r.not_heard_minutes),
        ]
        for r in rows
    ]
    return spreadsheets.excel_csv(TOTALS_CSV_HEADERS[by], table, decimals={3: 2, 9: 2})


# --- monthly report: airtime minutes by area or station, tier and category ---------------

MAX_REPORT_DAYS = 366

MINUTES_FIELDS = tuple(MinutesRow.model_fields)

NO_CATEGORY = ("-", "Chưa phân loại")
"""Key and name of plays with no audio file (a relay, a deleted file)."""

REPORT_HEADERS = spreadsheets.UNIT_HEADERS


def month_window(month: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The local month containing `month` as [first midnight, next month's first)."""
    first = month.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return (
        dt.datetime.combine(first, dt.time(), tzinfo=tz),
        dt.datetime.combine(following, dt.time(), tzinfo=tz),
    )


def _moment(value: str, name: str, tz: ZoneInfo, *, end: bool) -> dt.datetime:
    """A plain date (local midnight; the day after it for an inclusive end) or an ISO
    timestamp (local time without an offset)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), tzinfo=tz)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"'{name}' must be a date (2026-12-01) or a timestamp (2026-12-01T05:00:00+07:00)",
            field=("query", name),
            message_vi=f"'{name}': cần một ngày (2026-12-01) hoặc một thời điểm",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def report_window(
    since: str | None, until: str | None, tz: ZoneInfo, *, today: dt.date
) -> tuple[dt.datetime, dt.datetime]:
    """The report's [from, to): plain dates (``to`` inclusive) or timestamps (``to``
    exclusive); without ``from``, the month of ``to`` (or of `today`); without ``to``,
    the end of the month ``from`` lies in."""
    start = _moment(since, "from", tz, end=False) if since else None
    end = _moment(until, "to", tz, end=True) if until else None
    if start is None:
        start = month_window((end - dt.timedelta(microseconds=1)).date() if end else today, tz)[0]
    if end is None:
        end = month_window(start.astimezone(tz).date(), tz)[1]
    if end <= start:
        raise InvalidInput(
            "'to' must be after 'from'",
            field=("query", "to"),
            message_vi="Ngày kết thúc phải sau ngày bắt đầu",
        )
    if end - start > dt.timedelta(days=MAX_REPORT_DAYS):
        raise InvalidInput(
            f"a report covers at most {MAX_REPORT_DAYS} days",
            field=("query", "to"),
            message_vi=f"Mỗi báo cáo tối đa {MAX_REPORT_DAYS} ngày",
        )
    return start, end


def _categories(
    session: Session, rule_ids: Collection[int], broadcast_ids: Collection[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The content category of schedule rules (their programme's first audio item that is
    not a jingle, else its first audio item) and of broadcasts (their audio file)."""
    by_rule: dict[int, str] = {}
    if rule_ids:
        rows = session.execute(
            select(ScheduleRule.id, ProgrammeItem.kind, ProgrammeItem.position, MediaAsset.category)
            .join(ProgrammeItem, ProgrammeItem.programme_id == ScheduleRule.programme_id)
            .join(MediaAsset, MediaAsset.id == ProgrammeItem.asset_id)
            .where(ScheduleRule.id.in_(list(rule_ids)))
            .order_by(ScheduleRule.id, ProgrammeItem.position)
        ).all()
        jingles: dict[int, str] = {}
        for rule_id, kind, _position, category in rows:
            if kind is ItemKind.JINGLE or category == "jingle":
                jingles.setdefault(rule_id, category)
            else:
                by_rule.setdefault(rule_id, category)
        by_rule = jingles | by_rule
    by_broadcast: dict[int, str] = {}
    if broadcast_ids:
        by_broadcast = {
            broadcast_id: category
            for broadcast_id, category in session.execute(
                select(Broadcast.id, MediaAsset.category)
                .join(MediaAsset, MediaAsset.id == Broadcast.asset_id)
                .where(Broadcast.id.in_(list(broadcast_ids)))
            )
        }
    return by_rule, by_broadcast


def broadcast_minutes(
    session: Session,
    query: Select[Play, str, str, str],
    *,
    by: Literal["station", "area"] = "area",
    units: reorg.Units = "today",
    tz: ZoneInfo | None = None,
) -> list[MinutesRow]:
    """Airtime minutes heard (what the stations reported playing: the sum of
    ``played_ms``, as `play_totals` counts them; a not-heard play's minutes apart, in
    ``not_heard_minutes``) and plays of a `play_query`, per ward/commune (stations in
    none under `OTHER_UNIT`) or per station, tier (from the priority) and content
    category (the audio file's), by key, tier (highest first) and category; minutes to
    1/100.

    By ward/commune after a reorganisation, `units` says which units the plays count
    for (`unit_reader`; `tz` gives a play's local day, default UTC): the totals are the
    same either way, only the rows differ."""
    unit_at = unit_reader(session, units) if by == "area" else None
    zone = tz or dt.UTC
    rows = keyed_plays(
        session,
        query,
        by,
        Play.played_ms,
        Play.priority,
        Play.rule_id,
        Play.broadcast_id,
        Play.status,
        unit_at=(
            (lambda sid, start: unit_at(sid, start.astimezone(zone).date())) if unit_at else None
        ),
    )
    by_rule, by_broadcast = _categories(
        session, {r[4] for r in rows if r[4] is not None}, {r[5] for r in rows if r[5] is not None}
    )
    totals: dict[tuple[str, Tier, str], MinutesRow] = {}
    for key, name, played_ms, priority, rule_id, broadcast_id, status in rows:
        tier = tier_of(priority)
        category = (
            by_rule.get(rule_id) if rule_id is not None else by_broadcast.get(broadcast_id or -1)
        )
        cat_key, cat_name = (
            (category, CATEGORIES.get(category, category)) if category else NO_CATEGORY
        )
        row = totals.get((key, tier, cat_key))
        if row is None:
            row = totals[key, tier, cat_key] = MinutesRow.model_validate(
                dict(
                    zip(
                        MINUTES_FIELDS,
                        (key, name, tier.value, tier.label_vi, cat_key, cat_name, 0, 0, 0),
                        strict=True,
                    )
                )
            )
        row.plays += 1
        if status is PlayStatus.NOT_HEARD:
            row.not_heard_minutes += (played_ms or 0) / 60_000
        else:
            row.minutes += (played_ms or 0) / 60_000
    out = sorted(
        totals.values(),
        key=lambda r: (r.name, r.key, -Tier(r.tier).priority, r.category_name),
    )
    for row in out:
        row.minutes = round(row.minutes, 2)
        row.not_heard_minutes = round(row.not_heard_minutes, 2)
    return out


def _report_table(
    rows: Sequence[MinutesRow], by: Literal["station", "area"]
) -> tuple[list[str], list[tuple[str, str, str, str, float, int, float]]]:
    headers = [
        f"Mã {REPORT_HEADERS[by].lower()}",
        REPORT_HEADERS[by],
        "Cấp ưu tiên",
        "Thể loại",
        "Số phút phát",
        "Số lượt phát",
        NOT_HEARD_MINUTES,
    ]
    return headers, [
        (
            r.key,
            r.name,
            r.tier_name,
            r.category_name,
            float(r.minutes),
            r.plays,
            float(r.not_heard_minutes),
        )
        for r in rows
    ]


def minutes_csv(rows: Sequence[MinutesRow], *, by: Literal["station", "area"]) -> str:
    """`broadcast_minutes` as CSV for Vietnamese Excel (`kernel.spreadsheets.excel_csv`:
    UTF-8 with BOM, CRLF, Vietnamese headers, ``;`` and the decimal comma)."""
    headers, table = _report_table(rows, by)
    return spreadsheets.excel_csv(headers, table, decimals={4: 2, 6: 2})


def minutes_xlsx(
    rows: Sequence[MinutesRow], *, by: Literal["station", "area"], title: str
) -> bytes:
    """`broadcast_minutes` as an Excel workbook: one sheet, Vietnamese headers, minutes
    as numbers (two decimals), a total row."""
    headers, table = _report_table(rows, by)
    total: list[spreadsheets.Cell] = [
        "Tổng",
        "",
        "",
        "",
        round(sum(r.minutes for r in rows), 2),
        sum(r.plays for r in rows),
        round(sum(r.not_heard_minutes for r in rows), 2),
    ]
    return spreadsheets.xlsx(
        title=title,
        sheet="Số phút phát",
        headers=headers,
        rows=table,
        formats={4: "0.00", 6: "0.00"},
        widths=(24, 32, 16, 26, 14, 14, 20),
        total=total,
    )


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
