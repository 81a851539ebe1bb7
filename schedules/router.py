"""Schedules API: stream sources, programmes, rules, approval, playlists, conflicts,
previews and iCalendar feeds.

Area scope as in the registry and the media library: objects owned outside the caller's
areas answer 404; city-wide objects (no owner area) are visible to everyone and managed
by city accounts.  Every change records an audit entry and raises the "plan changed"
signal in the same transaction.
"""

import datetime as dt
from dataclasses import dataclass
from datetime import tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy.orm import Session

from audio_library.dependencies import LibraryDep
from audio_library.service import Author
from kernel.approval import Approval
from kernel.bounds import MAX_INT32, BoundedDate
from kernel.db import release, utcnow
from kernel.dependencies import Audit, AuditTrail, CurrentPrincipal, PageDep, SessionDep
from kernel.security import Permission, Principal
from kernel.tiers import Tier
from schedules import reads
from schedules.dependencies import CalendarAccess, ProgrammeDep, RuleDep, SourceDep, TzDep
from schedules.exceptions import RuleNotFound
from schedules.ical import render_calendar
from schedules.models import Programme, ScheduleRule, StreamKind, StreamSource
from schedules.schemas import (
    CODE_PATTERN,
    CalendarLink,
    ConflictReport,
    PreviewRead,
    ProgrammeCreate,
    ProgrammeRead,
    ProgrammeUpdate,
    ReviewRequest,
    RuleCreate,
    RuleRead,
    RuleUpdate,
    StreamSourceCreate,
    StreamSourceRead,
    StreamSourceUpdate,
)
from schedules.service import calendar_links, planning, programmes, rules, sources
from schedules.service import conflicts as conflict_service
from schedules.service.scope import owner_area_for, owner_filter, reaches_owner, require_owner
from stations import service as stations_service
from stations.dependencies import AreaDep, StationDep
from stations.exceptions import AreaNotFound, StationNotFound

router = APIRouter(prefix="/api/v1")
public_router = APIRouter(prefix="/api/v1", tags=["calendars"])

SearchQuery = Annotated[str | None, Query(max_length=200, description="title search")]
AreaQuery = Annotated[str | None, Query(pattern=CODE_PATTERN, description="owner area code")]
DaysQuery = Annotated[int, Query(ge=1, le=31, description="days from the start date")]
DateQuery = Annotated[
    BoundedDate | None, Query(alias="date", description="local day (default: today)")
]
ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"


def _author(principal: Principal, area_id: int | None) -> Author:
    return Author(name=principal.username, user_id=principal.user_id, area_id=area_id)


def _new_author(session: Session, principal: Principal, owner_area: str | None) -> Author:
    """The author of a new source, programme or rule: the caller, in the owner area they
    name (where they must be allowed to write schedules), else their own area."""
    owner = owner_area_for(session, principal, owner_area, Permission.SCHEDULES_WRITE)
    return _author(principal, owner)


Before = dict[str, Any] | None


def _source_changed(
    session: Session, audit: AuditTrail, verb: str, source: StreamSource, before: Before = None
) -> StreamSourceRead:
    """Record a created or updated stream source (audit entry, plan signal) and read it."""
    after = reads.source_snapshot(source)
    audit.commit_change(
        f"stream_source.{verb}", "stream_source", [str(source.id)], before=before, after=after
    )
    return reads.source_reads(session, [source])[0]


def _programme_changed(
    session: Session,
    audit: AuditTrail,
    verb: str,
    programme: Programme,
    before: Before = None,
    *,
    rules_reset: list[int] | None = None,
) -> ProgrammeRead:
    """Record a created or updated programme (and the rules its change sent back to
    draft) and read it."""
    after = reads.programme_snapshot(programme)
    if rules_reset is not None:
        after |= {"rules_reset": rules_reset}
    audit.commit_change(
        f"programme.{verb}", "programme", [str(programme.id)], before=before, after=after
    )
    return reads.programme_reads(session, [programme], rules_reset=rules_reset or ())[0]


def _rule_changed(
    session: Session,
    audit: AuditTrail,
    tz: tzinfo,
    verb: str,
    rule: ScheduleRule,
    before: Before = None,
) -> RuleRead:
    """Record a created or updated schedule rule and read it."""
    after = reads.rule_snapshot(rule)
    audit.commit_change(
        f"schedule.{verb}", "schedule_rule", [str(rule.id)], before=before, after=after
    )
    return reads.rule_reads(session, [rule], tz)[0]


# --- stream sources --------------------------------------------------------------------


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
    items, total = sources.list_sources(
        session,
        scope=principal.scope,
        kind=kind,
        enabled=enabled,
        q=q,
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": reads.source_reads(session, items), "total": total}


@router.post("/stream-sources", status_code=status.HTTP_201_CREATED, tags=["stream sources"])
def create_stream_source(
    data: StreamSourceCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> StreamSourceRead:
    principal.require(Permission.SCHEDULES_WRITE)
    author = _new_author(session, principal, data.owner_area)
    source = sources.create_source(session, data, author=author, scope=principal.scope)
    return _source_changed(session, audit, "create", source)


@router.get("/stream-sources/{source_id}", tags=["stream sources"])
def get_stream_source(source: SourceDep, session: SessionDep) -> StreamSourceRead:
    return reads.source_reads(session, [source])[0]


@router.patch("/stream-sources/{source_id}", tags=["stream sources"])
def update_stream_source(
    source: SourceDep,
    data: StreamSourceUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> StreamSourceRead:
    require_owner(principal, source.owner_area_id, Permission.SCHEDULES_WRITE)
    before = reads.source_snapshot(source)
    source = sources.update_source(session, source, data, scope=principal.scope)
    return _source_changed(session, audit, "update", source, before)


@router.delete(
    "/stream-sources/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["stream sources"],
)
def delete_stream_source(
    source: SourceDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    require_owner(principal, source.owner_area_id, Permission.SCHEDULES_WRITE)
    before = reads.source_snapshot(source)
    source_id = source.id
    sources.delete_source(session, source)
    audit.commit_change("stream_source.delete", "stream_source", [str(source_id)], before=before)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- programmes ------------------------------------------------------------------------


@router.get("/programmes", tags=["programmes"])
def list_programmes(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    q: SearchQuery = None,
    owner_area: AreaQuery = None,
) -> dict[str, Any]:
    principal.require(Permission.SCHEDULES_READ)
    items, total = programmes.list_programmes(
        session,
        scope=principal.scope,
        q=q,
        owner_area_id=owner_filter(session, owner_area),
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": reads.programme_reads(session, items), "total": total}


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
    author = _new_author(session, principal, data.owner_area)
    drafts = programmes.check_items(session, data.items, scope=principal.scope)
    release(session)  # no transaction while the text items are spoken
    programmes.speak(session, library, drafts)
    programme = programmes.create_programme(session, library, data, drafts, author=author)
    return _programme_changed(session, audit, "create", programme)


@router.get("/programmes/{programme_id}", tags=["programmes"])
def get_programme(programme: ProgrammeDep, session: SessionDep) -> ProgrammeRead:
    return reads.programme_reads(session, [programme])[0]


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
    require_owner(principal, programme.owner_area_id, Permission.SCHEDULES_WRITE)
    before = reads.programme_snapshot(programme)
    drafts = None
    if data.items is not None:
        drafts = programmes.check_items(
            session, data.items, scope=principal.scope, previous=programme.items
        )
        release(session)  # no transaction while the text items are spoken
        programmes.speak(session, library, drafts)
    reset = programmes.update_programme(
        session,
        library,
        programme,
        data,
        drafts,
        author=_author(principal, programme.owner_area_id),
    )
    return _programme_changed(session, audit, "update", programme, before, rules_reset=reset)


@router.delete(
    "/programmes/{programme_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["programmes"]
)
def delete_programme(
    programme: ProgrammeDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    """Delete a programme no rule plays (409 otherwise).  Its spoken text bulletins stay
    in the media library."""
    require_owner(principal, programme.owner_area_id, Permission.SCHEDULES_WRITE)
    before = reads.programme_snapshot(programme)
    programme_id = programme.id
    programmes.delete_programme(session, programme)
    audit.commit_change("programme.delete", "programme", [str(programme_id)], before=before)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- rules -----------------------------------------------------------------------------


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
    items, total = rules.list_rules(
        session,
        scope=principal.scope,
        q=q,
        approval=approval,
        enabled=enabled,
        tier=tier,
        programme_id=programme_id,
        owner_area_id=owner_filter(session, owner_area),
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": reads.rule_reads(session, items, tz), "total": total}


@router.post("/schedules/rules", status_code=status.HTTP_201_CREATED, tags=["schedules"])
def create_rule(
    data: RuleCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit, tz: TzDep
) -> RuleRead:
    """Create a rule, waiting for approval (it airs once an approver other than you
    approves it), or kept as your draft with ``submit: false``."""
    principal.require(Permission.SCHEDULES_WRITE)
    _require_tier(principal, data.tier)
    author = _new_author(session, principal, data.owner_area)
    rule = rules.create_rule(session, data, author=author, principal=principal, tz=tz)
    return _rule_changed(session, audit, tz, "create", rule)


@router.get("/schedules/rules/{rule_id}", tags=["schedules"])
def get_rule(rule: RuleDep, session: SessionDep, tz: TzDep) -> RuleRead:
    return reads.rule_reads(session, [rule], tz)[0]


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
    waiting for approval (or to your draft with ``submit: false``); renaming it or
    switching it on/off does not.  ``submit`` moves a rule that is not approved (a
    rejected one, once fixed) to waiting or back to your draft."""
    require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_WRITE)
    _require_tier(principal, rule.tier, data.tier)
    before = reads.rule_snapshot(rule)
    rules.update_rule(session, rule, data, principal=principal, tz=tz)
    return _rule_changed(session, audit, tz, "update", rule, before)


@router.delete(
    "/schedules/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["schedules"]
)
def delete_rule(
    rule: RuleDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_WRITE)
    _require_tier(principal, rule.tier)
    before = reads.rule_snapshot(rule)
    rule_id = rule.id
    rules.delete_rule(session, rule)
    audit.commit_change("schedule.delete", "schedule_rule", [str(rule_id)], before=before)
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
    require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_APPROVE)
    note = data.note if data is not None else None
    before = {"approval": rule.approval.value}
    assets = rules.review_rule(
        session,
        rule,
        approver=_author(principal, None),
        approve=approve,
        note=note,
    )
    audit.commit_change(
        "schedule.approve" if approve else "schedule.reject",
        "schedule_rule",
        [str(rule.id)],
        before=before,
        after={"approval": rule.approval.value, "note": note, "assets_approved": assets},
    )
    return reads.rule_reads(session, [rule], tz)[0]


@router.post("/schedules/rules/{rule_id}/submit", tags=["schedules"])
def submit_rule(
    rule: RuleDep, session: SessionDep, principal: CurrentPrincipal, audit: Audit, tz: TzDep
) -> RuleRead:
    """Send your draft rule (or a rejected one, once fixed) for approval; 409 if it
    already waits or is approved."""
    require_owner(principal, rule.owner_area_id, Permission.SCHEDULES_WRITE)
    _require_tier(principal, rule.tier)
    before = {"approval": rule.approval.value}
    rules.submit_rule(session, rule)
    audit.commit_change(  # it only joins the approval queue: nothing plays it yet
        "schedule.submit",
        "schedule_rule",
        [str(rule.id)],
        before=before,
        after={"approval": rule.approval.value},
        plan=False,
    )
    return reads.rule_reads(session, [rule], tz)[0]


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


@router.get("/schedules/conflicts", tags=["schedules"])
def conflicts(
    session: SessionDep, principal: CurrentPrincipal, tz: TzDep, day: DateQuery = None
) -> ConflictReport:
    """The day's clashes on your stations: which rule beat which, whether the loser was
    shifted or dropped, on how many stations; and rules the builder had to leave out."""
    principal.require(Permission.SCHEDULES_READ)
    day = day or planning.local_today(tz)
    groups, skipped = conflict_service.conflict_report(session, day, tz, principal=principal)
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
        replaces = rules.get_rule(session, rule_id)
        if not reaches_owner(principal, replaces.owner_area_id):
            raise RuleNotFound(rule_id)
    first = date_from or planning.local_today(tz)
    last = date_to or first + dt.timedelta(days=6)
    return conflict_service.preview_rule(
        session,
        data,
        principal=principal,
        tz=tz,
        day_from=first,
        day_to=last,
        replaces=replaces,
    )


# --- calendars -------------------------------------------------------------------------


_station_calendar_path = calendar_links.station_feed_path
_area_calendar_path = calendar_links.area_feed_path


def _link(library: LibraryDep, path: str, days: int, valid_days: int) -> CalendarLink:
    url, expires = calendar_links.signed_feed(
        library.url_secret, library.public_base_url, path, days, dt.timedelta(days=valid_days)
    )
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
    valid_days: ValidDaysQuery = calendar_links.CALENDAR_LINK_TTL.days,
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
    valid_days: ValidDaysQuery = calendar_links.CALENDAR_LINK_TTL.days,
) -> CalendarLink:
    """A signed feed URL for every station of the area (see the station link)."""
    principal.require(Permission.SCHEDULES_READ)
    return _link(library, _area_calendar_path(area.code), days, valid_days)


StartQuery = Annotated[BoundedDate | None, Query(description="first local day (default: today)")]


@dataclass
class CalendarFeed:
    """A calendar feed request: who asks (a login, or a signed link checked here), for how
    many days from which first day, in the service time zone."""

    access: CalendarAccess
    request: Request
    library: LibraryDep
    tz: TzDep
    days: DaysQuery = 7
    start: StartQuery = None

    def reader(self, path: str) -> Principal | None:
        """The logged-in reader (who must reach what the feed shows), or None for a
        valid signed link of `path` (anything else: 401/403)."""
        if self.access is not None:
            self.access.require(Permission.SCHEDULES_READ)
            return self.access
        calendar_links.verify_calendar(
            path,
            self.days,
            self.request.query_params.get("exp"),
            self.request.query_params.get("sig"),
            calendar_links.calendar_key(self.library.url_secret),
            utcnow(),
        )
        return None

    def response(
        self, session: Session, station_ids: list[int], *, name: str, description: str, file: str
    ) -> Response:
        """The stations' items as iCalendar (one event per item and placement)."""
        first = self.start or planning.local_today(self.tz)
        items = planning.calendar_items(session, station_ids, first, self.days, self.tz)
        data = render_calendar(
            items, name=name, generated_at=utcnow(), timezone=str(self.tz), description=description
        )
        return Response(
            content=data,
            media_type=ICS_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'inline; filename="{file}.ics"',
                "Cache-Control": "private, max-age=300",
            },
        )


FeedDep = Annotated[CalendarFeed, Depends()]
CALENDAR_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/calendar": {}}}}


@public_router.get(
    "/stations/{sid}/calendar.ics", response_class=Response, responses=CALENDAR_RESPONSES
)
def station_calendar(
    sid: Annotated[str, Path(pattern=CODE_PATTERN)], feed: FeedDep, session: SessionDep
) -> Response:
    """The station's items as iCalendar (one event per item).  Needs a login, or the
    ``exp``/``sig`` of a link from ``calendar-link``."""
    principal = feed.reader(_station_calendar_path(sid))
    station = stations_service.get_station(session, sid)
    if principal is not None and not principal.reaches(station.area_id):
        raise StationNotFound(sid)
    return feed.response(
        session,
        [station.id],
        name=station.name,
        description=f"Lịch phát của {station.name} ({station.sid})",
        file=station.sid,
    )


@public_router.get(
    "/areas/{code}/calendar.ics", response_class=Response, responses=CALENDAR_RESPONSES
)
def area_calendar(
    code: Annotated[str, Path(pattern=CODE_PATTERN)], feed: FeedDep, session: SessionDep
) -> Response:
    """Every item of every station in the area (and below), one event per item and
    placement.  Needs a login, or the ``exp``/``sig`` of a link from ``calendar-link``."""
    principal = feed.reader(_area_calendar_path(code))
    area = stations_service.get_area(session, code)
    if principal is not None and not principal.reaches(area.id):
        raise AreaNotFound(code)
    subtree = stations_service.subtree_ids(session, [area.id])
    station_ids = stations_service.station_ids_in(session, subtree, enabled_only=True)
    return feed.response(
        session,
        list(station_ids),
        name=area.name,
        description=f"Lịch phát các trạm thuộc {area.name}",
        file=area.code,
    )
