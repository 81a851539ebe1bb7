"""Programmes and schedules (``/lich...``): the week calendar of a ward/commune or of one
station, programmes and their editor, rules and their editor (every recurrence form,
targets from the area tree and groups, live preview and conflicts before saving), and
one station's playlist of any day (``/tram/{sid}/lich-phat?ngay=``).

The pages read through the schedules, registry and media services, scoped to the
account's areas (an object outside them answers the 404 page).  What the browser
changes — saving a programme or a rule, the live preview — goes through the JSON API with
the session cookie (`static/schedules.js`), which enforces the same rules.  The approval
queue (``/duyet``) shows what a waiting rule would do to the plan with `rule_conflicts`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from audio_library import service as media_service
from audio_library.dependencies import library_of
from audio_library.models import AssetStatus
from broadcaster.web.pages.labels import TIER_LABELS, VOICE_LABELS
from broadcaster.web.pages.shared import (
    Account,
    AreaOption,
    SignedIn,
    area_options,
    day_param,
    error_page,
    page_tz,
    render,
)
from broadcaster.web.pages.stations import day_playlist, station_in_scope
from kernel.approval import APPROVAL_LABELS_VI, Approval
from kernel.dependencies import SessionDep
from kernel.errors import DomainError
from kernel.security import Permission
from kernel.text import fold
from kernel.tiers import Tier, tier_of
from schedules import reads as schedule_reads
from schedules.exceptions import ProgrammeNotFound, RuleNotFound
from schedules.models import ScheduleRule
from schedules.schemas import PreviewRead
from schedules.service import calendar_links, planning, programmes, rules, sources, targets
from schedules.service import conflicts as conflict_service
from schedules.service.scope import reaches_owner
from stations import service as stations_service
from stations.exceptions import AreaNotFound
from stations.models import AreaLevel

router = APIRouter(include_in_schema=False)

LIST_LIMIT = 500
WEEKDAYS_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")
#: the recurrence forms of the rule editor (``recurrence.when.kind``), in Vietnamese
WHEN_LABELS = {
    "once": "Một lần",
    "daily": "Hằng ngày",
    "weekly": "Hằng tuần",
    "monthly": "Hằng tháng",
    "every_n_days": "Cách N ngày",
    "lunar": "Theo âm lịch (mùng 1, rằm…)",
    "rrule": "Quy tắc RRULE (nâng cao)",
}
WEEKDAY_CODES = dict(zip(("MO", "TU", "WE", "TH", "FR", "SA", "SU"), WEEKDAYS_VI, strict=True))
#: the tiers a rule may have (live is for broadcasts), lowest first
RULE_TIERS = (Tier.FILLER, Tier.NORMAL, Tier.PRIORITY, Tier.EMERGENCY)
ITEM_LABELS = {
    "asset": "Bản tin / tệp âm thanh",
    "jingle": "Nhạc hiệu",
    "relay": "Tiếp sóng",
    "gap": "Khoảng lặng",
    "text": "Văn bản đọc tự động",
}
APPROVAL_BY_VALUE = {a.value: label for a, label in APPROVAL_LABELS_VI.items()}


def _no_schedules(request: Request, account: Account) -> HTMLResponse:
    return error_page(request, account, 403, "Tài khoản của bạn không có quyền xem lịch phát.")


def _not_found(request: Request, account: Account, what: str) -> HTMLResponse:
    return error_page(request, account, 404, f"Không tìm thấy {what} trong địa bàn của bạn.")


def _id(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 10 else None


# --- the week calendar ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarBlock:
    """One block of a rule's occurrence on the calendar: where it lands and on how many
    of the chosen stations."""

    rule_id: int
    title: str
    start_at: dt.datetime
    end_at: dt.datetime
    tier: str
    shifted: bool
    stations: int
    relay: bool
    pending: bool = False  # a rule waiting for approval: where it would play if approved

    @property
    def tier_label(self) -> str:
        return TIER_LABELS.get(self.tier, self.tier)


def _blocks(
    session: Session, station_ids: set[int], first: dt.date, tz: ZoneInfo
) -> dict[dt.date, list[CalendarBlock]]:
    """The week's planned blocks of the stations, per local day: a block is a rule's
    occurrence on a station (its items together), counted once per distinct placement."""
    per_station: dict[tuple[int, int, dt.datetime], list[Any]] = defaultdict(list)
    wanted = [first + dt.timedelta(days=i) for i in range(7)]
    plans = planning.station_plans(session, wanted, tz, station_ids) if station_ids else []
    for plan_day in plans:
        for sid, planned in plan_day.stations.items():
            if sid in station_ids:
                for item in planned:
                    per_station[(sid, item.rule_id, item.occurrence_start)].append(item)
    titles = rules.rule_titles(session, {key[1] for key in per_station})
    placed: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for (sid, rule_id, _occurrence), block in per_station.items():
        key = (
            rule_id,
            block[0].start_at,
            block[-1].end_at,
            block[0].priority,
            any(i.shifted for i in block),
            any(i.kind == "relay" for i in block),
        )
        placed[key].add(sid)
    days: dict[dt.date, list[CalendarBlock]] = {first + dt.timedelta(days=i): [] for i in range(7)}
    for key, sids in placed.items():
        rule_id, start, end, priority, shifted, relay = key
        day = start.astimezone(tz).date()
        if day in days:
            days[day].append(
                CalendarBlock(
                    rule_id=rule_id,
                    title=titles.get(rule_id, f"#{rule_id}"),
                    start_at=start,
                    end_at=end,
                    tier=tier_of(priority).value,
                    shifted=shifted,
                    stations=len(sids),
                    relay=relay,
                )
            )
    for blocks in days.values():
        blocks.sort(key=lambda b: (b.start_at, -b.stations, b.title))
    return days


def _pending(
    session: Session,
    account: Account,
    station_ids: set[int],
    days: dict[dt.date, list[CalendarBlock]],
    first: dt.date,
    tz: ZoneInfo,
) -> int:
    """Adds the blocks of the rules waiting for approval to `days`; how many rules."""
    found = conflict_service.pending_blocks(
        session,
        principal=account.principal,
        station_ids=station_ids,
        day_from=first,
        day_to=first + dt.timedelta(days=6),
        tz=tz,
    )
    for b in found:
        day = b.start_at.astimezone(tz).date()
        if day in days:
            days[day].append(
                CalendarBlock(
                    rule_id=b.rule_id,
                    title=b.title,
                    start_at=b.start_at,
                    end_at=b.end_at,
                    tier=tier_of(b.priority).value,
                    shifted=b.shifted,
                    stations=b.stations,
                    relay=False,
                    pending=True,
                )
            )
    for blocks in days.values():
        blocks.sort(key=lambda b: (b.start_at, b.pending, -b.stations, b.title))
    return len({b.rule_id for b in found})


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


@router.get("/lich", response_class=HTMLResponse)
def calendar_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    khu_vuc: str | None = None,
    tram: str | None = None,
    tuan: str | None = None,
    cho_duyet: str | None = None,
) -> Response:
    """The week (Monday to Sunday) of a ward/commune or of one station: the relay chain,
    the commune's own programmes and the other tiers, each in its colour."""
    principal = account.principal
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    tz = page_tz(request)
    options = area_options(session, principal)
    station = None
    area_name = None
    area_code = None
    if tram:
        station = station_in_scope(session, principal, tram)
        if station is None:
            return _not_found(request, account, f"trạm {tram}")
        station_ids = {station.id} if station.enabled else set()
    else:
        area_code = khu_vuc or _default_area(options)
        if area_code not in {o.code for o in options}:
            return _not_found(request, account, "địa bàn này")
        try:
            area = stations_service.get_area(session, area_code)
        except AreaNotFound:
            return _not_found(request, account, "địa bàn này")
        area_name = area.name
        subtree = stations_service.subtree_ids(session, [area.id])
        station_ids = stations_service.station_ids_in(session, subtree, enabled_only=True)
    today = planning.local_today(tz)
    first = _monday(day_param(tuan) or today)
    days = _blocks(session, station_ids, first, tz)
    show_pending = cho_duyet != "0"
    pending = _pending(session, account, station_ids, days, first, tz) if show_pending else 0
    # a dropped or shifted slot is never silent: each day says how many of its
    # conflicts touch the chosen stations, with a link to them
    sids = set(stations_service.station_sids(session, station_ids).values())
    clashes = {
        day: sum(
            1
            for group in conflict_service.conflict_report(session, day, tz, principal=principal)[0]
            if sids.intersection(group.stations)
        )
        for day in days
    }
    here = f"tram={station.sid}" if station else f"khu_vuc={area_code}"
    if not show_pending:
        here += "&cho_duyet=0"
    library = library_of(request)
    ical, ical_expires = calendar_links.signed_feed(
        library.url_secret,
        library.public_base_url,
        calendar_links.station_feed_path(station.sid)
        if station
        else calendar_links.area_feed_path(str(area_code)),
    )
    return render(
        request,
        "schedules/calendar.html",
        {
            "account": account,
            "active": "schedules",
            "tab": "week",
            "options": options,
            "station": station,
            "area_code": area_code,
            "area_name": area_name,
            "station_count": len(station_ids),
            "first": first,
            "last": first + dt.timedelta(days=6),
            "days": [
                (day, WEEKDAYS_VI[day.weekday()], days[day], clashes[day]) for day in sorted(days)
            ],
            "today": today,
            "prev_link": f"/lich?{here}&tuan={(first - dt.timedelta(days=7)).isoformat()}",
            "next_link": f"/lich?{here}&tuan={(first + dt.timedelta(days=7)).isoformat()}",
            "tiers": [(t.value, TIER_LABELS[t.value]) for t in RULE_TIERS],
            "show_pending": show_pending,
            "pending_rules": pending,
            "ical_link": ical,
            "ical_expires": ical_expires,
            "toggle_link": (
                f"/lich?{here.replace('&cho_duyet=0', '')}&tuan={first.isoformat()}"
                if not show_pending
                else f"/lich?{here}&cho_duyet=0&tuan={first.isoformat()}"
            ),
        },
    )


def _default_area(options: list[AreaOption]) -> str | None:
    """The account's first ward/commune (else its first area)."""
    for option in options:
        if option.level is AreaLevel.WARD:
            return option.code
    return options[0].code if options else None


# --- programmes ---------------------------------------------------------------------------


@router.get("/lich/chuong-trinh", response_class=HTMLResponse)
def programmes_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    principal = account.principal
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    found, total = programmes.list_programmes(session, scope=principal.scope, limit=LIST_LIMIT)
    return render(
        request,
        "schedules/programmes.html",
        {
            "account": account,
            "active": "schedules",
            "tab": "programmes",
            "programmes": schedule_reads.programme_reads(session, found),
            "total": total,
            "can_write": principal.has(Permission.SCHEDULES_WRITE),
        },
    )


def _editor_assets(session: Session, account: Account) -> list[dict[str, Any]]:
    """Approved, ready audio the account may put in a programme."""
    assets, _ = media_service.list_assets(
        session,
        scope=account.principal.scope,
        status=AssetStatus.READY,
        approval=Approval.APPROVED,
        limit=LIST_LIMIT,
    )
    return [{"id": a.id, "title": a.title, "duration_ms": a.duration_ms or 0} for a in assets]


def _editor_sources(session: Session, account: Account) -> list[dict[str, Any]]:
    found, _ = sources.list_sources(
        session, scope=account.principal.scope, enabled=True, limit=LIST_LIMIT
    )
    return [{"id": s.id, "name": s.name, "kind": s.kind.value} for s in found]


def _owner_choices(session: Session, account: Account) -> dict[str, Any]:
    """The owner area a new programme or rule can get: the account's areas (the API's
    ``owner_area``), the default (empty) being the account's own area, or city-wide."""
    principal = account.principal
    default = (
        "Toàn thành phố"
        if principal.city_wide or not principal.area_codes
        else "Địa bàn của tài khoản"
    )
    options = [
        (o.code, "\u00a0\u00a0" * o.depth + o.name) for o in area_options(session, principal)
    ]
    return {"default": default, "options": options}


def _station_choices(session: Session, account: Account) -> list[dict[str, str]]:
    """The stations a rule may target one by one (the account's areas), for the picker."""
    query = stations_service.station_query(session, scope=account.principal.scope)
    return [
        {
            "sid": s.sid,
            "name": s.name,
            "area": s.area.name,
            "search": fold(f"{s.sid} {s.name} {s.area.name}"),
        }
        for s in stations_service.all_stations(session, query)
    ]


def _programme_editor(
    request: Request, session: SessionDep, account: Account, programme_id: int | None
) -> Response:
    principal = account.principal
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    current = None
    if programme_id is not None:
        try:
            programme = programmes.get_programme(session, programme_id)
        except ProgrammeNotFound:
            return _not_found(request, account, "chương trình này")
        if not reaches_owner(principal, programme.owner_area_id):
            return _not_found(request, account, "chương trình này")
        current = schedule_reads.programme_reads(session, [programme])[0]
    can_write = principal.has(Permission.SCHEDULES_WRITE)
    return render(
        request,
        "schedules/programme_edit.html",
        {
            "account": account,
            "active": "schedules",
            "tab": "programmes",
            "programme": current,
            "can_write": can_write,
            "owners": _owner_choices(session, account) if current is None else None,
            "editor": {
                "id": current.id if current else None,
                "title": current.title if current else "",
                "items": [i.model_dump(mode="json") for i in current.items] if current else [],
                "assets": _editor_assets(session, account),
                "sources": _editor_sources(session, account),
                "kinds": ITEM_LABELS,
                "voices": VOICE_LABELS,
            },
        },
    )


@router.get("/lich/chuong-trinh/moi", response_class=HTMLResponse)
def new_programme_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    return _programme_editor(request, session, account, None)


@router.get("/lich/chuong-trinh/{programme_id}", response_class=HTMLResponse)
def programme_page(
    request: Request, session: SessionDep, account: SignedIn, programme_id: str
) -> Response:
    number = _id(programme_id)
    if number is None:
        return _not_found(request, account, "chương trình này")
    return _programme_editor(request, session, account, number)


# --- rules --------------------------------------------------------------------------------------


@router.get("/lich/quy-tac", response_class=HTMLResponse)
def rules_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    ngay: str | None = None,
) -> Response:
    """Every rule the account sees, and the conflicts of a day on its stations (dropped
    and shifted slots, rules the builder had to leave out)."""
    principal = account.principal
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    tz = page_tz(request)
    day = day_param(ngay) or planning.local_today(tz)
    found, total = rules.list_rules(session, scope=principal.scope, limit=LIST_LIMIT)
    groups, skipped = conflict_service.conflict_report(session, day, tz, principal=principal)
    return render(
        request,
        "schedules/rules.html",
        {
            "account": account,
            "active": "schedules",
            "tab": "rules",
            "rules": schedule_reads.rule_reads(session, found, tz),
            "total": total,
            "day": day,
            "conflicts": groups,
            "skipped": skipped,
            "approval_labels": APPROVAL_BY_VALUE,
            "can_write": principal.has(Permission.SCHEDULES_WRITE),
        },
    )


def _rule_editor(
    request: Request, session: SessionDep, account: Account, rule_id: int | None
) -> Response:
    principal = account.principal
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    tz = page_tz(request)
    current = None
    current_targets: dict[str, list[str]] = {"stations": [], "groups": [], "areas": []}
    if rule_id is not None:
        try:
            rule = rules.get_rule(session, rule_id)
        except RuleNotFound:
            return _not_found(request, account, "lịch phát này")
        if not reaches_owner(principal, rule.owner_area_id):
            return _not_found(request, account, "lịch phát này")
        current = schedule_reads.rule_reads(session, [rule], tz)[0]
        current_targets = targets.current_targets(session, rule).model_dump()
    found, _ = programmes.list_programmes(session, scope=principal.scope, limit=LIST_LIMIT)
    groups, _ = stations_service.list_groups(session, scope=principal.scope, limit=LIST_LIMIT)
    tiers = [
        t
        for t in RULE_TIERS
        if t is not Tier.EMERGENCY or principal.has(Permission.BROADCAST_EMERGENCY)
    ]
    areas = area_options(session, principal)
    return render(
        request,
        "schedules/rule_edit.html",
        {
            "account": account,
            "active": "schedules",
            "tab": "rules",
            "rule": current,
            "areas": areas,
            "groups": groups,
            "owners": _owner_choices(session, account) if current is None else None,
            "station_choices": _station_choices(session, account),
            "can_write": principal.has(Permission.SCHEDULES_WRITE),
            "approval_labels": APPROVAL_BY_VALUE,
            "when_labels": WHEN_LABELS,
            "weekdays": WEEKDAY_CODES,
            "tier_choices": [(t.value, TIER_LABELS[t.value]) for t in tiers],
            "programmes": schedule_reads.programme_reads(session, found),
            "editor": {
                "id": current.id if current else None,
                "rule": current.model_dump(mode="json") if current else None,
                "targets": current_targets,
                "today": planning.local_today(tz).isoformat(),
                "tz": str(tz),
            },
        },
    )


@router.get("/lich/quy-tac/moi", response_class=HTMLResponse)
def new_rule_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    return _rule_editor(request, session, account, None)


@router.get("/lich/quy-tac/{rule_id}", response_class=HTMLResponse)
def rule_page(request: Request, session: SessionDep, account: SignedIn, rule_id: str) -> Response:
    number = _id(rule_id)
    if number is None:
        return _not_found(request, account, "lịch phát này")
    return _rule_editor(request, session, account, number)


def rule_conflicts(
    session: Session, account: Account, rule: ScheduleRule, tz: ZoneInfo, days: int = 7
) -> PreviewRead | None:
    """What approving a waiting rule would do over the next `days` days (its placements,
    the slots it would drop or shift and those it would lose): the approval queue shows
    it before the approver decides.  None when the rule cannot be previewed (its
    programme or targets are no longer valid: approving it then fails with the reason)."""
    first = planning.local_today(tz)
    data = conflict_service.rule_body(session, rule)
    try:
        return conflict_service.preview_rule(
            session,
            data,
            principal=account.principal,
            tz=tz,
            day_from=first,
            day_to=first + dt.timedelta(days=days - 1),
            replaces=rule,
        )
    except DomainError:
        return None


# --- one station's day ----------------------------------------------------------------------------


@router.get("/tram/{sid}/lich-phat", response_class=HTMLResponse)
def station_day_page(
    request: Request, session: SessionDep, account: SignedIn, sid: str, ngay: str | None = None
) -> Response:
    """What a station will play (or played) on any day: default tomorrow."""
    principal = account.principal
    station = station_in_scope(session, principal, sid)
    if station is None:
        return _not_found(request, account, f"trạm {sid}")
    if not principal.has(Permission.SCHEDULES_READ):
        return _no_schedules(request, account)
    tz = page_tz(request)
    today = planning.local_today(tz)
    day = day_param(ngay) or today + dt.timedelta(days=1)
    rows = day_playlist(session, station, day, tz)
    titles = rules.rule_titles(session, {row.item.rule_id for row in rows})
    return render(
        request,
        "schedules/station_day.html",
        {
            "account": account,
            "active": "stations",
            "station": station,
            "day": day,
            "weekday": WEEKDAYS_VI[day.weekday()],
            "today": today,
            "rows": rows,
            "rule_titles": titles,
            "total_ms": sum(
                int((r.item.end_at - r.item.start_at).total_seconds() * 1000) for r in rows
            ),
            "prev_day": (day - dt.timedelta(days=1)).isoformat(),
            "next_day": (day + dt.timedelta(days=1)).isoformat(),
        },
    )
