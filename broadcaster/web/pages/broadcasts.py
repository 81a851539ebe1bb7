"""Broadcasts (``/phat-thanh``, ``/phat-thanh/{id}``): send one, follow one live (SSE).
Sending and stopping go through the JSON API from the browser (`static/app.js`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from audio_library import service as media_service
from audio_library.models import Approval, AssetStatus, MediaAsset
from broadcaster.dispatch import emergency_report, reports
from broadcaster.dispatch.models import BroadcastStatus
from broadcaster.web.pages.labels import TARGET_LABELS, reason_label
from broadcaster.web.pages.shared import (
    MAX_LIST,
    Account,
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
from kernel.tiers import Tier
from stations import service as stations_service
from stations.models import AreaLevel

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StationChoice:
    sid: str
    name: str


@dataclass(frozen=True)
class TargetChoice:
    """An area or a group of the form, with the enabled stations it reaches (the
    confirmation counts them before sending)."""

    code: str
    name: str
    sids: str  # space-separated


EMERGENCY_TAG = "khan-cap"


def usable_assets(
    assets: Sequence[MediaAsset], principal: Principal
) -> tuple[list[MediaAsset], list[MediaAsset]]:
    """The approved assets the form offers: the account's own areas' first (the default
    comes from them), then the city's shared ones.  A spoken emergency alert someone
    else sent (saved city-wide, tagged ``khan-cap``) is not offered to an account of
    one ward/commune: it was another commune's alert, not a bulletin for reuse."""
    if principal.scope is None:
        return list(assets), []
    own = [a for a in assets if a.owner_area_id is not None]
    shared = [
        a
        for a in assets
        if a.owner_area_id is None
        and not (EMERGENCY_TAG in (a.tags or []) and a.created_by != principal.username)
    ]
    return own, shared


def _broadcast_choices(session: Session, principal: Principal) -> dict[str, Any]:
    areas = reports.all_areas(session)
    visible = [a for a in areas.values() if principal.reaches(a.id)]
    unit_areas = sorted(
        (a for a in visible if a.level in (AreaLevel.WARD, AreaLevel.COMMUNE)),
        key=lambda a: (a.level.value != "ward", a.name),
    )
    if not unit_areas:
        unit_areas = sorted(
            (a for a in visible if a.level is AreaLevel.HAMLET), key=lambda a: a.name
        )
    groups, _ = stations_service.list_groups(session, scope=principal.scope, limit=MAX_LIST)
    by_unit: dict[str, list[StationChoice]] = defaultdict(list)
    sids_under: dict[int, list[str]] = defaultdict(list)
    stations = reports.enabled_stations(session, principal.scope)
    sid_of = {s.id: s.sid for s in stations}
    for station in stations:
        unit = reports.unit_of(areas, station.area_id)
        by_unit[unit.name if unit else "Khác"].append(StationChoice(station.sid, station.name))
        cursor = areas.get(station.area_id)
        while cursor is not None:
            sids_under[cursor.id].append(station.sid)
            cursor = areas.get(cursor.parent_id) if cursor.parent_id else None
    units = [TargetChoice(a.code, a.name, " ".join(sids_under[a.id])) for a in unit_areas]
    custom = [
        TargetChoice(
            g.gid,
            g.name,
            " ".join(
                sorted(
                    sid_of[i] for i in stations_service.group_station_ids(session, g) if i in sid_of
                )
            ),
        )
        for g in groups
        if not g.builtin and not g.auto
    ]
    assets, _ = media_service.list_assets(
        session,
        scope=principal.scope,
        status=AssetStatus.READY,
        approval=Approval.APPROVED,
        limit=200,
    )
    own, shared = usable_assets(assets, principal)
    return {
        "city_wide": principal.city_wide,
        "units": units,
        "groups": custom,
        "stations_by_unit": sorted(by_unit.items()),
        "own_assets": own,
        "shared_assets": shared,
        "station_count": len(stations),
    }


def broadcast_refused(request: Request, account: Account) -> Response | None:
    """The 403 page for an account without the broadcast right (the broadcast form and
    live paging), or None."""
    if account.principal.has(Permission.BROADCAST_SEND):
        return None
    return error_page(
        request,
        account,
        403,
        "Tài khoản của bạn không có quyền phát thanh. "
        "Liên hệ quản trị thành phố nếu cần được cấp quyền.",
    )


@router.get("/phat-thanh", response_class=HTMLResponse)
def broadcast_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    principal = account.principal
    if (refused := broadcast_refused(request, account)) is not None:
        return refused
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
            raise NotFoundError(
                f"broadcast {broadcast_id!r} not found", message_vi="Không tìm thấy lượt phát"
            )
        broadcast = reports.broadcast_in_scope(session, principal, int(broadcast_id))
    except NotFoundError:
        return error_page(request, account, 404, "Không tìm thấy lượt phát này.")
    tz = page_tz(request)
    report = emergency_report.emergency_report(session, broadcast)
    can_send = principal.has(Permission.BROADCAST_SEND) and (
        broadcast.tier != Tier.EMERGENCY or principal.has(Permission.BROADCAST_EMERGENCY)
    )
    return render(
        request,
        "broadcast_view.html",
        {
            "account": account,
            "active": "broadcast",
            "broadcast": broadcast_summary(session, broadcast, tz),
            "can_stop": principal.has(Permission.BROADCAST_SEND)
            and broadcast.status is BroadcastStatus.ACTIVE,
            "report": report,
            "report_lead": emergency_report.report_lead(report, tz),
            "missed": [
                {
                    "sid": s.sid,
                    "name": s.name,
                    "area": s.area,
                    "status": TARGET_LABELS.get(s.status, s.status.value),
                    "reason": reason_label(s.reason) or "—",
                    "attempts": s.attempts,
                }
                for s in report.missed
            ],
            # "send again to those who missed it": the permission sending it needed
            "can_resend": can_send
            and broadcast.status is not BroadcastStatus.STOPPED
            and bool(report.missed),
        },
    )
