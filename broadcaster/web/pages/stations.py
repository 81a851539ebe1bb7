"""Stations (``/tram``, ``/tram/{sid}``): the list with its filters, one station in detail
(state, telemetry, today's playlist, recent plays, commands, connection history)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from broadcaster.alarms import service as alarms_service
from broadcaster.dispatch import reports
from broadcaster.web.pages import alarms as station_alarms
from broadcaster.web.pages.labels import CONNECTION_CAUSE_LABELS
from broadcaster.web.pages.overview import attention_reasons
from broadcaster.web.pages.shared import (
    PAGE_SIZE,
    SignedIn,
    area_filter,
    duration,
    error_page,
    page_number,
    page_tz,
    pager,
    render,
)
from kernel.db import utcnow
from kernel.dependencies import SessionDep
from kernel.security import Permission, Principal
from kernel.tiers import Tier, tier_of
from schedules import service as schedules_service
from schedules.plans import PlannedItem
from stations import live
from stations import service as stations_service
from stations.exceptions import StationNotFound
from stations.models import Station, StationKind
from stations.schemas import SID_PATTERN

router = APIRouter(include_in_schema=False)


def _flag(value: str | None) -> bool | None:
    return {"1": True, "0": False}.get(value or "")


@router.get("/tram", response_class=HTMLResponse)
def stations_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    area: str | None = None,
    kind: str | None = None,
    online: str | None = None,
    q: str | None = None,
    trang: str | None = None,
) -> Response:
    """The filters are declared (so every request's text is checked as storable) and
    read leniently: a value that does not fit is left out, never an error."""
    principal = account.principal
    options, area_code, notes = area_filter(session, principal, area)
    station_kind = StationKind(kind) if kind in {k.value for k in StationKind} else None
    online_flag = _flag(online)
    search = (q or "").strip()[:200] or None
    page = page_number(trang)
    query = stations_service.station_query(
        session,
        scope=principal.scope,
        area=area_code,
        kind=station_kind,
        q=search,
        online=online_flag,
    )
    items, total = stations_service.list_stations(
        session, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    filters = {
        "area": area_code or "",
        "kind": station_kind.value if station_kind else "",
        "online": (online or "") if online_flag is not None else "",
        "q": search or "",
    }
    return render(
        request,
        "stations.html",
        {
            "account": account,
            "active": "stations",
            "options": options,
            "filters": filters,
            "stations": items,
            "total": total,
            **pager("/tram", filters, page, total),
            "notes": notes,
        },
    )


@dataclass(frozen=True)
class PlaylistRow:
    """A planned item of a day's playlist and what the play log says of it."""

    item: PlannedItem
    status: str | None

    @property
    def tier(self) -> Tier:
        return tier_of(self.item.priority)


def day_playlist(
    session: Session, station: Station, day: dt.date, tz: ZoneInfo
) -> list[PlaylistRow]:
    """The station's planned items of the local `day`, with what the play log says."""
    plan = schedules_service.station_plans(session, [day], tz, {station.id})[0]
    items = plan.stations.get(station.id, ())
    statuses = reports.play_statuses(session, station.id, [i.item_id for i in items])
    return [
        PlaylistRow(item, statuses[item.item_id].value if item.item_id in statuses else None)
        for item in items
    ]


def station_in_scope(session: Session, principal: Principal, sid: str) -> Station | None:
    """The station, if the sid is well formed and the principal's areas reach it."""
    if not re.fullmatch(SID_PATTERN, sid):
        return None
    try:
        station = stations_service.get_station(session, sid)
    except StationNotFound:
        return None
    return station if principal.reaches(station.area_id) else None


TELEMETRY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("amp_temp_c", "Nhiệt độ bộ khuếch đại", "°C"),
    ("supply_v", "Điện áp nguồn", "V"),
    ("on_battery", "Đang chạy pin", ""),
    ("rssi_dbm", "Sóng di động (RSSI)", "dBm"),
    ("clock_offset_ms", "Lệch đồng hồ", "ms"),
    ("volume", "Âm lượng", "%"),
    ("speaker_ok", "Đường dây loa", ""),
    ("storage_free_mb", "Bộ nhớ trống", "MB"),
    ("uptime_s", "Thời gian chạy", ""),
    ("fm_on", "Thu FM", ""),
)


def _telemetry_text(key: str, value: Any, unit: str) -> str:
    if key == "uptime_s":
        return duration(float(value) * 1000)
    if key == "speaker_ok":
        return "Bình thường" if value else "Có lỗi"
    if isinstance(value, bool):
        return "Có" if value else "Không"
    if isinstance(value, float):
        return f"{value:.1f} {unit}".strip()
    return f"{value} {unit}".strip()


def _telemetry_rows(
    session: Session, station: Station, data: dict[str, Any] | None
) -> list[tuple[str, str]]:
    if not data:
        return []
    rows = [
        (label, _telemetry_text(key, data[key], unit))
        for key, label, unit in TELEMETRY_FIELDS
        if data.get(key) is not None
    ]
    playing = data.get("playing")
    if isinstance(playing, dict):
        item_id, cmd_id = playing.get("item_id"), playing.get("cmd_id")
        title = reports.playing_title(session, station.id, item_id=item_id, cmd_id=cmd_id)
        rows.append(("Đang phát", str(title or item_id or cmd_id or "—")))
    return rows


#: how many of the latest connection intervals the station page lists
CONNECTION_ROWS = 20


@dataclass(frozen=True)
class ConnectionRow:
    """One connection interval as the station page lists it."""

    online_at: dt.datetime
    offline_at: dt.datetime | None
    duration: str
    cause: str


def connection_rows(session: Session, station: Station, now: dt.datetime) -> list[ConnectionRow]:
    """The station's latest connection intervals, newest first: online from/to, how long
    (an open one: until now) and why it ended, in Vietnamese."""
    intervals, _ = live.connections(session, station.id, limit=CONNECTION_ROWS)
    return [
        ConnectionRow(
            online_at=c.online_at,
            offline_at=c.offline_at,
            duration=duration(((c.offline_at or now) - c.online_at).total_seconds() * 1000),
            cause=CONNECTION_CAUSE_LABELS[c.cause] if c.cause else "Đang kết nối",
        )
        for c in intervals
    ]


@router.get("/tram/{sid}", response_class=HTMLResponse)
def station_page(request: Request, session: SessionDep, account: SignedIn, sid: str) -> Response:
    principal = account.principal
    station = station_in_scope(session, principal, sid)
    if station is None:
        return error_page(
            request, account, 404, f"Không tìm thấy trạm {sid} trong địa bàn của bạn."
        )
    now = utcnow()
    state = station.state
    playlist = (
        day_playlist(session, station, now.astimezone(page_tz(request)).date(), page_tz(request))
        if principal.has(Permission.SCHEDULES_READ)
        else []
    )
    commands, _ = reports.station_commands(session, station.id, limit=10, with_plays=False)
    can_command = principal.has(Permission.STATIONS_COMMAND) and principal.reaches(station.area_id)
    open_alarms = alarms_service.open_alarms_by_station(session, None, [station.id]).get(
        station.id, []
    )
    return render(
        request,
        "station.html",
        {
            "account": account,
            "active": "stations",
            "station": station,
            "state": state,
            "reasons": attention_reasons(station, state, open_alarms) if station.enabled else [],
            "connections": connection_rows(session, station, now),
            "telemetry": _telemetry_rows(session, station, state.telemetry if state else None),
            "playlist": playlist,
            "plays": reports.recent_plays(session, station.id, now),
            "commands": commands,
            "can_command": can_command,
            **station_alarms.station_context(session, principal, station, page_tz(request), now),
        },
    )
