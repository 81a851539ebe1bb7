"""Alarms (``/canh-bao``): the technician's list of alarms, open ones first (critical
first), with filters by severity, area and state, and the acknowledgement with a note
(through the JSON API, `static/app.js`)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from broadcaster.alarms import rules
from broadcaster.alarms import service as alarms_service
from broadcaster.web.pages.shared import (
    PAGE_SIZE,
    SignedIn,
    area_filter,
    page_number,
    pager,
    render,
)
from kernel.dependencies import SessionDep
from kernel.security import Permission, Principal
from stations import live
from stations import service as stations_service
from stations.models import Station

router = APIRouter(include_in_schema=False)

STATE_LABELS = {
    "open": "Đang còn",
    "raised": "Chưa xác nhận",
    "acknowledged": "Đã xác nhận",
    "cleared": "Đã hết",
}


#: The station page's telemetry charts: the field, its label and unit, over `CHART_DAYS`.
CHART_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("amp_temp_c", "Nhiệt độ bộ khuếch đại", "°C"),
    ("supply_v", "Điện áp nguồn", "V"),
    ("rssi_dbm", "Sóng di động (RSSI)", "dBm"),
)
CHART_DAYS = 3


def station_context(
    session: Session, principal: Principal, station: Station, tz: ZoneInfo, now: dt.datetime
) -> dict[str, Any]:
    """The station page's alarm history and telemetry charts."""
    history, _ = alarms_service.list_alarms(
        session,
        alarms_service.AlarmFilter(sid=station.sid),
        scope=principal.scope,
        limit=20,
        offset=0,
    )
    times, series = live.telemetry_series(
        session,
        station.id,
        [key for key, _label, _unit in CHART_FIELDS],
        since=now - dt.timedelta(days=CHART_DAYS),
    )
    return {
        "alarm_history": history,
        "ALARM_TITLES": {c.value: t for c, t in rules.CONDITION_TITLES_VI.items()},
        "ALARM_SEVERITIES": {s.value: label for s, label in rules.SEVERITY_LABELS_VI.items()},
        "ALARM_STATES": STATE_LABELS,
        "CHART_FIELDS": CHART_FIELDS,
        "CHART_DAYS": CHART_DAYS,
        "chart": {
            "at": [t.astimezone(tz).strftime("%d/%m %H:%M") for t in times],
            "series": series,
        },
    }


#: The map's marker colour classes and their Vietnamese legend.
MAP_STATES = {
    "critical": "Cảnh báo nghiêm trọng",
    "warning": "Cảnh báo",
    "offline": "Mất kết nối",
    "ok": "Bình thường",
    "disabled": "Đã tắt",
}


def _map_state(station: Station, worst: dict[int, rules.Severity]) -> str:
    if not station.enabled:
        return "disabled"
    severity = worst.get(station.id)
    if severity is rules.Severity.CRITICAL:
        return "critical"
    if severity is not None:
        return "warning"
    return "ok" if station.state is not None and station.state.online else "offline"


def station_map(session: Session, principal: Principal, tile_url: str) -> dict[str, Any]:
    """The stations in the account's areas with coordinates, coloured by state."""
    worst = alarms_service.open_severity_by_station(session, principal.scope)
    located = stations_service.all_stations(
        session, stations_service.station_query(session, scope=principal.scope)
    )
    points = [
        {
            "sid": s.sid,
            "name": s.name,
            "lat": s.latitude,
            "lon": s.longitude,
            "state": _map_state(s, worst),
        }
        for s in located
        if s.latitude is not None and s.longitude is not None
    ]
    return {"tiles": tile_url, "stations": points, "labels": MAP_STATES}


@router.get("/canh-bao", response_class=HTMLResponse)
def alarms_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    muc_do: str | None = None,
    area: str | None = None,
    trang_thai: str | None = None,
    trang: str | None = None,
) -> Response:
    """Filters read leniently: a value that does not fit is left out, never an error."""
    principal = account.principal
    options, area_code, notes = area_filter(session, principal, area)
    severity = rules.Severity(muc_do) if muc_do in {s.value for s in rules.Severity} else None
    state = trang_thai if trang_thai in STATE_LABELS else None
    page = page_number(trang)
    items, total = alarms_service.list_alarms(
        session,
        alarms_service.AlarmFilter(state=state, severity=severity, area=area_code),
        scope=principal.scope,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    filters = {
        "muc_do": severity.value if severity else "",
        "area": area_code or "",
        "trang_thai": state or "",
    }
    return render(
        request,
        "alarms.html",
        {
            "account": account,
            "active": "alarms",
            "options": options,
            "filters": filters,
            "alarms": items,
            "total": total,
            **pager("/canh-bao", filters, page, total),
            "notes": notes,
            "can_ack": principal.has(Permission.STATIONS_COMMAND),
            "STATE_LABELS": STATE_LABELS,
            "SEVERITY_LABELS": {s.value: label for s, label in rules.SEVERITY_LABELS_VI.items()},
            "CONDITION_TITLES": {c.value: t for c, t in rules.CONDITION_TITLES_VI.items()},
            "note_vi": rules.note_vi,
            "map": station_map(session, principal, request.app.state.settings.map_tile_url),
            "MAP_STATES": MAP_STATES,
        },
    )
