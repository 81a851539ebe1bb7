"""The play log (``/nhat-ky``): what was planned and played, with its daily totals per
ward/commune (minutes heard, and apart those reported during a speaker or amplifier
fault) and links to the totals as CSV for Vietnamese Excel (from the JSON API).  After a
reorganisation the totals read today's wards/communes or those of each play's time."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from broadcaster.dispatch import reports
from broadcaster.dispatch.models import PlayStatus
from broadcaster.reorg import service as reorg
from broadcaster.web.pages.labels import UNIT_LABELS
from broadcaster.web.pages.shared import (
    PAGE_SIZE,
    SignedIn,
    area_options,
    day_param,
    local_midnight,
    page_number,
    page_tz,
    pager,
    render,
)
from broadcaster.web.pages.stations import station_in_scope
from kernel.db import utcnow
from kernel.dependencies import SessionDep

MAX_LOG_DAYS = 31

router = APIRouter(include_in_schema=False)


@router.get("/nhat-ky", response_class=HTMLResponse)
def playlog_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    tu: str | None = None,
    den: str | None = None,
    tram: str | None = None,
    dia_ban: str | None = None,
    trang_thai: str | None = None,
    nguon: str | None = None,
    trang: str | None = None,
    don_vi: str | None = None,
) -> Response:
    """The filters are declared (so every request's text is checked as storable) and
    read leniently: a value that does not fit is left out or corrected, never an error."""
    principal = account.principal
    tz = page_tz(request)
    now = utcnow()
    first = day_param(tu) or now.astimezone(tz).date()
    last = day_param(den) or first
    if last < first:
        first, last = last, first
    notes: list[str] = []
    if (last - first).days >= MAX_LOG_DAYS:
        last = first + dt.timedelta(days=MAX_LOG_DAYS - 1)
        notes.append(f"Mỗi lần xem tối đa {MAX_LOG_DAYS} ngày; đã giới hạn đến {last:%d/%m/%Y}.")
    since = local_midnight(first, tz)
    until = local_midnight(last + dt.timedelta(days=1), tz)
    options = area_options(session, principal)
    area_code = dia_ban if dia_ban in {o.code for o in options} else None
    sid = (tram or "").strip() or None
    station = station_in_scope(session, principal, sid) if sid else None
    play_status = PlayStatus(trang_thai) if trang_thai in {s.value for s in PlayStatus} else None
    source = nguon if nguon in ("schedule", "broadcast") else None
    units = reorg.unit_choice(don_vi)
    if sid and station is None:
        notes.append(f"Không tìm thấy trạm {sid} trong địa bàn của bạn.")
    # an unknown or unreachable station matches nothing (its sid pattern is checked above)
    station_sid = station.sid if station else ("" if sid else None)
    totals_query = reports.play_query(
        session, principal.scope, sid=station_sid, area=area_code, since=since, until=until
    )
    query = reports.play_query(
        session,
        principal.scope,
        sid=station_sid,
        area=area_code,
        since=since,
        until=until,
        status=play_status,
        source=source,
        # what has happened, newest first (the future only when asked for)
        started_by=None if play_status in (PlayStatus.PLANNED, PlayStatus.CANCELLED) else now,
    )
    page = page_number(trang)
    rows, total = reports.list_plays(
        session, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, newest_first=True
    )
    filters = {
        "tu": first.isoformat(),
        "den": last.isoformat(),
        "tram": sid or "",
        "dia_ban": area_code or "",
        "trang_thai": play_status.value if play_status else "",
        "nguon": source or "",
        "don_vi": units,
    }
    csv_params = {"from": since.isoformat(), "to": until.isoformat(), "format": "csv"}
    if area_code:
        csv_params["area"] = area_code
    if units != "today":
        csv_params["units"] = units
    unit_at = reports.unit_reader(session, units)
    totals = sorted(
        reports.play_totals(session, totals_query, tz, unit_at=unit_at),
        key=lambda r: (r.date, r.name),
    )
    return render(
        request,
        "playlog.html",
        {
            "account": account,
            "active": "playlog",
            "options": options,
            "filters": filters,
            "rows": [(p, sid_, name) for p, sid_, name, _code in rows],
            "total": total,
            **pager("/nhat-ky", filters, page, total),
            "totals": totals,
            "not_heard_header": reports.NOT_HEARD_MINUTES,
            "csv_area": "/api/v1/playlog/totals?" + urlencode({**csv_params, "by": "area"}),
            "csv_station": "/api/v1/playlog/totals?" + urlencode({**csv_params, "by": "station"}),
            "notes": notes,
            "statuses": list(PlayStatus),
            "unit_choices": UNIT_LABELS.items(),
        },
    )
