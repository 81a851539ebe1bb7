"""Broadcasts, station commands, the play log and convergence."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from audio_library.dependencies import LibraryDep
from broadcaster.db import read_session
from broadcaster.dispatch import broadcasts, deadletters, outbox
from broadcaster.dispatch.models import (
    Broadcast,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    TargetStatus,
)
from broadcaster.dispatch.schemas import (
    BroadcastCreate,
    BroadcastRead,
    CommandRead,
    ConvergenceRow,
    DeadLetterRead,
    PlayRead,
    Progress,
    StationCommandCreate,
    TargetRead,
    TotalRow,
)
from kernel.db import paginate, utcnow
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    TimeRangeDep,
)
from kernel.errors import NotFoundError
from kernel.security import Permission, Principal
from stations import service as stations
from stations.dependencies import StationDep
from stations.models import Area, AreaLevel, Station, StationState
from stations.schemas import CODE_PATTERN, SID_PATTERN, ListOf

router = APIRouter(prefix="/api/v1")

SSE_POLL_S = 0.5
SSE_MAX_S = 15 * 60


def _wake(request: Request) -> None:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.wake()


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


# --- broadcasts ------------------------------------------------------------------------


def _progress(session: Session, command_ids: list[int]) -> Progress:
    counts = outbox.progress(session, command_ids) if command_ids else {}
    total = sum(counts.values())
    received = sum(
        counts.get(s.value, 0)
        for s in TargetStatus
        if s.rank >= TargetStatus.RECEIVED.rank and s is not TargetStatus.EXPIRED
    )
    finished = sum(counts.get(s.value, 0) for s in TargetStatus if s.terminal)
    return Progress(total=total, by_status=counts, received=received, finished=finished)


def _broadcast_read(
    session: Session, broadcast: Broadcast, *, with_stations: bool
) -> BroadcastRead:
    commands = broadcasts.commands_of(session, broadcast)
    play = next((c for c in commands if c.type == "play"), None)
    per_station = None
    if with_stations and play is not None:
        rows = session.execute(
            select(
                Station.sid,
                CommandTarget.status,
                CommandTarget.reason,
                CommandTarget.updated_at,
                Play.status,
            )
            .join(CommandTarget, CommandTarget.station_id == Station.id)
            .outerjoin(Play, (Play.station_id == Station.id) & (Play.cmd_id == play.cmd_id))
            .where(CommandTarget.command_id == play.id)
            .order_by(Station.sid)
        ).all()
        per_station = [
            TargetRead(
                sid=sid,
                status=TargetStatus(st).value,
                reason=reason,
                updated_at=updated,
                play_status=PlayStatus(ps).value if ps else None,
            )
            for sid, st, reason, updated, ps in rows
        ]
    return BroadcastRead(
        id=broadcast.id,
        title=broadcast.title,
        tier=broadcast.tier,
        priority=broadcast.priority,
        status=broadcast.status.value,
        content=broadcast.content,
        targets=broadcast.targets,
        station_count=broadcast.station_count,
        start_at=broadcast.start_at,
        until=broadcast.until,
        repeat=broadcast.repeat,
        not_after=broadcast.not_after,
        cmd_id=play.cmd_id if play else None,
        route=play.route.value if play else None,
        groups=list(play.groups) if play else [],
        approval_note=broadcast.approval_note,
        created_by=broadcast.created_by,
        created_at=broadcast.created_at,
        stopped_at=broadcast.stopped_at,
        stopped_by=broadcast.stopped_by,
        progress=_progress(session, [play.id] if play else []),
        stations=per_station,
    )


def _broadcast_in_scope(session: Session, principal: Principal, broadcast_id: int) -> Broadcast:
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFoundError(f"broadcast {broadcast_id} not found")
    if principal.scope is not None:
        outside = session.scalar(
            select(Play.id)
            .join(Station, Station.id == Play.station_id)
            .where(Play.broadcast_id == broadcast.id, Station.area_id.not_in(principal.scope))
            .limit(1)
        )
        if outside is not None:
            raise NotFoundError(f"broadcast {broadcast_id} not found")
    return broadcast


@router.post("/broadcasts", status_code=status.HTTP_201_CREATED, tags=["broadcasts"])
def create_broadcast(
    data: BroadcastCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    audit: Audit,
) -> BroadcastRead:
    """Broadcast now (or at `start_at`) to stations, groups and areas.

    Emergency broadcasts need the emergency permission; the sender's permission then
    stands in for approval (recorded), and text is spoken on the spot.
    """
    broadcast, command = broadcasts.create(session, library, data, principal)
    audit.record(
        "broadcast.create",
        "broadcast",
        [str(broadcast.id), *data.targets.groups, *data.targets.areas, *data.targets.stations[:50]],
        after={
            "tier": data.tier,
            "cmd_id": command.cmd_id,
            "stations": broadcast.station_count,
            "content": data.content.model_dump(exclude_none=True),
            "approval_note": broadcast.approval_note,
        },
    )
    session.commit()
    _wake(request)
    return _broadcast_read(session, broadcast, with_stations=False)


@router.get("/broadcasts", response_model=ListOf[BroadcastRead], tags=["broadcasts"])
def list_broadcasts(
    session: SessionDep, principal: CurrentPrincipal, page: PageDep
) -> ListOf[BroadcastRead]:
    query: Select[Broadcast] = select(Broadcast).order_by(Broadcast.id.desc())
    if principal.scope is not None:
        outside = (
            select(Play.broadcast_id)
            .join(Station, Station.id == Play.station_id)
            .where(Play.broadcast_id.is_not(None), Station.area_id.not_in(principal.scope))
        )
        query = query.where(Broadcast.id.not_in(outside))
    items, total = paginate(session, query, page.limit, page.offset)
    return ListOf(
        items=[_broadcast_read(session, b, with_stations=False) for b in items], total=total
    )


@router.get("/broadcasts/{broadcast_id}", tags=["broadcasts"])
def get_broadcast(
    broadcast_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
    stations_: Annotated[bool, Query(alias="stations")] = True,
) -> BroadcastRead:
    """A broadcast with its progress at every station."""
    broadcast = _broadcast_in_scope(session, principal, broadcast_id)
    return _broadcast_read(session, broadcast, with_stations=stations_)


@router.get(
    "/broadcasts/{broadcast_id}/events", tags=["broadcasts"], response_class=StreamingResponse
)
async def broadcast_events(
    broadcast_id: IdPath, request: Request, principal: CurrentPrincipal
) -> StreamingResponse:
    """Server-sent events: a `progress` event whenever the counts change, then `done`."""
    factory = request.app.state.sessionmaker

    def snapshot() -> BroadcastRead:
        with read_session(factory) as session:
            broadcast = _broadcast_in_scope(session, principal, broadcast_id)
            return _broadcast_read(session, broadcast, with_stations=False)

    first = await run_in_threadpool(snapshot)

    async def stream() -> AsyncIterator[str]:
        last = None
        current = first
        started = asyncio.get_running_loop().time()
        while True:
            payload = current.progress.model_dump_json()
            if payload != last:
                yield f"event: progress\ndata: {payload}\n\n"
                last = payload
            finished = (
                current.progress.total and current.progress.finished == current.progress.total
            )
            elapsed = asyncio.get_running_loop().time() - started
            if finished or elapsed > SSE_MAX_S or await request.is_disconnected():
                yield f"event: done\ndata: {json.dumps({'status': current.status})}\n\n"
                return
            await asyncio.sleep(SSE_POLL_S)
            current = await run_in_threadpool(snapshot)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/broadcasts/{broadcast_id}/stop", tags=["broadcasts"])
def stop_broadcast(
    broadcast_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> BroadcastRead:
    broadcast = _broadcast_in_scope(session, principal, broadcast_id)
    command = broadcasts.stop(session, broadcast, principal)
    audit.record(
        "broadcast.stop", "broadcast", [str(broadcast.id)], after={"cmd_id": command.cmd_id}
    )
    session.commit()
    _wake(request)
    return _broadcast_read(session, broadcast, with_stations=False)


# --- station commands ------------------------------------------------------------------


def _command_read(command: Command, target: CommandTarget | None) -> CommandRead:
    return CommandRead(
        cmd_id=command.cmd_id,
        type=command.type,
        body=command.body,
        issued_at=command.issued_at,
        not_after=command.not_after,
        published_at=command.published_at,
        created_by=command.created_by,
        status=target.status.value if target else "-",
        reason=target.reason if target else None,
        station_time=target.station_time if target else None,
        clock_offset_ms=target.clock_offset_ms if target else None,
    )


@router.post("/stations/{sid}/commands", status_code=status.HTTP_201_CREATED, tags=["stations"])
def command_station(
    station: StationDep,
    data: StationCommandCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> CommandRead:
    """Volume, stop, ping (clock offset), sync, rebirth or reboot one station."""
    principal.require_area(Permission.STATIONS_COMMAND, station.area_id)
    body: dict[str, object] = {}
    if data.type == "volume":
        body = {"level": data.level}
    elif data.type == "stop":
        body = {
            k: v
            for k, v in (("max_priority", data.max_priority), ("cmd_id", data.cmd_id))
            if v is not None
        }
    command = broadcasts.command_station(
        session,
        station,
        type=data.type,
        body=body,
        created_by=principal.username,
        ttl_s=data.expires_in_s,
    )
    audit.record(
        "station.command",
        "station",
        [station.sid],
        after={"type": data.type, **body, "cmd_id": command.cmd_id},
    )
    session.commit()
    _wake(request)
    target = session.scalar(select(CommandTarget).where(CommandTarget.command_id == command.id))
    return _command_read(command, target)


@router.get("/stations/{sid}/commands", response_model=ListOf[CommandRead], tags=["stations"])
def station_commands(
    station: StationDep, session: SessionDep, page: PageDep
) -> ListOf[CommandRead]:
    query = (
        select(Command, CommandTarget)
        .join(CommandTarget, CommandTarget.command_id == Command.id)
        .where(CommandTarget.station_id == station.id)
        .order_by(Command.id.desc())
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.limit(page.limit).offset(page.offset)).all()
    return ListOf(items=[_command_read(c, t) for c, t in rows], total=int(total))


@router.get("/commands/{cmd_id}", tags=["stations"])
def get_command(
    cmd_id: Annotated[str, Path(max_length=128)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> dict[str, object]:
    """A command's progress at each of its stations."""
    command = outbox.find(session, cmd_id)
    if command is None:
        raise NotFoundError(f"command {cmd_id!r} not found")
    rows = session.execute(
        select(Station.sid, Station.area_id, CommandTarget)
        .join(CommandTarget, CommandTarget.station_id == Station.id)
        .where(CommandTarget.command_id == command.id)
        .order_by(Station.sid)
    ).all()
    if principal.scope is not None and any(not principal.reaches(a) for _, a, _ in rows):
        raise NotFoundError(f"command {cmd_id!r} not found")
    return {
        "command": _command_read(command, None).model_dump(
            mode="json", exclude={"status", "reason", "station_time", "clock_offset_ms"}
        ),
        "stations": [
            {
                "sid": sid,
                **_command_read(command, target).model_dump(
                    mode="json", include={"status", "reason", "station_time", "clock_offset_ms"}
                ),
            }
            for sid, _, target in rows
        ],
        "progress": _progress(session, [command.id]).model_dump(),
    }


# --- play log --------------------------------------------------------------------------


def _play_query(
    session: Session,
    principal: Principal,
    *,
    station: str | None,
    area: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    status_: PlayStatus | None,
    source: str | None,
) -> Select[Play, str, str]:
    query = (
        select(Play, Station.sid, Area.code)
        .join(Station, Station.id == Play.station_id)
        .join(Area, Area.id == Station.area_id)
    )
    if principal.scope is not None:
        query = query.where(Station.area_id.in_(principal.scope))
    if station is not None:
        query = query.where(Station.sid == station)
    if area is not None:
        root = stations.get_area(session, area)
        query = query.where(Station.area_id.in_(stations.subtree_ids(session, [root.id])))
    if since is not None:
        query = query.where(Play.planned_start >= since)
    if until is not None:
        query = query.where(Play.planned_start < until)
    if status_ is not None:
        query = query.where(Play.status == status_)
    if source is not None:
        query = query.where(Play.source == source)
    return query


StationQ = Annotated[str | None, Query(pattern=SID_PATTERN)]
AreaQ = Annotated[str | None, Query(pattern=CODE_PATTERN)]


@router.get("/playlog", response_model=ListOf[PlayRead], tags=["playlog"])
def playlog(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    window: TimeRangeDep,
    station: StationQ = None,
    area: AreaQ = None,
    status_: Annotated[PlayStatus | None, Query(alias="status")] = None,
    source: Annotated[Literal["schedule", "broadcast"] | None, Query()] = None,
) -> ListOf[PlayRead]:
    """What was planned and what stations report they played (proof of play)."""
    since, until = window.since, window.until
    query = _play_query(
        session,
        principal,
        station=station,
        area=area,
        since=since,
        until=until,
        status_=status_,
        source=source,
    ).order_by(Play.planned_start, Station.sid)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.limit(page.limit).offset(page.offset)).all()
    items = [
        PlayRead(
            sid=sid,
            area_code=code,
            source=p.source,
            item_id=p.item_id,
            cmd_id=p.cmd_id,
            rule_id=p.rule_id,
            broadcast_id=p.broadcast_id,
            title=p.title,
            kind=p.kind,
            priority=p.priority,
            planned_start=p.planned_start,
            planned_end=p.planned_end,
            expected_ms=p.expected_ms,
            status=p.status.value,
            started_at=p.started_at,
            ended_at=p.ended_at,
            played_ms=p.played_ms,
            reason=p.reason,
        )
        for p, sid, code in rows
    ]
    return ListOf(items=items, total=int(total))


@router.get("/playlog/totals", tags=["playlog"], response_model=list[TotalRow])
def playlog_totals(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    window: TimeRangeDep,
    by: Literal["station", "area"] = "area",
    area: AreaQ = None,
    format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """Broadcast minutes per day, per station or per ward/commune (CSV for spreadsheets)."""
    tz = _tz(request)
    now = utcnow()
    since = window.since or now - dt.timedelta(days=7)
    until = window.until or now + dt.timedelta(days=1)
    query = _play_query(
        session,
        principal,
        station=None,
        area=area,
        since=since,
        until=until,
        status_=None,
        source=None,
    )
    units = _units(session)
    names = {a.id: a.name for a in session.scalars(select(Area))}
    codes = {a.id: a.code for a in session.scalars(select(Area))}
    station_rows = session.execute(select(Station.sid, Station.name, Station.area_id))
    station_names: dict[str, str] = {}
    station_area: dict[str, int] = {}
    for station_sid, station_name, area_id in station_rows:
        station_names[station_sid] = station_name
        station_area[station_sid] = area_id
    totals: dict[tuple[dt.date, str], TotalRow] = {}
    for play, sid, _code in session.execute(query).all():
        day = play.planned_start.astimezone(tz).date()
        if by == "station":
            key, name = sid, station_names.get(sid, sid)
        else:
            unit = units.get(station_area.get(sid, -1))
            key = codes.get(unit, "?") if unit else "?"
            name = names.get(unit, "?") if unit else "?"
        row = totals.setdefault(
            (day, key),
            TotalRow(
                date=day, key=key, name=name, minutes=0, plays=0, played=0, partial=0, missed=0
            ),
        )
        row.plays += 1
        row.minutes += (play.played_ms or 0) / 60_000
        if play.status is PlayStatus.PLAYED:
            row.played += 1
        elif play.status in (PlayStatus.PARTIAL, PlayStatus.PREEMPTED):
            row.partial += 1
        elif play.status is PlayStatus.MISSED:
            row.missed += 1
    rows = sorted(totals.values(), key=lambda r: (r.date, r.key))
    for row in rows:
        row.minutes = round(row.minutes, 2)
    if format_ == "csv":
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["date", by, "name", "minutes", "plays", "played", "partial", "missed"])
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
                ]
            )
        return Response(
            out.getvalue().encode(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="playlog-totals-{by}.csv"'},
        )
    return Response(
        json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False).encode(),
        media_type="application/json",
    )


def _units(session: Session) -> dict[int, int]:
    """Area id -> the id of its ward/commune (itself for a ward/commune)."""
    areas = {a.id: a for a in session.scalars(select(Area))}
    out: dict[int, int] = {}
    for area_id in areas:
        cursor = areas.get(area_id)
        while cursor is not None and cursor.level not in (AreaLevel.WARD, AreaLevel.COMMUNE):
            cursor = areas.get(cursor.parent_id) if cursor.parent_id else None
        if cursor is not None:
            out[area_id] = cursor.id
    return out


# --- convergence and status ------------------------------------------------------------


@router.get("/dispatch/convergence", response_model=ListOf[ConvergenceRow], tags=["dispatch"])
def convergence(session: SessionDep, principal: CurrentPrincipal) -> ListOf[ConvergenceRow]:
    """Stations behind their desired state (not applied yet, or missing media)."""
    query = (
        select(Station.sid, StationState)
        .join(StationState, StationState.station_id == Station.id)
        .where(Station.enabled.is_(True))
        .order_by(Station.sid)
    )
    if principal.scope is not None:
        query = query.where(Station.area_id.in_(principal.scope))
    rows = []
    for sid, state in session.execute(query).all():
        behind = state.applied_version != state.desired_published_version or bool(state.missing)
        if not behind:
            continue
        rows.append(
            ConvergenceRow(
                sid=sid,
                online=state.online,
                desired_version=state.desired_version,
                published_version=state.desired_published_version,
                applied_version=state.applied_version,
                missing=list(state.missing or []),
                behind_since=state.desired_at,
            )
        )
    return ListOf(items=rows, total=len(rows))


DeadLetterCategory = Literal[
    "topic",
    "oversize",
    "encoding",
    "json",
    "schema",
    "model",
    "range",
    "store",
    "handler",
    "internal",
]


@router.get("/dispatch/dead-letters", response_model=ListOf[DeadLetterRead], tags=["dispatch"])
def dead_letters(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    window: TimeRangeDep,
    station: StationQ = None,
    category: Annotated[DeadLetterCategory | None, Query()] = None,
) -> ListOf[DeadLetterRead]:
    """Station messages quarantined instead of stored, newest first (administrators and
    technicians): what a station sent that could not be used, and why."""
    principal.require(Permission.STATIONS_WRITE)
    stmt = deadletters.query(
        sid=station,
        category=category,
        since=window.since,
        until=window.until,
        scope=principal.scope,
    )
    items, total = deadletters.page(session, stmt, limit=page.limit, offset=page.offset)
    return ListOf(items=[DeadLetterRead.model_validate(i) for i in items], total=total)


@router.get("/dispatch/status", tags=["dispatch"])
def dispatch_status(request: Request, principal: CurrentPrincipal) -> dict[str, object]:
    """The worker: broker connection, counters of what stations sent, last rebuild."""
    principal.require(Permission.STATIONS_READ)
    runtime = getattr(request.app.state, "runtime", None)
    return runtime.status() if runtime is not None else {"role": "none"}
