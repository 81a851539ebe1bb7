"""Registry API: areas, stations, groups, CSV import/export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile, status
from fastapi.responses import JSONResponse

from kernel.audit import snapshot
from kernel.db import columns_of
from kernel.dependencies import (
    Audit,
    AuditTrail,
    CurrentPrincipal,
    PageDep,
    SessionDep,
    TimeRangeDep,
    csv_response,
)
from kernel.errors import PayloadTooLarge
from kernel.security import Permission
from stations import csvio, live, service
from stations.dependencies import AreaDep, GroupDep, StationDep
from stations.models import Area, AreaLevel, Group, Station, StationKind
from stations.schemas import (
    CODE_PATTERN,
    AreaCreate,
    AreaRead,
    AreaUpdate,
    ConnectionRead,
    GroupCreate,
    GroupMembers,
    GroupRead,
    GroupUpdate,
    ImportReport,
    ListOf,
    StationCreate,
    StationRead,
    StationStateRead,
    StationUpdate,
    TelemetryRead,
)
from stations.targets import TargetResolver

router = APIRouter(prefix="/api/v1")

MAX_IMPORT_BYTES = 10 * 1024 * 1024
AreaCodeQuery = Annotated[str | None, Query(pattern=CODE_PATTERN, description="area subtree")]
SearchQuery = Annotated[
    str | None, Query(max_length=200, description="name search, diacritics optional")
]


def area_read(area: Area) -> AreaRead:
    parent_code = area.parent.code if area.parent else None
    return AreaRead.model_validate(
        columns_of(area, AreaRead.model_fields) | {"parent_code": parent_code}
    )


def station_read(station: Station) -> StationRead:
    state = station.state
    return StationRead.model_validate(
        columns_of(station, StationRead.model_fields)
        | {
            "area_code": station.area.code,
            "area_name": station.area.name,
            "online": bool(state and state.online),
            "last_seen": state.last_seen if state else None,
        }
    )


def group_read(
    session: SessionDep, group: Group, resolver: TargetResolver | None = None
) -> GroupRead:
    owners = service.area_codes(session, [group.owner_area_id])
    return GroupRead.model_validate(
        columns_of(group, GroupRead.model_fields)
        | {
            "owner_area_code": owners.get(group.owner_area_id) if group.owner_area_id else None,
            "stations": [s.sid for s in group.stations],
            "areas": [a.code for a in group.areas],
            "station_count": len(service.group_station_ids(session, group, resolver=resolver)),
        }
    )


def _station_changed(
    audit: AuditTrail, verb: str, station: Station, before: dict[str, Any] | None = None
) -> StationRead:
    """Record a created or updated station (audit entry, plan signal) and read it."""
    after = snapshot(station, service.STATION_FIELDS)
    audit.commit_change(f"station.{verb}", "station", [station.sid], before=before, after=after)
    return station_read(station)


def _deleted(
    audit: AuditTrail, kind: str, key: str, before: dict[str, Any] | None = None
) -> Response:
    """Record a deleted area, station or group (audit entry, plan signal): 204."""
    audit.commit_change(f"{kind}.delete", kind, [key], before=before)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- areas -----------------------------------------------------------------------------


@router.get("/areas", response_model=ListOf[AreaRead], tags=["areas"])
def list_areas(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    level: AreaLevel | None = None,
    parent: AreaCodeQuery = None,
    area: AreaCodeQuery = None,
    q: SearchQuery = None,
    retired: bool = False,
) -> ListOf[AreaRead]:
    """Areas; units ended by a reorganisation (kept for history) only with ``retired``."""
    items, total = service.list_areas(
        session,
        scope=principal.scope,
        retired=retired,
        level=level,
        parent=parent,
        within=area,
        q=q,
        limit=page.limit,
        offset=page.offset,
    )
    return ListOf(items=[area_read(a) for a in items], total=total)


@router.post("/areas", status_code=status.HTTP_201_CREATED, tags=["areas"])
def create_area(
    data: AreaCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> AreaRead:
    principal.require(Permission.AREAS_WRITE)
    area = service.create_area(session, data)
    # a new area holds no station yet, so no rule reaches anything new through it
    audit.commit_change(
        "area.create", "area", [area.code], after=snapshot(area, service.AREA_FIELDS), plan=False
    )
    return area_read(area)


@router.get("/areas/{code}", tags=["areas"])
def get_area(area: AreaDep) -> AreaRead:
    return area_read(area)


@router.patch("/areas/{code}", tags=["areas"])
def update_area(
    area: AreaDep,
    data: AreaUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> AreaRead:
    principal.require(Permission.AREAS_WRITE)
    before = snapshot(area, service.AREA_FIELDS)
    area = service.update_area(session, area.code, data)
    audit.commit_change(
        "area.update", "area", [area.code], before=before, after=snapshot(area, service.AREA_FIELDS)
    )
    session.refresh(area)
    return area_read(area)


@router.delete("/areas/{code}", status_code=status.HTTP_204_NO_CONTENT, tags=["areas"])
def delete_area(
    area: AreaDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    principal.require(Permission.AREAS_WRITE)
    before = snapshot(area, service.AREA_FIELDS)
    service.delete_area(session, area.code)
    return _deleted(audit, "area", before["code"], before)


# --- stations --------------------------------------------------------------------------


@router.get("/stations", response_model=ListOf[StationRead], tags=["stations"])
def list_stations(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    area: AreaCodeQuery = None,
    kind: StationKind | None = None,
    q: SearchQuery = None,
    enabled: bool | None = None,
    online: bool | None = None,
) -> ListOf[StationRead]:
    query = service.station_query(
        session, scope=principal.scope, area=area, kind=kind, q=q, enabled=enabled, online=online
    )
    items, total = service.list_stations(session, query, limit=page.limit, offset=page.offset)
    return ListOf(items=[station_read(s) for s in items], total=total)


@router.post("/stations", status_code=status.HTTP_201_CREATED, tags=["stations"])
def create_station(
    data: StationCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> StationRead:
    principal.require(Permission.STATIONS_WRITE)
    area = service.get_area(session, data.area_code) if principal.scope is not None else None
    if area is not None:
        principal.require_area(Permission.STATIONS_WRITE, area.id)
    station = service.create_station(session, data)
    return _station_changed(audit, "create", station)


@router.get("/stations/export.csv", tags=["stations"], response_class=Response)
def export_stations(
    session: SessionDep,
    principal: CurrentPrincipal,
    area: AreaCodeQuery = None,
    kind: StationKind | None = None,
    q: SearchQuery = None,
) -> Response:
    query = service.station_query(session, scope=principal.scope, area=area, kind=kind, q=q)
    body = csvio.export_stations(service.all_stations(session, query))
    return csv_response(body, "stations.csv")


@router.post(
    "/stations/import",
    tags=["stations"],
    response_model=ImportReport,
    responses={422: {"model": ImportReport, "description": "rows with errors; nothing written"}},
)
async def import_stations(
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    file: Annotated[UploadFile, File(description="CSV, UTF-8 (BOM allowed)")],
    dry_run: bool = False,
) -> JSONResponse:
    principal.require(Permission.STATIONS_WRITE)
    content = await file.read(MAX_IMPORT_BYTES + 1)
    if len(content) > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(f"CSV larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    report = csvio.import_stations(session, content, dry_run=dry_run, scope=principal.scope)
    if report.errors:
        session.rollback()
        code = status.HTTP_200_OK if dry_run else status.HTTP_422_UNPROCESSABLE_CONTENT
        return JSONResponse(report.model_dump(), status_code=code)
    if not dry_run:
        audit.commit_change(
            "station.import",
            "station",
            report.disabled,
            after=csvio.import_summary(report, file.filename),
        )
    return JSONResponse(report.model_dump())


@router.get("/stations/{sid}", tags=["stations"])
def get_station(station: StationDep) -> StationRead:
    return station_read(station)


@router.get("/stations/{sid}/state", tags=["stations"])
def get_station_state(station: StationDep, session: SessionDep) -> StationStateRead:
    """Live state: online, versions (desired by the server vs applied), missing media,
    latest telemetry and faults."""
    state = live.peek_state(session, station.id)
    return StationStateRead(
        sid=station.sid,
        online=state.online,
        bdseq=state.bdseq,
        online_since=state.online_since,
        offline_since=state.offline_since,
        last_seen=state.last_seen,
        firmware=state.firmware,
        model=state.model,
        capabilities=list(state.capabilities or []),
        desired_version=state.desired_version or 0,
        desired_at=state.desired_at,
        applied_version=state.applied_version,
        held_version=state.held_version,
        in_sync=bool(state.desired_version)
        and state.applied_version == state.desired_version
        and not state.missing,
        missing=list(state.missing or []),
        reported_at=state.reported_at,
        cache_bytes=state.cache_bytes,
        volume=state.volume,
        faults=list(state.faults or []),
        telemetry=state.telemetry,
        telemetry_at=state.telemetry_at,
    )


@router.get("/stations/{sid}/telemetry", tags=["stations"], response_model=ListOf[TelemetryRead])
def get_station_telemetry(
    station: StationDep,
    session: SessionDep,
    window: TimeRangeDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> ListOf[TelemetryRead]:
    """Telemetry history between `from` (inclusive) and `to` (exclusive), oldest first."""
    since, until = window.since, window.until
    rows = live.telemetry_between(session, station.id, since=since, until=until, limit=limit)
    items = [
        TelemetryRead(at=r.at, received_at=r.received_at, seq=r.seq, data=r.data) for r in rows
    ]
    return ListOf(items=items, total=len(items))


@router.get("/stations/{sid}/connections", tags=["stations"], response_model=ListOf[ConnectionRead])
def get_station_connections(
    station: StationDep, session: SessionDep, page: PageDep, window: TimeRangeDep
) -> ListOf[ConnectionRead]:
    """Connection history: the intervals the station was online that overlap `from`
    (inclusive) .. `to` (exclusive), newest first, with how each ended (`cause`)."""
    rows, total = live.connections(
        session,
        station.id,
        since=window.since,
        until=window.until,
        limit=page.limit,
        offset=page.offset,
    )
    items = [
        ConnectionRead(
            bdseq=r.bdseq,
            online_at=r.online_at,
            offline_at=r.offline_at,
            duration_s=(r.offline_at - r.online_at).total_seconds() if r.offline_at else None,
            cause=r.cause,
        )
        for r in rows
    ]
    return ListOf(items=items, total=total)


@router.patch("/stations/{sid}", tags=["stations"])
def update_station(
    station: StationDep,
    data: StationUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> StationRead:
    principal.require(Permission.STATIONS_WRITE)
    if data.area_code is not None and principal.scope is not None:
        principal.require_area(
            Permission.STATIONS_WRITE, service.get_area(session, data.area_code).id
        )
    before = snapshot(station, service.STATION_FIELDS)
    station = service.update_station(session, station.sid, data)
    return _station_changed(audit, "update", station, before)


@router.delete("/stations/{sid}", status_code=status.HTTP_204_NO_CONTENT, tags=["stations"])
def delete_station(
    station: StationDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    principal.require(Permission.STATIONS_WRITE)
    before = snapshot(station, service.STATION_FIELDS)
    service.delete_station(session, station.sid)
    return _deleted(audit, "station", station.sid, before)


# --- groups ----------------------------------------------------------------------------


@router.get("/groups", response_model=ListOf[GroupRead], tags=["groups"])
def list_groups(
    session: SessionDep, principal: CurrentPrincipal, page: PageDep, q: SearchQuery = None
) -> ListOf[GroupRead]:
    items, total = service.list_groups(
        session, scope=principal.scope, q=q, limit=page.limit, offset=page.offset
    )
    resolver = TargetResolver(session, enabled_only=False)
    return ListOf(items=[group_read(session, g, resolver) for g in items], total=total)


def _require_group_members_in_scope(
    session: SessionDep, principal: CurrentPrincipal, sids: list[str], codes: list[str]
) -> None:
    if principal.scope is None:
        return
    for sid in sids:
        principal.require_area(Permission.GROUPS_WRITE, service.get_station(session, sid).area_id)
    for code in codes:
        principal.require_area(Permission.GROUPS_WRITE, service.get_area(session, code).id)


@router.post("/groups", status_code=status.HTTP_201_CREATED, tags=["groups"])
def create_group(
    data: GroupCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> GroupRead:
    principal.require(Permission.GROUPS_WRITE)
    if principal.scope is not None:
        if data.owner_area_code is None:
            data.owner_area_code = min(principal.area_codes) if principal.area_codes else None
        owner = service.get_area(session, data.owner_area_code) if data.owner_area_code else None
        principal.require_area(Permission.GROUPS_WRITE, owner.id if owner else None)
        _require_group_members_in_scope(session, principal, data.stations, data.areas)
    group = service.create_group(session, data)
    audit.commit_change("group.create", "group", [group.gid], after=data.model_dump())
    return group_read(session, group)


@router.get("/groups/{gid}", tags=["groups"])
def get_group(group: GroupDep, session: SessionDep) -> GroupRead:
    return group_read(session, group)


@router.get("/groups/{gid}/stations", tags=["groups"])
def group_stations(
    group: GroupDep, session: SessionDep, principal: CurrentPrincipal
) -> GroupMembers:
    ids = service.group_station_ids(session, group)
    query = service.station_query(session, scope=principal.scope, ids=ids)
    sids = [s.sid for s in service.all_stations(session, query)]
    return GroupMembers(gid=group.gid, stations=sids, total=len(sids))


@router.patch("/groups/{gid}", tags=["groups"])
def update_group(
    group: GroupDep,
    data: GroupUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> GroupRead:
    principal.require(Permission.GROUPS_WRITE)
    if group.builtin:
        principal.require(Permission.AREAS_WRITE)
    _require_group_members_in_scope(session, principal, data.stations or [], data.areas or [])
    before = {"stations": [s.sid for s in group.stations], "areas": [a.code for a in group.areas]}
    group = service.update_group(session, group.gid, data)
    audit.commit_change(
        "group.update",
        "group",
        [group.gid],
        before=before,
        after=data.model_dump(exclude_unset=True),
    )
    return group_read(session, group)


@router.delete("/groups/{gid}", status_code=status.HTTP_204_NO_CONTENT, tags=["groups"])
def delete_group(
    group: GroupDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    principal.require(Permission.GROUPS_WRITE)
    gid = group.gid
    service.delete_group(session, gid)
    return _deleted(audit, "group", gid)
