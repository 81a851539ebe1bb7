"""Broadcasts, station commands, the play log and convergence."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from audio_library.dependencies import LibraryDep
from broadcaster.db import read_session
from broadcaster.dispatch import broadcasts, deadletters, outbox, reports
from broadcaster.dispatch.models import (
    PlayStatus,
)
from broadcaster.dispatch.schemas import (
    BroadcastCreate,
    BroadcastRead,
    CommandRead,
    ConvergenceRow,
    DeadLetterRead,
    MinutesRow,
    PlayRead,
    StationCommandCreate,
    TotalRow,
)
from broadcaster.reorg import service as reorg
from kernel.db import utcnow
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    TimeRangeDep,
    csv_response,
)
from kernel.errors import InvalidInput, NotFoundError
from kernel.security import Permission
from stations.dependencies import StationDep
from stations.schemas import CODE_PATTERN, SID_PATTERN, ListOf

router = APIRouter(prefix="/api/v1")

SSE_POLL_S = 0.5
SSE_MAX_S = 15 * 60


def _wake(request: Request) -> None:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.wake()


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"invalid date {value!r}", field="units", message_vi="Ngày không hợp lệ"
        ) from exc


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


# --- broadcasts ------------------------------------------------------------------------


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
    return reports.broadcast_read(session, broadcast, with_stations=False)


@router.get("/broadcasts", response_model=ListOf[BroadcastRead], tags=["broadcasts"])
def list_broadcasts(
    session: SessionDep, principal: CurrentPrincipal, page: PageDep
) -> ListOf[BroadcastRead]:
    items, total = reports.list_broadcasts(session, principal, limit=page.limit, offset=page.offset)
    return ListOf(
        items=[reports.broadcast_read(session, b, with_stations=False) for b in items], total=total
    )


@router.get("/broadcasts/{broadcast_id}", tags=["broadcasts"])
def get_broadcast(
    broadcast_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
    stations_: Annotated[bool, Query(alias="stations")] = True,
) -> BroadcastRead:
    """A broadcast with its progress at every station."""
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    return reports.broadcast_read(session, broadcast, with_stations=stations_)


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
            broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
            return reports.broadcast_read(session, broadcast, with_stations=False)

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
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    command = broadcasts.stop(session, broadcast, principal)
    audit.record(
        "broadcast.stop", "broadcast", [str(broadcast.id)], after={"cmd_id": command.cmd_id}
    )
    session.commit()
    _wake(request)
    return reports.broadcast_read(session, broadcast, with_stations=False)


# --- station commands ------------------------------------------------------------------


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
    return reports.command_read(command, reports.command_target(session, command))


@router.get("/stations/{sid}/commands", response_model=ListOf[CommandRead], tags=["stations"])
def station_commands(
    station: StationDep, session: SessionDep, page: PageDep
) -> ListOf[CommandRead]:
    rows, total = reports.station_commands(
        session, station.id, limit=page.limit, offset=page.offset
    )
    return ListOf(items=[reports.command_read(c, t) for c, t in rows], total=total)


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
    rows = reports.command_targets(session, command)
    if principal.scope is not None and any(not principal.reaches(a) for _, a, _ in rows):
        raise NotFoundError(f"command {cmd_id!r} not found")
    return {
        "command": reports.command_read(command, None).model_dump(
            mode="json", exclude={"status", "reason", "station_time", "clock_offset_ms"}
        ),
        "stations": [
            {
                "sid": sid,
                **reports.command_read(command, target).model_dump(
                    mode="json", include={"status", "reason", "station_time", "clock_offset_ms"}
                ),
            }
            for sid, _, target in rows
        ],
        "progress": reports.progress(session, [command.id]).model_dump(),
    }


# --- play log --------------------------------------------------------------------------


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
    query = reports.play_query(
        session,
        principal.scope,
        sid=station,
        area=area,
        since=window.since,
        until=window.until,
        status=status_,
        source=source,
    )
    rows, total = reports.list_plays(session, query, limit=page.limit, offset=page.offset)
    return ListOf(items=reports.play_reads(rows), total=total)


@router.get("/playlog/totals", tags=["playlog"], response_model=list[TotalRow])
def playlog_totals(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    window: TimeRangeDep,
    by: Literal["station", "area"] = "area",
    area: AreaQ = None,
    format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    units: Annotated[
        str, Query(pattern=r"^(today|then|\d{4}-\d{2}-\d{2})$", max_length=10)
    ] = "today",
) -> Response:
    """Broadcast minutes per day, per station or per ward/commune (CSV for spreadsheets).

    By ward/commune after a reorganisation: ``units=today`` (the units of today),
    ``then`` (the unit each play belonged to at its time) or a date (the units of that
    day: old units before the change, new ones after)."""
    now = utcnow()
    query = reports.play_query(
        session,
        principal.scope,
        area=area,
        since=window.since or now - dt.timedelta(days=7),
        until=window.until or now + dt.timedelta(days=1),
    )
    unit_at = None
    if units != "today":
        history = reorg.UnitHistory(session)
        unit_at = history.at if units == "then" else history.as_of(_day(units))
    rows = reports.play_totals(session, query, _tz(request), by=by, unit_at=unit_at)
    if format_ == "csv":
        return csv_response(reports.totals_csv(rows, by=by), f"playlog-totals-{by}.csv")
    return Response(
        json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False).encode(),
        media_type="application/json",
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/reports/minutes", tags=["playlog"], response_model=list[MinutesRow])
def report_minutes(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    since: Annotated[
        str | None,
        Query(alias="from", max_length=40, description="a date (2026-12-01) or a timestamp"),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="a date (inclusive) or a timestamp (exclusive); default: the month's end",
        ),
    ] = None,
    by: Literal["station", "area"] = "area",
    area: AreaQ = None,
    format_: Annotated[Literal["json", "csv", "xlsx"], Query(alias="format")] = "json",
) -> Response:
    """Airtime minutes (what the stations reported playing) and plays per ward/commune or
    station, tier and category, over a month by default (JSON, CSV or XLSX)."""
    tz = _tz(request)
    start, end = reports.report_window(since, until, tz, today=utcnow().astimezone(tz).date())
    query = reports.play_query(session, principal.scope, area=area, since=start, until=end)
    rows = reports.broadcast_minutes(session, query, by=by)
    name = f"bao-cao-phut-phat-{by}-{start.astimezone(tz):%Y%m%d}"
    if format_ == "csv":
        return csv_response(reports.minutes_csv(rows, by=by), f"{name}.csv")
    if format_ == "xlsx":
        title = (
            f"Số phút phát từ {start.astimezone(tz):%d/%m/%Y} "
            f"đến hết {(end - dt.timedelta(microseconds=1)).astimezone(tz):%d/%m/%Y}"
        )
        return Response(
            reports.minutes_xlsx(rows, by=by, title=title),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return Response(
        json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False).encode(),
        media_type="application/json",
    )


# --- convergence and status ------------------------------------------------------------


@router.get("/dispatch/convergence", response_model=ListOf[ConvergenceRow], tags=["dispatch"])
def convergence(session: SessionDep, principal: CurrentPrincipal) -> ListOf[ConvergenceRow]:
    """Stations behind their desired state (not applied yet, or missing media)."""
    rows = [
        ConvergenceRow(
            sid=sid,
            online=state.online,
            desired_version=state.desired_version,
            published_version=state.desired_published_version,
            applied_version=state.applied_version,
            missing=list(state.missing or []),
            behind_since=state.desired_at,
        )
        for sid, state in reports.stations_behind(session, principal.scope)
    ]
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
