"""Schedules API: stream sources, programmes, rules, approval, playlists, conflicts,
previews and iCalendar feeds.

Area scope as in the registry and the media library: objects owned outside the caller's
areas answer 404; city-wide objects (no owner area) are visible to everyone and managed
by city accounts.  Every change records an audit entry and raises the "plan changed"
signal in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library import areas as area_codes
from audio_library.dependencies import LibraryDep
from audio_library.models import Approval
from kernel.bounds import MAX_INT32, BoundedDate
from kernel.db import utcnow
from kernel.dependencies import Audit, CurrentPrincipal, PageDep, SessionDep
from kernel.security import Permission, Principal
from kernel.signals import plan_changed
from schedules import service
from schedules.dependencies import CalendarAccess, ProgrammeDep, RuleDep, SourceDep, TzDep
from schedules.exceptions import RuleNotFound
from schedules.ical import render_calendar
from schedules.models import Programme, ScheduleRule, StreamKind, StreamSource, Tier
from schedules.schemas import (
    CODE_PATTERN,
    CalendarLink,
    ConflictReport,
    PreviewRead,
    ProgrammeCreate,
    ProgrammeItemRead,
    ProgrammeRead,
    ProgrammeUpdate,
    ReviewRequest,
    RuleCreate,
    RuleRead,
    RuleUpdate,
    StreamSourceCreate,
    StreamSourceRead,
    StreamSourceUpdate,
    TargetsRead,
)
from stations import service as stations_service
from stations.dependencies import AreaDep, StationDep
from stations.exceptions import AreaNotFound, StationNotFound
from stations.models import Station

router = APIRouter(prefix="/api/v1")
public_router = APIRouter(prefix="/api/v1", tags=["calendars"])

SearchQuery = Annotated[str | None, Query(max_length=200, description="title search")]
AreaQuery = Annotated[str | None, Query(pattern=CODE_PATTERN, description="owner area code")]
DaysQuery = Annotated[int, Query(ge=1, le=31, description="days from the start date")]
DateQuery = Annotated[
    BoundedDate | None, Query(alias="date", description="local day (default: today)")
]
ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _snapshot(obj: object, fields: Sequence[str]) -> dict[str, Any]:
    return {name: _jsonable(getattr(obj, name)) for name in fields}


def _author(principal: Principal, area_id: int | None) -> service.Author:
    return service.Author(name=principal.username, user_id=principal.user_id, area_id=area_id)


def _owner_filter(session: Session, code: str | None) -> int | None:
    if code is None:
        return None
    found = area_codes.id_for(session, code)
    return -1 if found is None else found


# --- stream sources --------------------------------------------------------------------


def source_reads(session: Session, sources: Sequence[StreamSource]) -> list[StreamSourceRead]:
    codes = area_codes.codes_for(session, [s.owner_area_id for s in sources])
    return [
        StreamSourceRead(
            id=s.id,
            key=s.key,
            name=s.name,
            url=s.url,
            kind=s.kind,
            fallback_asset_id=s.fallback_asset_id,
            fallback_title=s.fallback.title if s.fallback else None,
            fallback_playable=bool(s.fallback and s.fallback.playable),
            owner_area_code=codes.get(s.owner_area_id) if s.owner_area_id else None,
            enabled=s.enabled,
            created_by=s.created_by,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )
        for s in sources
    ]


@router.get("/stream-sources", tags=["stream sources"])
def list_stream_sources(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    kind: StreamKind | None = None,
    enabled: bool | None = None,
    q: SearchQuery = None,
) -> dict[str, Any]:
    principal.require(Permission.SCHEDULES_READ)
    items, total = service.list_sources(
        session,
        scope=principal.scope,
        kind=kind,
        enabled=enabled,
        q=q,
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": source_reads(session, items), "total": total}


@router.post("/stream-sources", status_code=status.HTTP_201_CREATED, tags=["stream sources"])
def create_stream_source(
    data: StreamSourceCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> StreamSourceRead:
    principal.require(Permission.SCHEDULES_WRITE)
    owner = service.owner_area_for(session, principal, data.owner_area, Permission.SCHEDULES_WRITE)
    source = service.create_source(
        session, data, author=_author(principal, owner), scope=principal.scope
    )
    audit.record(
        "stream_source.create",
        "stream_source",
        [str(source.id)],
        after=_snapshot(source, service.SOURCE_FIELDS),
    )
    plan_changed(session, "stream_source.create")
    session.commit()
    return source_reads(session, [source])[0]


@router.get("/stream-sources/{source_id}", tags=["stream sources"])
def get_stream_source(source: SourceDep, session: SessionDep) -> StreamSourceRead:
    return source_reads(session, [source])[0]


@router.patch("/stream-sources/{source_id}", tags=["stream sources"])
def update_stream_source(
    source: SourceDep,
    data: StreamSourceUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> StreamSourceRead:
    service.require_owner(principal, source.owner_area_id, Permission.SCHEDULES_WRITE)
    before = _snapshot(source, service.SOURCE_FIELDS)
    source = service.update_source(session, source, data, scope=principal.scope)
    audit.record(
        "stream_source.update",
        "stream_source",
        [str(source.id)],
        before=before,
        after=_snapshot(source, service.SOURCE_FIELDS),
    )
    plan_changed(session, "stream_source.update")
    session.commit()
    return source_reads(session, [source])[0]


@router.delete(
    "/stream-sources/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["stream sources"],
)
def delete_stream_source(
    source: SourceDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    service.require_owner(principal, source.owner_area_id, Permission.SCHEDULES_WRITE)
    before = _snapshot(source, service.SOURCE_FIELDS)
    source_id = source.id
    service.delete_source(session, source)
    audit.record("stream_source.delete", "stream_source", [str(source_id)], before=before)
    plan_changed(session, "stream_source.delete")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- programmes ------------------------------------------------------------------------


def programme_reads(
    session: Session, programmes: Sequence[Programme], *, rules_reset: Sequence[int] = ()
) -> list[ProgrammeRead]:
    states = service.item_states(session, programmes)
    counts = service.rule_counts(session, [p.id for p in programmes])
    codes = area_codes.codes_for(session, [p.owner_area_id for p in programmes])
    out = []
    for p in programmes:
        items = [
            ProgrammeItemRead(
                position=item.position,
                kind=item.kind,
                title=item.title,
                duration_ms=states[item.id].duration_ms,
                asset_id=item.asset_id,
                asset_title=states[item.id].asset_title,
                source_id=item.source_id,
                source_name=states[item.id].source_name,
                text=item.text,
                voice=item.voice,
                rate=item.rate,
                problem=states[item.id].problem,
            )
            for item in p.items
        ]
        out.append(
            ProgrammeRead(
                id=p.id,
                key=p.key,
                title=p.title,
                owner_area_code=codes.get(p.owner_area_id) if p.owner_area_id else None,
                duration_ms=sum(i.duration_ms or 0 for i in items),
                items=items,
                rule_count=counts.get(p.id, 0),
                rules_reset=list(rules_reset),
                created_by=p.created_by,
                created_at=p.created_at,
                updated_at=p.updated_at,
            )
        )
    return out


def _programme_snapshot(programme: Programme) -> dict[str, Any]:
    return {
        "title": programme.title,
        "owner_area_id": programme.owner_area_id,
        "items": [
            {
                "kind": i.kind.value,
                "title": i.title,
                "asset_id": i.asset_id,
                "source_id": i.source_id,
                "duration_ms": i.duration_ms,
                "text": i.text,
                "voice": i.voice,
                "rate": i.rate,
            }
            for i in programme.items
        ],
    }


@router.get("/programmes", tags=["programmes"])
def list_programmes(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    q: SearchQuery = None,
    owner_area: AreaQuery = None,
) -> dict[str, Any]:
    principal.require(Permission.SCHEDULES_READ)
    items, total = service.list_programmes(
        session,
        scope=principal.scope,
        q=q,
        owner_area_id=_owner_filter(session, owner_area),
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": programme_reads(session, items), "total": total}


@router.post("/programmes", status_code=status.HTTP_201_CREATED, tags=["programmes"])
def create_programme(
    data: ProgrammeCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    audit: Audit,
) -> ProgrammeRead:
    """Create a programme; text items are spoken (TTS) now and kept as draft assets,
    approved together with the first rule that plays them."""
    principal.require(Permission.SCHEDULES_WRITE)
    owner = service.owner_area_for(session, principal, data.owner_area, Permission.SCHEDULES_WRITE)
    programme = service.create_programme(
        session, library, data, author=_author(principal, owner), scope=principal.scope
    )
    audit.record(
        "programme.create", "programme", [str(programme.id)], after=_programme_snapshot(programme)
    )
    plan_changed(session, "programme.create")
    session.commit()
    return programme_reads(session, [programme])[0]


@router.get("/programmes/{programme_id}", tags=["programmes"])
def get_programme(programme: ProgrammeDep, session: SessionDep) -> ProgrammeRead:
    return programme_reads(session, [programme])[0]


@router.patch("/programmes/{programme_id}", tags=["programmes"])
def update_programme(
    programme: ProgrammeDep,
    data: ProgrammeUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    audit: Audit,
) -> ProgrammeRead:
    """Change the title and/or replace the items.  Approved rules playing a programme
    whose items change go back to draft (listed in ``rules_reset``)."""
    service.require_owner(principal, programme.owner_area_id, Permission.SCHEDULES_WRITE)
    before = _programme_snapshot(programme)
    reset = service.update_programme(
        session,
        library,
        programme,
        data,
        author=_author(principal, programme.owner_area_id),
        scope=principal.scope,
    )
    after = _programme_snapshot(programme) | {"rules_reset": reset}
    audit.record("programme.update", "programme", [str(programme.id)], before=before, after=after)
    plan_changed(session, "programme.update")
    session.commit()
    return programme_reads(session, [programme], rules_reset=reset)[0]


@router.delete(
    "/programmes/{programme_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["programmes"]
)
def delete_programme(
    programme: ProgrammeDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    """Delete a programme no rule plays (409 otherwise).  Its spoken text bulletins stay
    in the media library."""
    service.require_owner(principal, programme.owner_area_id, Permission.SCHEDULES_WRITE)
    before = _programme_snapshot(programme)
    programme_id = programme.id
    service.delete_programme(session, programme)
    audit.record("programme.delete", "programme", [str(programme_id)], before=before)
    plan_changed(session, "programme.delete")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- rules -----------------------------------------------------------------------------


def rule_reads(session: Session, rules: Sequence[ScheduleRule], tz: dt.tzinfo) -> list[RuleRead]:
    targets = service.rule_targets(session, [r.id for r in rules])
    resolver = service.TargetResolver(session)
    resolver.load_groups({g for t in targets.values() for g, _ in t.groups})
    durations = service.programme_durations(
        session, {r.programme.id: r.programme for r in rules}.values()
    )
    codes = area_codes.codes_for(session, [r.owner_area_id for r in rules])
    now = utcnow()
    out = []
    for r in rules:
        t = targets[r.id]
        stations = resolver.resolve(
            [i for i, _ in t.stations], [i for i, _ in t.groups], [i for i, _ in t.areas]
        )
        out.append(
            RuleRead(
                id=r.id,
                key=r.key,
                title=r.title,
                programme_id=r.programme_id,
                programme_title=r.programme.title,
                duration_ms=durations.get(r.programme_id, 0),
                targets=TargetsRead(
                    stations=[n for _, n in t.stations],
                    groups=[n for _, n in t.groups],
                    areas=[n for _, n in t.areas],
                ),
                lost_targets=service.lost_targets(r, t),
                station_count=len(stations),
                tier=r.tier,
                priority=r.priority,
                order=r.order,
                owner_area_code=codes.get(r.owner_area_id) if r.owner_area_id else None,
                volume=r.volume,
                recurrence=r.recurrence,
                shift_tolerance_s=r.shift_tolerance_s,
                slot_s=r.slot_s,
                enabled=r.enabled,
                approval=r.approval,
                approved_by=r.approved_by,
                approved_at=r.approved_at,
                approval_note=r.approval_note,
                next_occurrences=service.next_occurrences(
                    service.stored_recurrence(r.recurrence), tz, now=now
                ),
                created_by=r.created_by,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )
    return out


def _rule_snapshot(rule: ScheduleRule) -> dict[str, Any]:
    return _snapshot(rule, service.RULE_FIELDS) | {"targets": rule.target_names}


def _require_tier(principal: Principal, *tiers: Tier | None) -> None:
    if Tier.EMERGENCY in tiers:
        principal.require(Permission.BROADCAST_EMERGENCY)


@router.get("/schedules/rules", tags=["schedules"])
def list_rules(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    tz: TzDep,
    q: SearchQuery = None,
    approval: Approval | None = None,
    enabled: bool | None = None,
    tier: Tier | None = None,
    programme_id: Annotated[int | None, Query(ge=1, le=MAX_INT32)] = None,
    owner_area: AreaQuery = None,
) -> dict[str, Any]:
    principal.require(Permission.SCHEDULES_READ)
    items, total = service.list_rules(
        session,
        scope=principal.scope,
        q=q,
        approval=approval,
        enabled=enabled,
        tier=tier,
        programme_id=programme_id,
        owner_area_id=_owner_filter(session, owner_area),
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": rule_reads(session, items, tz), "total": total}


@router.post("/schedules/rules", status_code=status.HTTP_201_CREATED, tags=["schedules"])
def create_rule(
    data: RuleCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit, tz: TzDep
) -> RuleRead:
    """Create a rule (as a draft: it airs once an approver other than you approves it)."""
    principal.require(Permission.SCHEDULES_WRITE)
    _require_tier(principal, data.tier)
    owner = service.owner_area_for(session, principal, data.owner_area, Permission.SCHEDULES_WRITE)
    rule = service.create_rule(
        session, data, author=_author(principal, owner), principal=principal, tz=tz
    )
    audit.record("schedule.create", "schedule_rule", [str(rule.id)], after=_rule_snapshot(rule))
    plan_changed(session, "schedule.create")
    session.commit()
    return rule_reads(session, [rule], tz)[0]


@router.get("/schedules/rules/{rule_id}", tags=["schedules"])
def get_rule(rule: RuleDep, session: SessionDep, tz: TzDep) -> RuleRead:
    return rule_reads(session, [rule], tz)[0]


@router.patch("/schedules/rules/{rule_id}", tags=["schedules"])
def update_rule(
    rule: RuleDep,
    data: RuleUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    tz: TzDep,
) -> RuleRead:
    """Change a rule.  Changing what or when it plays sends an approved rule back to
    draft; renaming it or switching it on/off does not."""
    service.require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_WRITE)
    _require_tier(principal, rule.tier, data.tier)
    before = _rule_snapshot(rule)
    service.update_rule(session, rule, data, principal=principal, tz=tz)
    audit.record(
        "schedule.update",
        "schedule_rule",
        [str(rule.id)],
        before=before,
        after=_rule_snapshot(rule),
    )
    plan_changed(session, "schedule.update")
    session.commit()
    return rule_reads(session, [rule], tz)[0]


@router.delete(
    "/schedules/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["schedules"]
)
def delete_rule(
    rule: RuleDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    service.require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_WRITE)
    _require_tier(principal, rule.tier)
    before = _rule_snapshot(rule)
    rule_id = rule.id
    service.delete_rule(session, rule)
    audit.record("schedule.delete", "schedule_rule", [str(rule_id)], before=before)
    plan_changed(session, "schedule.delete")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _review(
    rule: ScheduleRule,
    data: ReviewRequest | None,
    session: Session,
    principal: Principal,
    audit: Audit,
    tz: dt.tzinfo,
    *,
    approve: bool,
) -> RuleRead:
    service.require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_APPROVE)
    note = data.note if data is not None else None
    before = {"approval": rule.approval.value}
    assets = service.review_rule(
        session,
        rule,
        approver=_author(principal, None),
        approve=approve,
        note=note,
    )
    audit.record(
        "schedule.approve" if approve else "schedule.reject",
        "schedule_rule",
        [str(rule.id)],
        before=before,
        after={"approval": rule.approval.value, "note": note, "assets_approved": assets},
    )
    plan_changed(session, "schedule.review")
    session.commit()
    return rule_reads(session, [rule], tz)[0]


@router.post("/schedules/rules/{rule_id}/approve", tags=["schedules"])
def approve_rule(
    rule: RuleDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    tz: TzDep,
    data: ReviewRequest | None = None,
) -> RuleRead:
    """Approve a rule (never your own); its programme's draft text bulletins are
    approved with it."""
    return _review(rule, data, session, principal, audit, tz, approve=True)


@router.post("/schedules/rules/{rule_id}/reject", tags=["schedules"])
def reject_rule(
    rule: RuleDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    tz: TzDep,
    data: ReviewRequest | None = None,
) -> RuleRead:
    return _review(rule, data, session, principal, audit, tz, approve=False)


# --- plans -----------------------------------------------------------------------------


@router.get("/stations/{sid}/playlist", tags=["schedules"])
def station_playlist(
    station: StationDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    tz: TzDep,
    day: DateQuery = None,
) -> dict[str, Any]:
    """The station's built day: protocol playlist items (``desired.playlist[]``) with
    exact times in the service time zone, plus the ``rule_id`` each comes from."""
    principal.require(Permission.SCHEDULES_READ)
    day = day or service.local_today(tz)
    plan = service.station_plans(session, [day], tz, {station.id})[0]
    items = plan.stations.get(station.id, ())
    entries = service.playlist_entries(session, library, items)
    for entry, item in zip(entries, items, strict=True):
        entry["rule_id"] = item.rule_id
    return {"station": station.sid, "date": day.isoformat(), "timezone": str(tz), "items": entries}


@router.get("/schedules/conflicts", tags=["schedules"])
def conflicts(
    session: SessionDep, principal: CurrentPrincipal, tz: TzDep, day: DateQuery = None
) -> ConflictReport:
    """The day's clashes on your stations: which rule beat which, whether the loser was
    shifted or dropped, on how many stations; and rules the builder had to leave out."""
    principal.require(Permission.SCHEDULES_READ)
    day = day or service.local_today(tz)
    groups, skipped = service.conflict_report(session, day, tz, principal=principal)
    return ConflictReport(date=day, total=len(groups), items=groups, skipped_rules=skipped)


@router.post("/schedules/preview", tags=["schedules"])
def preview_rule(
    data: RuleCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    tz: TzDep,
    date_from: Annotated[BoundedDate | None, Query(alias="from")] = None,
    date_to: Annotated[BoundedDate | None, Query(alias="to")] = None,
    rule_id: Annotated[
        int | None, Query(ge=1, le=MAX_INT32, description="preview an edit of this rule")
    ] = None,
) -> PreviewRead:
    """What a rule would do if saved (nothing is saved): its occurrences between
    ``from`` and ``to`` (default: the next 7 days), where its blocks land, and the
    conflicts it would suffer and cause."""
    principal.require(Permission.SCHEDULES_READ)
    replaces = None
    if rule_id is not None:
        replaces = service.get_rule(session, rule_id)
        if not service.reaches_owner(principal, replaces.owner_area_id):
            raise RuleNotFound(rule_id)
    first = date_from or service.local_today(tz)
    last = date_to or first + dt.timedelta(days=6)
    return service.preview_rule(
        session,
        data,
        principal=principal,
        tz=tz,
        day_from=first,
        day_to=last,
        replaces=replaces,
    )


# --- calendars -------------------------------------------------------------------------


def _station_calendar_path(sid: str) -> str:
    return f"/api/v1/stations/{sid}/calendar.ics"


def _area_calendar_path(code: str) -> str:
    return f"/api/v1/areas/{code}/calendar.ics"


def _link(library: LibraryDep, path: str, days: int, valid_days: int) -> CalendarLink:
    expires = utcnow().replace(microsecond=0) + dt.timedelta(days=valid_days)
    key = service.calendar_key(library.url_secret)
    url = service.sign_calendar_url(library.public_base_url, path, days, expires, key)
    return CalendarLink(url=url, expires_at=expires)


ValidDaysQuery = Annotated[
    int, Query(ge=1, le=730, description="how long the link works (default one year)")
]


@router.get("/stations/{sid}/calendar-link", tags=["calendars"])
def station_calendar_link(
    station: StationDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    days: DaysQuery = 7,
    valid_days: ValidDaysQuery = service.CALENDAR_LINK_TTL.days,
) -> CalendarLink:
    """A signed feed URL calendar programs can subscribe to (they cannot log in).
    Anyone holding it can read this station's schedule until it expires."""
    principal.require(Permission.SCHEDULES_READ)
    return _link(library, _station_calendar_path(station.sid), days, valid_days)


@router.get("/areas/{code}/calendar-link", tags=["calendars"])
def area_calendar_link(
    area: AreaDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    days: DaysQuery = 7,
    valid_days: ValidDaysQuery = service.CALENDAR_LINK_TTL.days,
) -> CalendarLink:
    """A signed feed URL for every station of the area (see the station link)."""
    principal.require(Permission.SCHEDULES_READ)
    return _link(library, _area_calendar_path(area.code), days, valid_days)


def _calendar_response(data: bytes, name: str) -> Response:
    return Response(
        content=data,
        media_type=ICS_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'inline; filename="{name}.ics"',
            "Cache-Control": "private, max-age=300",
        },
    )


def _check_access(
    access: CalendarAccess,
    request: Request,
    library: LibraryDep,
    path: str,
    days: int,
) -> Principal | None:
    if access is not None:
        access.require(Permission.SCHEDULES_READ)
        return access
    key = service.calendar_key(library.url_secret)
    service.verify_calendar(
        path,
        days,
        request.query_params.get("exp"),
        request.query_params.get("sig"),
        key,
        utcnow(),
    )
    return None


StartQuery = Annotated[BoundedDate | None, Query(description="first local day (default: today)")]


@public_router.get(
    "/stations/{sid}/calendar.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def station_calendar(
    sid: Annotated[str, Path(pattern=CODE_PATTERN)],
    access: CalendarAccess,
    request: Request,
    session: SessionDep,
    library: LibraryDep,
    tz: TzDep,
    days: DaysQuery = 7,
    start: StartQuery = None,
) -> Response:
    """The station's items as iCalendar (one event per item).  Needs a login, or the
    ``exp``/``sig`` of a link from ``calendar-link``."""
    principal = _check_access(access, request, library, _station_calendar_path(sid), days)
    station = session.scalar(select(Station).where(Station.sid == sid))
    if station is None or (principal is not None and not principal.reaches(station.area_id)):
        raise StationNotFound(sid)
    first = start or service.local_today(tz)
    items = service.calendar_items(session, [station.id], first, days, tz)
    data = render_calendar(
        items,
        name=station.name,
        generated_at=utcnow(),
        timezone=str(tz),
        description=f"Lịch phát của {station.name} ({station.sid})",
    )
    return _calendar_response(data, station.sid)


@public_router.get(
    "/areas/{code}/calendar.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def area_calendar(
    code: Annotated[str, Path(pattern=CODE_PATTERN)],
    access: CalendarAccess,
    request: Request,
    session: SessionDep,
    library: LibraryDep,
    tz: TzDep,
    days: DaysQuery = 7,
    start: StartQuery = None,
) -> Response:
    """Every item of every station in the area (and below), one event per item and
    placement.  Needs a login, or the ``exp``/``sig`` of a link from ``calendar-link``."""
    principal = _check_access(access, request, library, _area_calendar_path(code), days)
    area = stations_service.get_area(session, code)
    if principal is not None and not principal.reaches(area.id):
        raise AreaNotFound(code)
    subtree = stations_service.subtree_ids(session, [area.id])
    station_ids = list(
        session.scalars(
            select(Station.id).where(Station.area_id.in_(subtree), Station.enabled.is_(True))
        )
    )
    first = start or service.local_today(tz)
    items = service.calendar_items(session, station_ids, first, days, tz)
    data = render_calendar(
        items,
        name=area.name,
        generated_at=utcnow(),
        timezone=str(tz),
        description=f"Lịch phát các trạm thuộc {area.name}",
    )
    return _calendar_response(data, area.code)
