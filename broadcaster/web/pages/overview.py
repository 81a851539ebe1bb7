"""The overview (``/``): stations online per ward/commune, stations needing attention
(offline, faults, behind their plan, open alarms), what plays next, the last broadcasts;
refreshed from ``/tong-quan.json``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.orm import Session

from broadcaster.alarms import service as alarms_service
from broadcaster.alarms.rules import CONDITION_FAULTS, Condition
from broadcaster.alarms.service import OpenAlarm
from broadcaster.dispatch import reports
from broadcaster.web import errors
from broadcaster.web.pages.labels import FAULT_LABELS, LEVEL_LABELS, TIER_LABELS
from broadcaster.web.pages.shared import (
    MaybeAccount,
    SignedIn,
    ago,
    local,
    page_tz,
    recent_broadcasts,
    render,
)
from kernel.db import utcnow
from kernel.dependencies import SessionDep
from kernel.security import Principal
from kernel.tiers import tier_of
from stations.models import Station, StationState

router = APIRouter(include_in_schema=False)


def _alarm_reason(alarm: OpenAlarm) -> str:
    detail = f" ({alarm.detail})" if alarm.detail else ""
    return f"{alarm.severity_vi}: {alarm.title_vi}{detail}"


def attention_reasons(
    station: Station, state: StationState | None, alarms: Sequence[OpenAlarm] = ()
) -> list[str]:
    """Why a station needs a look (offline, faults, plan not applied, media missing, and
    its open alarms, most serious first, with their Vietnamese titles).  An alarm that
    repeats a reason already given (offline, plan, media) is not said twice, and a fault
    an open alarm covers is said by the alarm."""
    reasons: list[str] = []
    said: set[Condition] = set()
    if state is None or not state.online:
        said.add(Condition.STATION_OFFLINE)
        if state is not None and state.offline_since is not None:
            reasons.append(f"Mất kết nối {ago(state.offline_since)}")
        else:
            reasons.append("Chưa từng kết nối")
    covered = set().union(*(CONDITION_FAULTS.get(a.condition, frozenset()) for a in alarms))
    if state is not None:
        reasons.extend(
            f"Lỗi: {FAULT_LABELS.get(f, f)}" for f in state.faults or [] if f not in covered
        )
        published = state.desired_published_version or 0
        if published and state.applied_version != published:
            applied = state.applied_version if state.applied_version is not None else "—"
            reasons.append(f"Chưa áp dụng lịch mới (bản {applied}/{published})")
            said.add(Condition.PLAN_BEHIND)
        if state.missing:
            reasons.append(f"Thiếu {len(state.missing)} tệp âm thanh")
            said.add(Condition.MEDIA_MISSING)
    reasons.extend(_alarm_reason(a) for a in alarms if a.condition not in said)
    return reasons


def overview_data(session: Session, principal: Principal, tz: ZoneInfo) -> dict[str, Any]:
    """Everything the overview shows, JSON-ready (the page and its auto-refresh)."""
    now = utcnow()
    areas = reports.all_areas(session)
    rows = reports.station_states(session, principal.scope)
    open_alarms = alarms_service.open_alarms_by_station(session, principal.scope)
    units: dict[str, dict[str, Any]] = {}
    attention: list[dict[str, Any]] = []
    online_total = 0
    for station, state in rows:
        unit = reports.unit_of(areas, station.area_id)
        key = unit.code if unit else "-"
        entry = units.setdefault(
            key,
            {
                "code": key,
                "name": unit.name if unit else "Khác",
                "level": LEVEL_LABELS[unit.level] if unit else "",
                "total": 0,
                "online": 0,
            },
        )
        entry["total"] += 1
        online = bool(state and state.online)
        if online:
            entry["online"] += 1
            online_total += 1
        alarms = open_alarms.get(station.id, [])
        reasons = attention_reasons(station, state, alarms)
        if reasons:
            attention.append(
                {
                    "sid": station.sid,
                    "name": station.name,
                    "area": station.area.name,
                    "online": online,
                    "reasons": reasons,
                    "severity": max((a.severity.rank for a in alarms), default=-1),
                }
            )
    unit_list = sorted(units.values(), key=lambda u: u["name"])
    for unit_row in unit_list:
        unit_row["offline"] = unit_row["total"] - unit_row["online"]
        unit_row["percent"] = (
            math.floor(100 * unit_row["online"] / unit_row["total"]) if unit_row["total"] else 0
        )
    # offline first, then the most serious open alarm (the list shows the first 30)
    attention.sort(key=lambda a: (a["online"], -a["severity"], a["sid"]))
    for row in attention:
        del row["severity"]
    upcoming = [
        {
            "title": title,
            "start": local(start, tz, "%H:%M"),
            "day": ""
            if local(start, tz, "%x") == local(now, tz, "%x")
            else local(start, tz, "%d/%m"),
            "end": local(end, tz, "%H:%M"),
            "now": start <= now,
            "tier": tier_of(priority).value,
            "tier_label": TIER_LABELS[tier_of(priority)],
            "source": "Phát ngay" if source == "broadcast" else "Theo lịch",
            "stations": int(count),
        }
        for title, start, end, priority, source, count in reports.upcoming(
            session, principal.scope, now
        )
    ]
    return {
        "updated": local(now, tz, "%H:%M:%S"),
        "totals": {
            "stations": len(rows),
            "online": online_total,
            "offline": len(rows) - online_total,
            "attention": len(attention),
        },
        "units": unit_list,
        "attention": attention[:30],
        "upcoming": upcoming,
        "broadcasts": recent_broadcasts(session, principal, tz, 5),
    }


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    data = overview_data(session, account.principal, page_tz(request))
    return render(
        request, "overview.html", {"account": account, "active": "overview", "data": data}
    )


@router.get("/tong-quan.json")
def overview_json(request: Request, session: SessionDep, account: MaybeAccount) -> Response:
    if account is None:
        return errors.problem(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required",
            "unauthenticated",
            "Cần đăng nhập",
        )
    data = overview_data(session, account.principal, page_tz(request))
    return JSONResponse(data, headers={"Cache-Control": "no-store"})
