"""Broadcasts (``/phat-thanh``, ``/phat-thanh/{id}``): send one, follow one live (SSE).
Sending and stopping go through the JSON API from the browser (`static/app.js`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from audio_library import service as media_service
from audio_library.models import Approval, AssetStatus
from broadcaster.dispatch import reports
from broadcaster.dispatch.models import BroadcastStatus
from broadcaster.web.pages.shared import (
    MAX_LIST,
    SignedIn,
    broadcast_summary,
    error_page,
    page_tz,
    recent_broadcasts,
    render,
)
from kernel.dependencies import SessionDep
from kernel.errors import NotFoundError
from kernel.security import Permission, Principal
from stations import service as stations_service
from stations.models import AreaLevel

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StationChoice:
    sid: str
    name: str


def _broadcast_choices(session: Session, principal: Principal) -> dict[str, Any]:
    areas = reports.all_areas(session)
    visible = [a for a in areas.values() if principal.reaches(a.id)]
    units = sorted(
        (a for a in visible if a.level in (AreaLevel.WARD, AreaLevel.COMMUNE)),
        key=lambda a: (a.level.value != "ward", a.name),
    )
    if not units:
        units = sorted((a for a in visible if a.level is AreaLevel.HAMLET), key=lambda a: a.name)
    groups, _ = stations_service.list_groups(session, scope=principal.scope, limit=MAX_LIST)
    custom = [g for g in groups if not g.builtin and not g.auto]
    by_unit: dict[str, list[StationChoice]] = defaultdict(list)
    stations = reports.enabled_stations(session, principal.scope)
    for station in stations:
        unit = reports.unit_of(areas, station.area_id)
        by_unit[unit.name if unit else "Khác"].append(StationChoice(station.sid, station.name))
    assets, _ = media_service.list_assets(
        session,
        scope=principal.scope,
        status=AssetStatus.READY,
        approval=Approval.APPROVED,
        limit=200,
    )
    return {
        "city_wide": principal.city_wide,
        "units": units,
        "groups": custom,
        "stations_by_unit": sorted(by_unit.items()),
        "assets": assets,
        "station_count": len(stations),
    }


@router.get("/phat-thanh", response_class=HTMLResponse)
def broadcast_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    principal = account.principal
    if not principal.has(Permission.BROADCAST_SEND):
        return error_page(
            request,
            account,
            403,
            "Tài khoản của bạn không có quyền phát thanh. "
            "Liên hệ quản trị thành phố nếu cần được cấp quyền.",
        )
    return render(
        request,
        "broadcast.html",
        {
            "account": account,
            "active": "broadcast",
            "choices": _broadcast_choices(session, principal),
            "can_emergency": principal.has(Permission.BROADCAST_EMERGENCY),
            "recent": recent_broadcasts(session, principal, page_tz(request), 10),
        },
    )


@router.get("/phat-thanh/{broadcast_id}", response_class=HTMLResponse)
def broadcast_view_page(
    request: Request, session: SessionDep, account: SignedIn, broadcast_id: str
) -> Response:
    principal = account.principal
    try:
        if not (broadcast_id.isdigit() and len(broadcast_id) < 12):
            raise NotFoundError(f"broadcast {broadcast_id!r} not found")
        broadcast = reports.broadcast_in_scope(session, principal, int(broadcast_id))
    except NotFoundError:
        return error_page(request, account, 404, "Không tìm thấy lượt phát này.")
    return render(
        request,
        "broadcast_view.html",
        {
            "account": account,
            "active": "broadcast",
            "broadcast": broadcast_summary(session, broadcast, page_tz(request)),
            "can_stop": principal.has(Permission.BROADCAST_SEND)
            and broadcast.status is BroadcastStatus.ACTIVE,
        },
    )
