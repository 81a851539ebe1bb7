"""Broadcasts, station commands, the play log and convergence."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from audio_library.dependencies import LibraryDep
from broadcaster.db import read_session
from broadcaster.dispatch import (
    broadcasts,
    deadletters,
    emergency_report,
    outbox,
    progress_hub,
    reports,
)
from broadcaster.dispatch.models import (
    Broadcast,
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
from broadcaster.dispatch.wake import commit_following, ready_to_send, wake, write_staged
from broadcaster.reorg import service as reorg
from broadcaster.web.timing import phases_of
from kernel.db import commit_retrying, utcnow
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    TimeRangeDep,
    csv_response,
    principal_of,
)
from kernel.errors import NotFoundError
from kernel.security import Permission
from stations.dependencies import StationDep
from stations.schemas import CODE_PATTERN, SID_PATTERN, ListOf

router = APIRouter(prefix="/api/v1")

SSE_MAX_S = 15 * 60
#: how long a browser waits before reconnecting a dropped progress stream
SSE_RETRY_MS = 2000


def _wake(request: Request) -> None:
    """Publish what the request stored now, and refresh the progress streams."""
    wake(request.app)


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
    stands in for approval (recorded), and text is spoken on the spot.  When every
    target station takes a play before its audio (``media_follows``, proposal 0005), the
    play is sent before the speech and its audio follows; the answer comes after both.
    """
    timing = phases_of(request)  # its Server-Timing (`broadcaster.web.timing`)
    timing.mark("enter")
    settings = request.app.state.settings
    following = None
    follows = (
        broadcasts.targets_if_speech_can_follow(session, data, principal)
        if settings.emergency_speech_follows
        else None
    )
    sound = {
        "emergency_volume": settings.emergency_volume,
        "attention": settings.emergency_attention,
    }
    if follows is not None:  # stored in the transaction that found it could be
        broadcast, command, following = broadcasts.create_before_speech(
            session, library, data, principal, follows, **sound
        )
    else:
        session.rollback()  # end the reads (the speech check): nothing waits on the speech
        # the command leaves once it is stored; its per-station rows follow it
        broadcast, command = broadcasts.create(
            session, library, data, principal, rows_after_publish=True, **sound
        )
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
    # the command for the publisher is read before the commit (after it, a read on this
    # session would open a new transaction: on SQLite, wait for a write turn behind the
    # ack ingest); the answer is read once the command is out, in a read-only session
    timing.mark("store")
    ready = ready_to_send(request.app, session, command)
    session.commit()
    timing.mark("commit")
    wake(request.app, ready=ready)
    write_staged(request.app, session, on_phase=timing.mark)
    with read_session(request.app.state.sessionmaker) as reader:
        answer = reports.broadcast_read(reader, broadcast, with_stations=False)
    timing.mark("answer")
    if following is not None:
        # the play is out; its audio follows (if the text cannot be spoken, the stop of
        # the broadcast is committed and the error answered)
        commit_following(
            request.app,
            session,
            lambda: broadcasts.follow_with_speech(session, library, following),
        )
        timing.mark("speech")
    return answer


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


async def _first_progress(
    broadcast_id: IdPath, request: Request, session: SessionDep
) -> progress_hub.Snapshot:
    """The broadcast's progress now, if the account may see it (404 otherwise); then the
    request's session is closed: an open stream holds no database connection.

    On the event loop on purpose (two short reads on the connection authentication
    already holds): a hop to the threadpool while holding it starves the pool when a
    hundred dashboards reconnect at once (each waits for a thread with a connection
    checked out, the threads wait for connections)."""
    try:
        principal = principal_of(request)
        broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
        return progress_hub.snapshot(session, broadcast)
    finally:
        session.close()


FirstProgress = Annotated[progress_hub.Snapshot, Depends(_first_progress)]


@router.get(
    "/broadcasts/{broadcast_id}/events",
    tags=["broadcasts"],
    response_class=EventSourceResponse,
)
async def broadcast_events(
    first: FirstProgress,
    request: Request,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `progress` (the counts, `id` a digest of them) whenever they
    change, a comment every `BROADCASTER_SSE_KEEPALIVE_S`, then `done` once every
    target has settled or the broadcast ended.  A client reconnecting with
    `Last-Event-ID` gets the counts again only if they changed since.  The stream ends
    after `SSE_MAX_S` without `done`; the browser reconnects on its own."""
    hub: progress_hub.ProgressHub = request.app.state.progress_hub
    keepalive_s = request.app.state.settings.sse_keepalive_s
    watch = hub.subscribe(first)
    try:
        loop = asyncio.get_running_loop()
        ends = loop.time() + SSE_MAX_S
        sent = last_event_id
        while True:
            current = watch.latest()
            if current.event_id != sent:
                yield ServerSentEvent(
                    event="progress", data=current.progress, id=current.event_id, retry=SSE_RETRY_MS
                )
                sent = current.event_id
            if current.settled:
                yield ServerSentEvent(event="done", data={"status": current.status})
                return
            wait = min(keepalive_s, ends - loop.time())
            if wait <= 0:
                return
            if not await watch.changed(wait):
                yield ServerSentEvent(comment="keep-alive")
    finally:
        hub.unsubscribe(watch)


@router.post("/broadcasts/{broadcast_id}/stop", tags=["broadcasts"])
def stop_broadcast(
    broadcast_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> BroadcastRead:

    def stop() -> Broadcast:
        broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
        command = broadcasts.stop(session, broadcast, principal)
        audit.record(
            "broadcast.stop", "broadcast", [str(broadcast.id)], after={"cmd_id": command.cmd_id}
        )
        return broadcast

    # on PostgreSQL the stop can be a deadlock victim of the ack ingest updating the
    # same targets: run again, an operator's stop must not fail on a lock race
    broadcast = commit_retrying(session, stop)
    _wake(request)
    return reports.broadcast_read(session, broadcast, with_stations=False)


@router.post("/broadcasts/{broadcast_id}/resend", tags=["broadcasts"])
def resend_broadcast(
    broadcast_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> BroadcastRead:
    """Send again to the stations that missed it (their copy ended expired, failed or
    rejected): a new copy of the same broadcast, followed on its page and in its report.
    Needs the permission sending it needed (409 when no station missed it, or it was
    stopped)."""
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    command, missed = broadcasts.resend(session, broadcast, principal)
    audit.record(
        "broadcast.resend",
        "broadcast",
        [str(broadcast.id)],
        after={"cmd_id": command.cmd_id, "stations": len(missed)},
    )
    session.commit()
    _wake(request)
    return reports.broadcast_read(session, broadcast, with_stations=True)


@router.get("/broadcasts/{broadcast_id}/report", tags=["broadcasts"])
def broadcast_report(
    broadcast_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    format_: Annotated[Literal["json", "csv", "xlsx"], Query(alias="format")] = "json",
) -> Response:
    """The report of a broadcast (made for emergencies): who sent it, who approved it,
    when, its targets, and per station when it was reached and played, or why it was
    missed (JSON, or CSV/XLSX with Vietnamese headers)."""
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    report = emergency_report.emergency_report(session, broadcast)
    name = f"bao-cao-phat-{broadcast.id}"
    if format_ == "csv":
        return csv_response(emergency_report.report_csv(report, _tz(request)), f"{name}.csv")
    if format_ == "xlsx":
        return Response(
            emergency_report.report_xlsx(report, _tz(request)),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return JSONResponse(jsonable_encoder(emergency_report.report_json(report)))


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
        station.id,
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
        raise NotFoundError(f"command {cmd_id!r} not found", message_vi="Không tìm thấy lệnh")
    rows = reports.command_targets(session, command)
    if principal.scope is not None and any(not principal.reaches(a) for _, a, _ in rows):
        raise NotFoundError(f"command {cmd_id!r} not found", message_vi="Không tìm thấy lệnh")
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
    unit_at = reports.unit_reader(session, reorg.parse_units(units))
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
    units: Annotated[
        str, Query(pattern=r"^(today|then|\d{4}-\d{2}-\d{2})$", max_length=10)
    ] = "today",
) -> Response:
    """Airtime minutes heard (what the stations reported playing; minutes reported during
    a speaker or amplifier fault apart, as ``not_heard_minutes``) and plays per
    ward/commune or station, tier and category, over a month by default (JSON, CSV or
    XLSX).

    By ward/commune after a reorganisation: ``units=today`` (the units of today),
    ``then`` (the unit each play belonged to at its time) or a date (the units of that
    day); the totals are the same."""
    tz = _tz(request)
    start, end = reports.report_window(since, until, tz, today=utcnow().astimezone(tz).date())
    query = reports.play_query(session, principal.scope, area=area, since=start, until=end)
    chosen = reorg.parse_units(units)
    rows = reports.broadcast_minutes(session, query, by=by, units=chosen, tz=tz)
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
