"""The web dashboard: server-rendered HTML pages for operators and technicians.

Every page is a public route that reads the ``broadcaster_session`` cookie itself
(`broadcaster.auth.service.resolve_token` / `principal_for`) and redirects to
``/dang-nhap`` without a valid session.  Data comes from the same service functions
and scope rules as the JSON API: an account sees its areas and what lies under them,
and an object outside them answers the 404 page, exactly like the API.  What the
browser changes (commands, broadcasts, stop) goes through the JSON API with the
session cookie (`static/app.js`); the pages never bypass it.

Pages (Vietnamese paths, as operators say them):

- ``/dang-nhap``, ``/dang-xuat``: sign in and out (form posts, no JavaScript needed);
- ``/``: overview (stations online per ward/commune, stations needing attention, the
  next items on the schedule, the last broadcasts), refreshed from ``/tong-quan.json``;
- ``/tram``, ``/tram/{sid}``: station list with filters, one station in detail;
- ``/phat-thanh``, ``/phat-thanh/{id}``: send a broadcast, follow one live (SSE);
- ``/nhat-ky``: the play log and the daily totals (CSV from the API).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audio_library import service as media_service
from audio_library.models import Approval, AssetStatus
from broadcaster.auth import service as auth_service
from broadcaster.auth.dependencies import COOKIE_NAME, note_token_use
from broadcaster.auth.models import Token, TokenKind
from broadcaster.dispatch import broadcasts as broadcast_service
from broadcaster.dispatch import outbox
from broadcaster.dispatch.models import (
    Broadcast,
    BroadcastStatus,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    TargetStatus,
)
from kernel import audit as audit_log
from kernel.db import utcnow
from kernel.dependencies import SessionDep, client_ip
from kernel.errors import RateLimited, Unauthenticated
from kernel.security import Permission, Principal, Role
from schedules import service as schedules_service
from stations import service as stations_service
from stations.models import Area, AreaLevel, Station, StationKind, StationState
from stations.schemas import SID_PATTERN

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/static/app"
LOGIN_PATH = "/dang-nhap"
REFRESH_S = 15
PAGE_SIZE = 100
MAX_LIST = 1000
MAX_LOG_DAYS = 31

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")

# --- Vietnamese labels -----------------------------------------------------------------

ROLE_LABELS = {
    Role.ADMIN: "Quản trị thành phố",
    Role.OPERATOR: "Cán bộ vận hành",
    Role.APPROVER: "Người duyệt tin",
    Role.TECHNICIAN: "Kỹ thuật viên",
    Role.VIEWER: "Người xem",
}
TIER_LABELS = {
    "filler": "Lấp chỗ trống",
    "normal": "Thông thường",
    "priority": "Ưu tiên",
    "live": "Trực tiếp",
    "emergency": "Khẩn cấp",
}
TARGET_LABELS = {
    TargetStatus.PENDING: "Chờ gửi",
    TargetStatus.SENT: "Đã gửi",
    TargetStatus.RECEIVED: "Đã nhận",
    TargetStatus.IN_PROGRESS: "Đang thực hiện",
    TargetStatus.SUCCEEDED: "Thành công",
    TargetStatus.FAILED: "Thất bại",
    TargetStatus.REJECTED: "Bị từ chối",
    TargetStatus.EXPIRED: "Hết hạn",
}
PLAY_LABELS = {
    PlayStatus.PLANNED: "Đã lên lịch",
    PlayStatus.PLAYING: "Đang phát",
    PlayStatus.PLAYED: "Đã phát",
    PlayStatus.PARTIAL: "Phát một phần",
    PlayStatus.PREEMPTED: "Bị chen ngang",
    PlayStatus.SKIPPED: "Bỏ qua",
    PlayStatus.FAILED: "Lỗi",
    PlayStatus.MISSED: "Không phát",
    PlayStatus.CANCELLED: "Đã hủy",
}
BROADCAST_LABELS = {
    BroadcastStatus.ACTIVE: "Đang phát",
    BroadcastStatus.STOPPED: "Đã dừng",
    BroadcastStatus.FINISHED: "Đã kết thúc",
}
KIND_LABELS = {StationKind.HAMLET: "Trạm ấp/khu phố", StationKind.SMART: "Cụm loa thông minh"}
LEVEL_LABELS = {
    AreaLevel.CITY: "Thành phố",
    AreaLevel.WARD: "Phường",
    AreaLevel.COMMUNE: "Xã",
    AreaLevel.HAMLET: "Ấp/khu phố",
}
FAULT_LABELS = {
    "power_lost": "Mất điện lưới",
    "on_battery": "Đang chạy pin",
    "amp_overheat": "Bộ khuếch đại quá nhiệt",
    "speaker_line": "Lỗi đường dây loa",
    "storage_low": "Bộ nhớ sắp đầy",
    "clock_unsynced": "Đồng hồ chưa đồng bộ",
    "relay_down": "Mất nguồn tiếp sóng",
    "other": "Lỗi khác",
}
COMMAND_LABELS = {
    "ping": "Kiểm tra kết nối",
    "volume": "Đặt âm lượng",
    "sync": "Đồng bộ lịch phát",
    "reboot": "Khởi động lại",
    "stop": "Dừng phát",
    "rebirth": "Báo lại trạng thái",
}
REASON_LABELS = {
    "no play event from the station": "trạm không báo đã phát",
    "no end event from the station": "trạm không báo kết thúc",
    "removed from the schedule": "đã bỏ khỏi lịch",
}
VOICE_LABELS = {"south": "Giọng miền Nam", "north": "Giọng miền Bắc", "central": "Giọng miền Trung"}


def tier_of(priority: int) -> str:
    """The tier name of a protocol priority (0 filler ... 9 emergency)."""
    if priority >= 9:
        return "emergency"
    if priority >= 7:
        return "live"
    if priority >= 5:
        return "priority"
    if priority >= 1:
        return "normal"
    return "filler"


# --- template helpers ------------------------------------------------------------------


def _local(value: dt.datetime | None, tz: ZoneInfo, fmt: str = "%H:%M %d/%m/%Y") -> str:
    if value is None:
        return "—"
    return value.astimezone(tz).strftime(fmt)


def _duration(ms: int | float | None) -> str:
    if ms is None:
        return "—"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} giây"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} phút {seconds:02d} giây" if seconds else f"{minutes} phút"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} giờ {minutes:02d} phút"


def _ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "chưa bao giờ"
    seconds = int(((now or utcnow()) - value).total_seconds())
    if seconds < 60:
        return "vừa xong"
    if seconds < 3600:
        return f"{seconds // 60} phút trước"
    if seconds < 86400:
        return f"{seconds // 3600} giờ trước"
    return f"{seconds // 86400} ngày trước"


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


templates.env.filters["local"] = _local
templates.env.filters["duration"] = _duration
templates.env.filters["ago"] = _ago
templates.env.globals.update(
    STATIC=STATIC_PREFIX,
    ASSET_VERSION=_asset_version(),
    TIER_LABELS=TIER_LABELS,
    KIND_LABELS=KIND_LABELS,
    FAULT_LABELS=FAULT_LABELS,
    COMMAND_LABELS=COMMAND_LABELS,
    VOICE_LABELS=VOICE_LABELS,
    REASON_LABELS=REASON_LABELS,
    TARGET_LABELS={s.value: label for s, label in TARGET_LABELS.items()},
    PLAY_LABELS={s.value: label for s, label in PLAY_LABELS.items()},
    REFRESH_S=REFRESH_S,
    tier_of=tier_of,
    JS_LABELS={
        "target": {s.value: label for s, label in TARGET_LABELS.items()},
        "play": {s.value: label for s, label in PLAY_LABELS.items()},
        "command": COMMAND_LABELS,
        "tier": TIER_LABELS,
    },
)


# --- session and account -----------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What the page header shows about the signed-in account."""

    principal: Principal
    username: str
    full_name: str | None
    role_label: str
    areas: list[str]

    def can(self, permission: str) -> bool:
        return self.principal.has(Permission(permission))


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


def current_account(request: Request, session: Session) -> Account | None:
    """The account of the session cookie, or None (no cookie, expired, revoked)."""
    token_text = request.cookies.get(COOKIE_NAME)
    if not token_text:
        return None
    token = auth_service.resolve_token(session, token_text)
    if token is None:
        return None
    user = token.user
    principal = auth_service.principal_for(session, user, token)
    note_token_use(request, token)
    return Account(
        principal=principal,
        username=user.username,
        full_name=user.full_name,
        role_label=ROLE_LABELS.get(user.role, user.role.value),
        areas=[a.name for a in sorted(user.areas, key=lambda a: (a.level.rank, a.name))],
    )


def _safe_next(target: str | None) -> str:
    """A local path to go back to after signing in; anything else means the overview."""
    if (
        not target
        or len(target) > 2000
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 0x21 for ch in target)
    ):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith(LOGIN_PATH):
        return "/"
    return target


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = "" if here == "/" else "?" + urlencode({"next": here})
    return RedirectResponse(LOGIN_PATH + query, status_code=status.HTTP_303_SEE_OTHER)


def _cross_site(request: Request, *, required: bool) -> bool:
    """True when a form post does not come from our own pages (CSRF defence)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return required
    return urlsplit(source).netloc != request.headers.get("host", "")


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    context = {"tz": _tz(request), "now": utcnow(), **context}
    response = templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, account: Account | None, code: int, message: str) -> HTMLResponse:
    titles = {
        403: "Không có quyền truy cập",
        404: "Không tìm thấy",
        400: "Yêu cầu không hợp lệ",
    }
    return render(
        request,
        "error.html",
        {"account": account, "code": code, "title": titles.get(code, "Lỗi"), "message": message},
        status_code=code,
    )


# --- areas and scope ---------------------------------------------------------------------


@dataclass(frozen=True)
class AreaOption:
    code: str
    name: str
    level: AreaLevel
    depth: int


def _all_areas(session: Session) -> dict[int, Area]:
    return {a.id: a for a in session.scalars(select(Area))}


def _unit_of(areas: dict[int, Area], area_id: int) -> Area | None:
    """The ward/commune an area lies in (itself for a ward/commune), if any."""
    cursor = areas.get(area_id)
    while cursor is not None and cursor.level not in (AreaLevel.WARD, AreaLevel.COMMUNE):
        cursor = areas.get(cursor.parent_id) if cursor.parent_id else None
    return cursor


def area_options(session: Session, principal: Principal) -> list[AreaOption]:
    """The areas the principal reaches, as an indented tree (parents before children)."""
    areas = _all_areas(session)
    visible = {i: a for i, a in areas.items() if principal.reaches(i)}
    children: dict[int | None, list[Area]] = defaultdict(list)
    for area in visible.values():
        parent = area.parent_id if area.parent_id in visible else None
        children[parent].append(area)
    out: list[AreaOption] = []

    def walk(parent: int | None, depth: int) -> None:
        for area in sorted(children.get(parent, []), key=lambda a: (a.level.rank, a.name)):
            out.append(AreaOption(area.code, area.name, area.level, depth))
            walk(area.id, depth + 1)

    walk(None, 0)
    return out


def _scoped(query: Any, principal: Principal) -> Any:
    if principal.scope is not None:
        query = query.where(Station.area_id.in_(principal.scope))
    return query


# --- overview ----------------------------------------------------------------------------


def _attention_reasons(station: Station, state: StationState | None) -> list[str]:
    reasons: list[str] = []
    if state is None or not state.online:
        if state is not None and state.offline_since is not None:
            reasons.append(f"Mất kết nối {_ago(state.offline_since)}")
        else:
            reasons.append("Chưa từng kết nối")
    if state is not None:
        reasons.extend(f"Lỗi: {FAULT_LABELS.get(f, f)}" for f in state.faults or [])
        published = state.desired_published_version or 0
        if published and state.applied_version != published:
            applied = state.applied_version if state.applied_version is not None else "—"
            reasons.append(f"Chưa áp dụng lịch mới (bản {applied}/{published})")
        if state.missing:
            reasons.append(f"Thiếu {len(state.missing)} tệp âm thanh")
    return reasons


def _broadcast_summary(session: Session, broadcast: Broadcast, tz: ZoneInfo) -> dict[str, Any]:
    commands = broadcast_service.commands_of(session, broadcast)
    play = next((c for c in commands if c.type == "play"), None)
    counts = outbox.progress(session, [play.id]) if play is not None else {}
    total = sum(counts.values())
    finished = sum(counts.get(s.value, 0) for s in TargetStatus if s.terminal)
    status_label = BROADCAST_LABELS.get(broadcast.status, broadcast.status.value)
    if broadcast.status is BroadcastStatus.ACTIVE and total and finished == total:
        status_label = "Đã phát xong"
    return {
        "id": broadcast.id,
        "title": broadcast.title,
        "tier": broadcast.tier,
        "tier_label": TIER_LABELS.get(broadcast.tier, broadcast.tier),
        "status": broadcast.status.value,
        "status_label": status_label,
        "created_at": _local(broadcast.created_at, tz),
        "created_by": broadcast.created_by,
        "stations": broadcast.station_count,
        "succeeded": counts.get(TargetStatus.SUCCEEDED.value, 0),
        "failed": counts.get(TargetStatus.FAILED.value, 0)
        + counts.get(TargetStatus.REJECTED.value, 0),
        "expired": counts.get(TargetStatus.EXPIRED.value, 0),
    }


def visible_broadcasts(principal: Principal) -> Any:
    """Broadcasts the principal may see: none of their plays lies outside the scope
    (the API's rule, `GET /api/v1/broadcasts`)."""
    query = select(Broadcast).order_by(Broadcast.id.desc())
    if principal.scope is not None:
        outside = (
            select(Play.broadcast_id)
            .join(Station, Station.id == Play.station_id)
            .where(Play.broadcast_id.is_not(None), Station.area_id.not_in(principal.scope))
        )
        query = query.where(Broadcast.id.not_in(outside))
    return query


def overview_data(session: Session, principal: Principal, tz: ZoneInfo) -> dict[str, Any]:
    """Everything the overview shows, JSON-ready (the page and its auto-refresh)."""
    now = utcnow()
    areas = _all_areas(session)
    rows = session.execute(
        _scoped(
            select(Station, StationState)
            .outerjoin(StationState, StationState.station_id == Station.id)
            .where(Station.enabled.is_(True))
            .order_by(Station.sid),
            principal,
        )
    ).all()
    units: dict[str, dict[str, Any]] = {}
    attention: list[dict[str, Any]] = []
    online_total = 0
    for station, state in rows:
        unit = _unit_of(areas, station.area_id)
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
        reasons = _attention_reasons(station, state)
        if reasons:
            attention.append(
                {
                    "sid": station.sid,
                    "name": station.name,
                    "area": station.area.name,
                    "online": online,
                    "reasons": reasons,
                }
            )
    unit_list = sorted(units.values(), key=lambda u: u["name"])
    for unit_row in unit_list:
        unit_row["offline"] = unit_row["total"] - unit_row["online"]
        unit_row["percent"] = (
            math.floor(100 * unit_row["online"] / unit_row["total"]) if unit_row["total"] else 0
        )
    attention.sort(key=lambda a: (a["online"], a["sid"]))

    upcoming_rows = session.execute(
        _scoped(
            select(
                Play.title,
                Play.planned_start,
                Play.planned_end,
                Play.priority,
                Play.source,
                func.count(Play.id),
            )
            .join(Station, Station.id == Play.station_id)
            .where(
                Play.status.in_([PlayStatus.PLANNED, PlayStatus.PLAYING]),
                Play.planned_end >= now,
            )
            .group_by(Play.title, Play.planned_start, Play.planned_end, Play.priority, Play.source)
            .order_by(Play.planned_start, Play.title)
            .limit(8),
            principal,
        )
    ).all()
    upcoming = [
        {
            "title": title,
            "start": _local(start, tz, "%H:%M"),
            "day": ""
            if _local(start, tz, "%x") == _local(now, tz, "%x")
            else _local(start, tz, "%d/%m"),
            "end": _local(end, tz, "%H:%M"),
            "now": start <= now,
            "tier": tier_of(priority),
            "tier_label": TIER_LABELS[tier_of(priority)],
            "source": "Phát ngay" if source == "broadcast" else "Theo lịch",
            "stations": int(count),
        }
        for title, start, end, priority, source, count in upcoming_rows
    ]
    recent = [
        _broadcast_summary(session, b, tz)
        for b in session.scalars(visible_broadcasts(principal).limit(5))
    ]
    return {
        "updated": _local(now, tz, "%H:%M:%S"),
        "totals": {
            "stations": len(rows),
            "online": online_total,
            "offline": len(rows) - online_total,
            "attention": len(attention),
        },
        "units": unit_list,
        "attention": attention[:30],
        "upcoming": upcoming,
        "broadcasts": recent,
    }


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    data = overview_data(session, account.principal, _tz(request))
    return render(
        request, "overview.html", {"account": account, "active": "overview", "data": data}
    )


@router.get("/tong-quan.json")
def overview_json(request: Request, session: SessionDep) -> Response:
    account = current_account(request, session)
    if account is None:
        return JSONResponse(
            {"detail": "authentication required", "message_vi": "Cần đăng nhập"},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    data = overview_data(session, account.principal, _tz(request))
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


# --- login and logout ----------------------------------------------------------------------


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_page(
    request: Request,
    session: SessionDep,
    next_: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    target = _safe_next(next_)
    if current_account(request, session) is not None:
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    notice = "Bạn đã đăng xuất." if request.query_params.get("da_dang_xuat") else None
    return render(request, "login.html", {"next": target, "notice": notice, "username": ""})


@router.post(LOGIN_PATH, response_class=HTMLResponse)
def login_submit(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next_: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    target = _safe_next(next_)
    context: dict[str, Any] = {"next": target, "username": username, "notice": None}
    if _cross_site(request, required=False):
        context["error"] = "Yêu cầu đăng nhập không xuất phát từ trang này."
        return render(request, "login.html", context, status_code=status.HTTP_403_FORBIDDEN)
    if not username.strip() or not password:
        context["error"] = "Vui lòng nhập tên đăng nhập và mật khẩu."
        return render(request, "login.html", context, status_code=422)
    ip = client_ip(request)
    try:
        user = auth_service.authenticate_password(session, username.strip(), password)
    except RateLimited as exc:
        session.commit()
        context["error"] = exc.message_vi or "Đăng nhập sai quá nhiều lần, vui lòng thử lại sau."
        context["locked"] = True
        return render(
            request,
            "login.html",
            context,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    except Unauthenticated as exc:
        audit_log.record(
            session,
            actor=None,
            actor_name=username.strip(),
            action="auth.login_failed",
            target_type="user",
            targets=[username.strip()],
            ip=ip,
        )
        session.commit()
        context["error"] = exc.message_vi or "Sai tên đăng nhập hoặc mật khẩu."
        return render(request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED)
    plaintext, _ = auth_service.issue_token(session, user, kind=TokenKind.SESSION, ip=ip)
    audit_log.record(
        session,
        actor=auth_service.principal_for(session, user),
        action="auth.login",
        target_type="user",
        targets=[user.username],
        ip=ip,
    )
    session.commit()
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE_NAME,
        plaintext,
        max_age=int(auth_service.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.public_base_url.startswith("https://"),
        path="/",
    )
    return response


@router.get("/dang-xuat", response_class=HTMLResponse)
def logout_page(request: Request, session: SessionDep) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    return render(request, "logout.html", {"account": account})


@router.post("/dang-xuat")
def logout_submit(request: Request, session: SessionDep) -> Response:
    account = current_account(request, session)
    if account is not None:
        if _cross_site(request, required=True):
            return error_page(
                request, account, 403, "Yêu cầu đăng xuất không xuất phát từ trang này."
            )
        token_id = account.principal.token_id
        if token_id is not None:
            token = session.get(Token, token_id)
            if token is not None and token.revoked_at is None:
                token.revoked_at = utcnow()
        audit_log.record(
            session,
            actor=account.principal,
            action="auth.logout",
            target_type="user",
            targets=[account.username],
            ip=client_ip(request),
        )
        session.commit()
    response = RedirectResponse(
        LOGIN_PATH + "?da_dang_xuat=1", status_code=status.HTTP_303_SEE_OTHER
    )
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


# --- stations ------------------------------------------------------------------------------


def _flag(value: str | None) -> bool | None:
    return {"1": True, "0": False}.get(value or "")


def _page_number(value: str | None) -> int:
    try:
        return max(1, min(int(value or "1"), 100_000))
    except ValueError:
        return 1


@router.get("/tram", response_class=HTMLResponse)
def stations_page(
    request: Request,
    session: SessionDep,
    area: str | None = None,
    kind: str | None = None,
    online: str | None = None,
    q: str | None = None,
    trang: str | None = None,
) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    principal = account.principal
    options = area_options(session, principal)
    codes = {o.code for o in options}
    notes: list[str] = []
    area_code = area if area in codes else None
    if area and area_code is None:
        notes.append("Địa bàn đã chọn không thuộc phạm vi của tài khoản; hiển thị tất cả.")
    station_kind = StationKind(kind) if kind in {k.value for k in StationKind} else None
    online_flag = _flag(online)
    search = (q or "").strip()[:200] or None
    page = _page_number(trang)
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
    pages = max(1, math.ceil(total / PAGE_SIZE))
    filters = {
        "area": area_code or "",
        "kind": station_kind.value if station_kind else "",
        "online": online if online_flag is not None else "",
        "q": search or "",
    }

    def page_link(number: int) -> str:
        params = {k: v for k, v in filters.items() if v}
        if number > 1:
            params["trang"] = str(number)
        return "/tram" + ("?" + urlencode(params) if params else "")

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
            "page": page,
            "pages": pages,
            "prev_link": page_link(page - 1) if page > 1 else None,
            "next_link": page_link(page + 1) if page < pages else None,
            "notes": notes,
        },
    )


@dataclass(frozen=True)
class PlaylistRow:
    title: str
    start: dt.datetime
    end: dt.datetime
    tier: str
    kind: str
    shifted: bool
    status: str | None


def _today_playlist(
    session: Session, station: Station, tz: ZoneInfo, now: dt.datetime
) -> list[PlaylistRow]:
    day = now.astimezone(tz).date()
    plan = schedules_service.station_plans(session, [day], tz, {station.id})[0]
    items = plan.stations.get(station.id, ())
    statuses = {
        item_id: status_
        for item_id, status_ in session.execute(
            select(Play.item_id, Play.status).where(
                Play.station_id == station.id,
                Play.item_id.in_([i.item_id for i in items]),
            )
        )
    }
    return [
        PlaylistRow(
            title=item.title,
            start=item.start_at,
            end=item.end_at,
            tier=tier_of(item.priority),
            kind=item.kind,
            shifted=item.shifted,
            status=statuses[item.item_id].value if item.item_id in statuses else None,
        )
        for item in items
    ]


def _station_in_scope(session: Session, principal: Principal, sid: str) -> Station | None:
    if not re.fullmatch(SID_PATTERN, sid):
        return None
    station = session.scalar(select(Station).where(Station.sid == sid))
    if station is None or not principal.reaches(station.area_id):
        return None
    return station


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


def _telemetry_rows(
    session: Session, station: Station, data: dict[str, Any] | None
) -> list[tuple[str, str]]:
    if not data:
        return []
    rows = []
    for key, label, unit in TELEMETRY_FIELDS:
        if key not in data or data[key] is None:
            continue
        value = data[key]
        if key == "uptime_s":
            text = _duration(float(value) * 1000)
        elif key == "speaker_ok":
            text = "Bình thường" if value else "Có lỗi"
        elif isinstance(value, bool):
            text = "Có" if value else "Không"
        elif isinstance(value, float):
            text = f"{value:.1f} {unit}".strip()
        else:
            text = f"{value} {unit}".strip()
        rows.append((label, text))
    playing = data.get("playing")
    if isinstance(playing, dict):
        item_id, cmd_id = playing.get("item_id"), playing.get("cmd_id")
        match = Play.item_id == item_id if item_id else Play.cmd_id == cmd_id
        title = session.scalar(
            select(Play.title).where(Play.station_id == station.id, match).limit(1)
        )
        rows.append(("Đang phát", str(title or item_id or cmd_id or "—")))
    return rows


@router.get("/tram/{sid}", response_class=HTMLResponse)
def station_page(request: Request, session: SessionDep, sid: str) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    principal = account.principal
    station = _station_in_scope(session, principal, sid)
    if station is None:
        return error_page(
            request, account, 404, f"Không tìm thấy trạm {sid} trong địa bàn của bạn."
        )
    tz = _tz(request)
    now = utcnow()
    state = station.state
    playlist = (
        _today_playlist(session, station, tz, now)
        if principal.has(Permission.SCHEDULES_READ)
        else []
    )
    plays = session.scalars(
        select(Play)
        .where(Play.station_id == station.id, Play.planned_start <= now)
        .order_by(Play.planned_start.desc())
        .limit(15)
    ).all()
    commands = session.execute(
        select(Command, CommandTarget)
        .join(CommandTarget, CommandTarget.command_id == Command.id)
        .where(CommandTarget.station_id == station.id, Command.type != "play")
        .order_by(Command.id.desc())
        .limit(10)
    ).all()
    can_command = principal.has(Permission.STATIONS_COMMAND) and principal.reaches(station.area_id)
    return render(
        request,
        "station.html",
        {
            "account": account,
            "active": "stations",
            "station": station,
            "state": state,
            "reasons": _attention_reasons(station, state) if station.enabled else [],
            "telemetry": _telemetry_rows(session, station, state.telemetry if state else None),
            "playlist": playlist,
            "plays": plays,
            "commands": commands,
            "can_command": can_command,
        },
    )


# --- broadcasts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationChoice:
    sid: str
    name: str


def _broadcast_choices(session: Session, principal: Principal) -> dict[str, Any]:
    areas = _all_areas(session)
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
    stations = session.scalars(
        _scoped(select(Station).where(Station.enabled.is_(True)).order_by(Station.sid), principal)
    ).all()
    for station in stations:
        unit = _unit_of(areas, station.area_id)
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
def broadcast_page(request: Request, session: SessionDep) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    principal = account.principal
    if not principal.has(Permission.BROADCAST_SEND):
        return error_page(
            request,
            account,
            403,
            "Tài khoản của bạn không có quyền phát thanh. "
            "Liên hệ quản trị thành phố nếu cần được cấp quyền.",
        )
    tz = _tz(request)
    recent = [
        _broadcast_summary(session, b, tz)
        for b in session.scalars(visible_broadcasts(principal).limit(10))
    ]
    return render(
        request,
        "broadcast.html",
        {
            "account": account,
            "active": "broadcast",
            "choices": _broadcast_choices(session, principal),
            "can_emergency": principal.has(Permission.BROADCAST_EMERGENCY),
            "recent": recent,
        },
    )


@router.get("/phat-thanh/{broadcast_id}", response_class=HTMLResponse)
def broadcast_view_page(request: Request, session: SessionDep, broadcast_id: str) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    principal = account.principal
    broadcast = None
    if broadcast_id.isdigit() and len(broadcast_id) < 12:
        found = session.scalar(
            visible_broadcasts(principal).where(Broadcast.id == int(broadcast_id))
        )
        broadcast = found if isinstance(found, Broadcast) else None
    if broadcast is None:
        return error_page(request, account, 404, "Không tìm thấy lượt phát này.")
    return render(
        request,
        "broadcast_view.html",
        {
            "account": account,
            "active": "broadcast",
            "broadcast": _broadcast_summary(session, broadcast, _tz(request)),
            "can_stop": principal.has(Permission.BROADCAST_SEND)
            and broadcast.status is BroadcastStatus.ACTIVE,
        },
    )


# --- play log --------------------------------------------------------------------------------


def _parse_day(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _totals(
    session: Session,
    base: Any,
    areas: dict[int, Area],
    tz: ZoneInfo,
) -> list[dict[str, Any]]:
    totals: dict[tuple[dt.date, str], dict[str, Any]] = {}
    rows = session.execute(
        base.with_only_columns(
            Play.planned_start, Play.status, Play.played_ms, Station.area_id
        ).order_by(None)
    ).all()
    for start, play_status, played_ms, area_id in rows:
        unit = _unit_of(areas, area_id)
        key = (start.astimezone(tz).date(), unit.code if unit else "-")
        row = totals.setdefault(
            key,
            {
                "date": key[0],
                "name": unit.name if unit else "Khác",
                "minutes": 0.0,
                "plays": 0,
                "played": 0,
                "partial": 0,
                "missed": 0,
            },
        )
        row["plays"] += 1
        row["minutes"] += (played_ms or 0) / 60_000
        if play_status is PlayStatus.PLAYED:
            row["played"] += 1
        elif play_status in (PlayStatus.PARTIAL, PlayStatus.PREEMPTED):
            row["partial"] += 1
        elif play_status is PlayStatus.MISSED:
            row["missed"] += 1
    return sorted(totals.values(), key=lambda r: (r["date"], r["name"]))


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=tz)


@router.get("/nhat-ky", response_class=HTMLResponse)
def playlog_page(
    request: Request,
    session: SessionDep,
    tu: str | None = None,
    den: str | None = None,
    tram: str | None = None,
    dia_ban: str | None = None,
    trang_thai: str | None = None,
    nguon: str | None = None,
    trang: str | None = None,
) -> Response:
    account = current_account(request, session)
    if account is None:
        return _to_login(request)
    principal = account.principal
    tz = _tz(request)
    today = utcnow().astimezone(tz).date()
    first = _parse_day(tu) or today
    last = _parse_day(den) or first
    if last < first:
        first, last = last, first
    notes: list[str] = []
    if (last - first).days >= MAX_LOG_DAYS:
        last = first + dt.timedelta(days=MAX_LOG_DAYS - 1)
        notes.append(f"Mỗi lần xem tối đa {MAX_LOG_DAYS} ngày; đã giới hạn đến {last:%d/%m/%Y}.")
    since = _local_midnight(first, tz)
    until = _local_midnight(last + dt.timedelta(days=1), tz)
    options = area_options(session, principal)
    area_code = dia_ban if dia_ban in {o.code for o in options} else None
    sid = (tram or "").strip() or None
    station = _station_in_scope(session, principal, sid) if sid else None
    play_status = PlayStatus(trang_thai) if trang_thai in {s.value for s in PlayStatus} else None
    source = nguon if nguon in ("schedule", "broadcast") else None
    if sid and station is None:
        notes.append(f"Không tìm thấy trạm {sid} trong địa bàn của bạn.")

    base = _scoped(
        select(Play, Station.sid, Station.name)
        .join(Station, Station.id == Play.station_id)
        .where(Play.planned_start >= since, Play.planned_start < until),
        principal,
    )
    if area_code is not None:
        root = stations_service.get_area(session, area_code)
        base = base.where(Station.area_id.in_(stations_service.subtree_ids(session, [root.id])))
    if sid:
        base = base.where(Station.id == (station.id if station else -1))
    totals_base = base
    if play_status is not None:
        base = base.where(Play.status == play_status)
    if play_status not in (PlayStatus.PLANNED, PlayStatus.CANCELLED):
        base = base.where(Play.planned_start <= utcnow())  # what has happened, newest first
    if source is not None:
        base = base.where(Play.source == source)
    page = _page_number(trang)
    total = session.scalar(select(func.count()).select_from(base.order_by(None).subquery())) or 0
    rows = session.execute(
        base.order_by(Play.planned_start.desc(), Station.sid)
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    pages = max(1, math.ceil(total / PAGE_SIZE))
    filters = {
        "tu": first.isoformat(),
        "den": last.isoformat(),
        "tram": sid or "",
        "dia_ban": area_code or "",
        "trang_thai": play_status.value if play_status else "",
        "nguon": source or "",
    }

    def page_link(number: int) -> str:
        params = {k: v for k, v in filters.items() if v}
        if number > 1:
            params["trang"] = str(number)
        return "/nhat-ky?" + urlencode(params)

    csv_params = {"from": since.isoformat(), "to": until.isoformat(), "format": "csv"}
    if area_code:
        csv_params["area"] = area_code
    totals = _totals(session, totals_base, _all_areas(session), tz)
    return render(
        request,
        "playlog.html",
        {
            "account": account,
            "active": "playlog",
            "options": options,
            "filters": filters,
            "rows": rows,
            "total": int(total),
            "page": page,
            "pages": pages,
            "prev_link": page_link(page - 1) if page > 1 else None,
            "next_link": page_link(page + 1) if page < pages else None,
            "totals": totals,
            "csv_area": "/api/v1/playlog/totals?" + urlencode({**csv_params, "by": "area"}),
            "csv_station": "/api/v1/playlog/totals?" + urlencode({**csv_params, "by": "station"}),
            "notes": notes,
            "statuses": list(PlayStatus),
        },
    )


__all__: Sequence[str] = ("STATIC_DIR", "STATIC_PREFIX", "router")
