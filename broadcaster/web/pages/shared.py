"""What every dashboard page uses: the templates and their filters, the signed-in
account (`SignedIn`: a page without a valid session redirects to sign-in), rendering,
the error page, the area tree of the filters, paging and the broadcast summary."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alarms import service as alarms_service
from broadcaster.auth import service as auth_service
from broadcaster.auth.dependencies import COOKIE_NAME, note_token_use
from broadcaster.db import read_session
from broadcaster.dispatch import reports
from broadcaster.dispatch.models import Broadcast, TargetStatus
from broadcaster.web.pages import labels
from broadcaster.web.pages.labels import (
    BROADCAST_LABELS,
    COMMAND_LABELS,
    PLAY_LABELS,
    ROLE_LABELS,
    TARGET_LABELS,
    TIER_LABELS,
)
from kernel.db import utcnow
from kernel.dependencies import SAFE_METHODS, SessionDep
from kernel.security import Permission, Principal
from kernel.tiers import tier_of
from stations.models import Area, AreaLevel

WEB_DIR = Path(__file__).parent.parent
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/static/app"
LOGIN_PATH = "/dang-nhap"
REFRESH_S = 15
PAGE_SIZE = 100
MAX_LIST = 1000

templates = Jinja2Templates(directory=WEB_DIR / "templates")
TEMPLATE_LABELS = (
    "TIER_LABELS",
    "KIND_LABELS",
    "FAULT_LABELS",
    "COMMAND_LABELS",
    "VOICE_LABELS",
    "REASON_LABELS",
)


# --- template helpers ------------------------------------------------------------------


def local(value: dt.datetime | None, tz: ZoneInfo, fmt: str = "%H:%M %d/%m/%Y") -> str:
    if value is None:
        return "—"
    return value.astimezone(tz).strftime(fmt)


def duration(ms: int | float | None) -> str:
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


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
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


def number(value: float | int | None, digits: int = 0) -> str:
    """A number as Vietnamese readers write it: ``.`` between thousands, ``,`` before the
    decimals (``1.234,5``).  The dashboard's one place for it (the ``so`` filter)."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


templates.env.filters["local"] = local
templates.env.filters["duration"] = duration
templates.env.filters["ago"] = ago
templates.env.filters["so"] = number
templates.env.filters["reason_vi"] = labels.reason_label
_BY_VALUE = {
    "TARGET_LABELS": {s.value: label for s, label in TARGET_LABELS.items()},
    "PLAY_LABELS": {s.value: label for s, label in PLAY_LABELS.items()},
}
templates.env.globals.update(
    {
        "STATIC": STATIC_PREFIX,
        "ASSET_VERSION": _asset_version(),
        "REFRESH_S": REFRESH_S,
        "tier_of": tier_of,
        **{name: getattr(labels, name) for name in TEMPLATE_LABELS},
        **_BY_VALUE,
        "JS_LABELS": {
            "target": _BY_VALUE["TARGET_LABELS"],
            "play": _BY_VALUE["PLAY_LABELS"],
            "command": COMMAND_LABELS,
            "tier": TIER_LABELS,
            "reason": labels.REASON_LABELS,
            "reason_prefix": labels.REASON_PREFIX_LABELS,
        },
    }
)


# --- the signed-in account ---------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What the page header shows about the signed-in account."""

    principal: Principal
    username: str
    full_name: str | None
    role_label: str
    areas: list[str]
    open_alarms: int = 0  # the navigation's alarm badge

    def can(self, permission: str) -> bool:
        return self.principal.has(Permission(permission))


def current_account(request: Request, session: SessionDep) -> Account | None:
    """The account of the session cookie, or None (no cookie, expired, revoked).

    A form that writes reads the account in a short read-only session of its own, as
    the API's sign-in does (`broadcaster.auth.dependencies.authenticate`): the page's
    write transaction, and on SQLite its write turn, begins only when it writes."""
    if request.method in SAFE_METHODS:
        return _account(request, session)
    return _read_account(request)


def _read_account(request: Request) -> Account | None:
    if not request.cookies.get(COOKIE_NAME):
        return None
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with read_session(factory) as session:
        return _account(request, session)


def _account(request: Request, session: Session) -> Account | None:
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
        open_alarms=alarms_service.open_count(session, principal.scope),
    )


MaybeAccount = Annotated[Account | None, Depends(current_account)]


def signed_in_account(request: Request) -> Account | None:
    """The account of the session cookie outside a route (the unknown-URL page, which
    no dependency reaches): so a signed-in user keeps the navigation on the 404 page."""
    return _read_account(request)


class SignInRequired(Exception):
    """A page was asked for without a valid session: answered by `to_sign_in`."""

    def __init__(self, here: str) -> None:
        super().__init__(here)
        self.here = here


def signed_in(request: Request, account: MaybeAccount) -> Account:
    """The signed-in account; without one, the page redirects to sign-in (and back)."""
    if account is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInRequired(request.url.path + query)
    return account


SignedIn = Annotated[Account, Depends(signed_in)]


def sign_in_url(here: str) -> str:
    return LOGIN_PATH + ("" if here == "/" else "?" + urlencode({"next": here}))


async def to_sign_in(request: Request, exc: Exception) -> Response:
    """Exception handler of `SignInRequired`: 303 to the sign-in page, ``next`` = here."""
    here = exc.here if isinstance(exc, SignInRequired) else "/"
    return RedirectResponse(sign_in_url(here), status_code=status.HTTP_303_SEE_OTHER)


def safe_next(target: str | None) -> str:
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


def cross_site(request: Request, *, required: bool) -> bool:
    """True when a form post does not come from our own pages (CSRF defence)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return required
    return urlsplit(source).netloc != request.headers.get("host", "")


# --- rendering -------------------------------------------------------------------------------


def page_tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


TzDep = Annotated[ZoneInfo, Depends(page_tz)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    context = {"tz": page_tz(request), "now": utcnow(), **context}
    response = templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response


ERROR_TITLES = {
    403: "Không có quyền truy cập",
    404: "Không tìm thấy",
    400: "Yêu cầu không hợp lệ",
}


def error_page(request: Request, account: Account | None, code: int, message: str) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {
            "account": account,
            "code": code,
            "title": ERROR_TITLES.get(code, "Lỗi"),
            "message": message,
        },
        status_code=code,
    )


# --- filters: areas and pages -----------------------------------------------------------------


@dataclass(frozen=True)
class AreaOption:
    code: str
    name: str
    level: AreaLevel
    depth: int


def area_options(session: Session, principal: Principal) -> list[AreaOption]:
    """The areas the principal reaches, as an indented tree (parents before children)."""
    visible = {i: a for i, a in reports.all_areas(session).items() if principal.reaches(i)}
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


def area_filter(
    session: Session, principal: Principal, area: str | None
) -> tuple[list[AreaOption], str | None, list[str]]:
    """A list page's area filter read leniently: the options, the chosen code if the
    account reaches it (else None) and the note saying it was left out."""
    options = area_options(session, principal)
    code = area if area in {o.code for o in options} else None
    notes = []
    if area and code is None:
        notes.append("Địa bàn đã chọn không thuộc phạm vi của tài khoản; hiển thị tất cả.")
    return options, code, notes


def page_number(value: str | None) -> int:
    try:
        return max(1, min(int(value or "1"), 100_000))
    except ValueError:
        return 1


def day_param(value: str | None) -> dt.date | None:
    """A ``YYYY-MM-DD`` filter value as a date; None when missing or not a date (filters
    are read leniently, never an error)."""
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The instant `day` begins in the time zone `tz`."""
    return dt.datetime.combine(day, dt.time(), tzinfo=tz)


def pager(path: str, filters: Mapping[str, str], page: int, total: int) -> dict[str, Any]:
    """The paging part of a list page's context: this page, the count of pages and the
    links to the pages before and after (keeping the filters that are set)."""
    pages = max(1, math.ceil(total / PAGE_SIZE))

    def link(number: int) -> str:
        params = {k: v for k, v in filters.items() if v}
        if number > 1:
            params["trang"] = str(number)
        return path + ("?" + urlencode(params) if params else "")

    return {
        "page": page,
        "pages": pages,
        "prev_link": link(page - 1) if page > 1 else None,
        "next_link": link(page + 1) if page < pages else None,
    }


# --- broadcasts as the overview and the broadcast pages list them ------------------------------


def broadcast_summary(session: Session, broadcast: Broadcast, tz: ZoneInfo) -> dict[str, Any]:
    counts = reports.broadcast_progress(session, broadcast).by_status
    # the broadcast's own status, as the API gives it (the worker ends it once every
    # target is settled): never "done" while stations are still to be reached
    status_label = BROADCAST_LABELS.get(broadcast.status, broadcast.status.value)
    return {
        "id": broadcast.id,
        "title": broadcast.title,
        "tier": broadcast.tier,
        "tier_label": TIER_LABELS.get(broadcast.tier, broadcast.tier),
        "status": broadcast.status.value,
        "status_label": status_label,
        "created_at": local(broadcast.created_at, tz),
        "created_by": broadcast.created_by,
        "stations": broadcast.station_count,
        "succeeded": counts.get(TargetStatus.SUCCEEDED.value, 0),
        "failed": counts.get(TargetStatus.FAILED.value, 0)
        + counts.get(TargetStatus.REJECTED.value, 0),
        "expired": counts.get(TargetStatus.EXPIRED.value, 0),
        "stopped": counts.get(TargetStatus.STOPPED.value, 0),
    }


def recent_broadcasts(
    session: Session, principal: Principal, tz: ZoneInfo, limit: int
) -> list[dict[str, Any]]:
    items, _ = reports.list_broadcasts(session, principal, limit=limit)
    return [broadcast_summary(session, b, tz) for b in items]
