"""Alarms (``/canh-bao``): the technician's list of alarms, open ones first (critical
first), with filters by severity, area and state, and the acknowledgement with a note
(through the JSON API, `static/app.js`); the stations' availability over a period
(``/canh-bao/ty-le-san-sang``) per ward/commune and per station, with its downloads; the
alarm settings (``/canh-bao/thiet-lap``): who is notified (subscriptions) and the
thresholds per station kind, and on the station page its own thresholds.  Writes go
through the JSON API from `static/alarm_settings.js`."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from broadcaster.alarms import rules
from broadcaster.alarms import service as alarms_service
from broadcaster.reorg import service as reorg
from broadcaster.web.pages.labels import CHANNEL_LABELS, KIND_LABELS, UNIT_LABELS
from broadcaster.web.pages.shared import (
    PAGE_SIZE,
    SignedIn,
    area_filter,
    area_options,
    day_param,
    local_midnight,
    page_number,
    page_tz,
    pager,
    render,
)
from kernel.db import utcnow
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


def station_thresholds_context(
    session: Session, principal: Principal, station: Station
) -> dict[str, Any]:
    """The station's own thresholds: effective values, its overrides, and whether the
    account may change them (stations-write in the station's area, as the API asks)."""
    return {
        "own_thresholds": alarms_service.station_thresholds(session, station),
        "THRESHOLD_SPECS": list(rules.THRESHOLDS.values()),
        "can_edit_thresholds": principal.has(Permission.STATIONS_WRITE)
        and principal.reaches(station.area_id),
    }


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
        **station_thresholds_context(session, principal, station),
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


#: Said under the map: where its ward/commune outlines come from.
OUTLINES_NOTE = (
    "Đường bao phường/xã được vẽ bao quanh vị trí các trạm (không có dữ liệu ranh giới hành chính)."
)


def station_map(session: Session, principal: Principal, tile_url: str) -> dict[str, Any]:
    """The stations in the account's areas with coordinates, coloured by state, and the
    outline of each ward/commune (`alarms_service.unit_outlines`)."""
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
    return {
        "tiles": tile_url,
        "stations": points,
        "labels": MAP_STATES,
        "outlines": alarms_service.unit_outlines(session, located),
    }


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
            "alarms_tab": "list",
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
            "OUTLINES_NOTE": OUTLINES_NOTE,
        },
    )


# --- availability (``/canh-bao/ty-le-san-sang``) -----------------------------------------

AVAILABILITY_PATH = "/canh-bao/ty-le-san-sang"
#: The default period: the last 7 local days, today included (up to now).
AVAILABILITY_DAYS = 7
#: The longest period one view reads, and the earliest day it takes.
MAX_AVAILABILITY_DAYS = 366
EARLIEST_DAY = dt.date(2000, 1, 1)
UNITS_NOTE = (
    "Đơn vị tại thời điểm đó: nếu trong kỳ có sắp xếp đơn vị hành chính, phần trước ngày "
    "hiệu lực được tính cho đơn vị cũ, phần sau cho đơn vị mới."
)


def _period(tu: str | None, den: str | None, today: dt.date) -> tuple[dt.date, dt.date, str | None]:
    """The chosen days (first, last) and the Vietnamese error when they do not make a
    period (then the defaults, the last `AVAILABILITY_DAYS` days, are shown)."""
    default = (today - dt.timedelta(days=AVAILABILITY_DAYS - 1), today)
    first, last = day_param(tu), day_param(den)
    if (
        (tu and first is None)
        or (den and last is None)
        or any(d is not None and d < EARLIEST_DAY for d in (first, last))
    ):
        return *default, "Ngày không hợp lệ: hãy chọn ngày theo lịch (ngày/tháng/năm)."
    first = first or (last - dt.timedelta(days=AVAILABILITY_DAYS - 1) if last else default[0])
    last = last or max(first, min(first + dt.timedelta(days=AVAILABILITY_DAYS - 1), today))
    if last < first:
        return *default, "Khoảng thời gian không hợp lệ: “Từ ngày” phải trước hoặc bằng “Đến ngày”."
    if first > today:
        return *default, "“Từ ngày” chưa đến: chưa có số liệu cho khoảng thời gian này."
    if (last - first).days >= MAX_AVAILABILITY_DAYS:
        too_long = f"Mỗi lần xem tối đa {MAX_AVAILABILITY_DAYS} ngày; hãy chọn khoảng ngắn hơn."
        return *default, too_long
    return first, last, None


def _rows(
    found: list[alarms_service.AvailabilityRow], ended: dict[str, int]
) -> list[dict[str, Any]]:
    return [
        {
            "key": r.key,
            "name": r.name,
            "stations": r.stations,
            "percent": r.availability * 100 if r.availability is not None else None,
            "online_s": r.online_s,
            "offline_s": max(r.stations * r.period_s - r.online_s, 0.0),
            "disconnections": ended.get(r.key, 0),
        }
        for r in found
    ]


def availability_context(
    session: Session,
    principal: Principal,
    since: dt.datetime,
    until: dt.datetime,
    units: Literal["today", "then"],
    tz: ZoneInfo,
) -> dict[str, Any]:
    """The availability tables of the account's areas over [since, until): per
    ward/commune by ``units`` (by name) and per station (least available first), with
    the whole's availability and the links to the same figures as CSV and XLSX."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for by in ("area", "station"):
        found = alarms_service.availability(
            session, since, until, by=by, scope=principal.scope, units=units, tz=tz
        )
        ended = alarms_service.disconnections(
            session, since, until, by=by, scope=principal.scope, units=units, tz=tz
        )
        tables[by] = _rows(found, ended)
    tables["area"].sort(key=lambda r: (r["name"], r["key"]))
    tables["station"].sort(key=lambda r: (r["percent"] or 0.0, r["key"]))
    known = sum(r["online_s"] + r["offline_s"] for r in tables["station"])
    online = sum(r["online_s"] for r in tables["station"])
    params = {"from": since.isoformat(), "to": until.isoformat(), "units": units}
    return {
        "areas": tables["area"],
        "stations": tables["station"],
        "overall": online / known * 100 if known else None,
        "disconnections": sum(r["disconnections"] for r in tables["station"]),
        "downloads": {
            f"{by}-{fmt}": "/api/v1/alarms/availability?"
            + urlencode(params | {"by": by, "format": fmt})
            for by in ("area", "station")
            for fmt in ("xlsx", "csv")
        },
    }


@router.get(AVAILABILITY_PATH, response_class=HTMLResponse)
def availability_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    tu: str | None = None,
    den: str | None = None,
    don_vi: str | None = None,
) -> Response:
    """The stations' availability over the chosen days (default: the last 7, today up
    to now), in the account's areas.  Days that do not make a period are answered with
    the Vietnamese reason beside the form and the default period's figures (a view, not
    a failed request: 200); an unknown ``don_vi`` is read as today's units."""
    principal = account.principal
    tz = page_tz(request)
    now = utcnow()
    today = now.astimezone(tz).date()
    first, last, error = _period(tu, den, today)
    units = reorg.unit_choice(don_vi)
    since = local_midnight(first, tz)
    until = min(local_midnight(last + dt.timedelta(days=1), tz), now)
    return render(
        request,
        "alarms_availability.html",
        {
            "account": account,
            "active": "alarms",
            "alarms_tab": "availability",
            "error": error,
            # what was typed stays in the form after an error; the figures are the default's
            "filters": {
                "tu": (tu or "")[:10] if error else first.isoformat(),
                "den": (den or "")[:10] if error else last.isoformat(),
                "don_vi": units,
            },
            "first": first,
            "last": last,
            "until": until,
            "to_now": until == now,
            "UNIT_CHOICES": UNIT_LABELS,
            "UNITS_NOTE": UNITS_NOTE,
            "default_days": AVAILABILITY_DAYS,
            **availability_context(session, principal, since, until, units, tz),
        },
    )


# --- settings (``/canh-bao/thiet-lap``) ---------------------------------------------------

SETTINGS_PATH = "/canh-bao/thiet-lap"
#: A subscription without an area: every area of the city.
ALL_AREAS = "Toàn thành phố"


@router.get(SETTINGS_PATH, response_class=HTMLResponse)
def settings_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    """The account's alarm subscriptions (those of its areas, as the API lists them) with
    the form to add one, and the thresholds per station kind, editable by a city-wide
    account that may change stations (read-only for the others)."""
    principal = account.principal
    can_write = principal.has(Permission.STATIONS_WRITE)
    return render(
        request,
        "alarms_settings.html",
        {
            "account": account,
            "active": "alarms",
            "alarms_tab": "settings",
            "subscriptions": alarms_service.list_subscriptions(
                session, principal.scope, city_wide=principal.city_wide
            ),
            "can_subscribe": can_write,
            "can_all_areas": principal.city_wide,
            "area_options": area_options(session, principal),
            "ALL_AREAS": ALL_AREAS,
            "CHANNEL_LABELS": {c.value: label for c, label in CHANNEL_LABELS.items()},
            "SEVERITY_LABELS": {s.value: label for s, label in rules.SEVERITY_LABELS_VI.items()},
            "default_severity": rules.Severity.WARNING.value,
            "THRESHOLD_SPECS": list(rules.THRESHOLDS.values()),
            "kinds": alarms_service.kind_thresholds(session),
            "KIND_NAMES": {k.value: label for k, label in KIND_LABELS.items()},
            "can_edit_kinds": can_write and principal.city_wide,
        },
    )
