"""Administration for city administrators (``/quan-tri/...``): accounts (create with a
role, areas and the emergency right; reset a password; disable or enable), integration
tokens (create, shown once; revoke) and the audit log with its filters.

Form posts (no JavaScript needed), each checked as coming from our own pages; the
changes go through `broadcaster.auth.service` and are written to the audit log in the
same transaction, like the JSON API does.  Accounts without the right get the 403 page.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from broadcaster.auth import service as auth_service
from broadcaster.auth.models import TokenKind, User
from broadcaster.auth.schemas import UserCreate, UserUpdate
from broadcaster.web.pages.labels import ACTION_LABELS, OBJECT_LABELS, ROLE_LABELS
from broadcaster.web.pages.shared import (
    MAX_LIST,
    PAGE_SIZE,
    Account,
    SignedIn,
    area_options,
    cross_site,
    day_param,
    error_page,
    local_midnight,
    page_number,
    page_tz,
    pager,
    render,
)
from kernel import audit
from kernel.dependencies import SessionDep, client_ip
from kernel.errors import DomainError, NotFoundError
from kernel.security import Permission, Role

router = APIRouter(include_in_schema=False)

USERS = "/quan-tri/tai-khoan"
TOKENS = "/quan-tri/ma-tich-hop"
AUDIT = "/quan-tri/nhat-ky"
NOT_ALLOWED = "Chỉ quản trị thành phố được dùng trang quản trị."
FOREIGN = "Yêu cầu không xuất phát từ trang này."
Text = Annotated[str, Form(max_length=256)]
Areas = Annotated[list[str] | None, Form(max_length=200)]


def _refused(
    request: Request,
    account: Account,
    permission: Permission = Permission.USERS_MANAGE,
    *,
    posted: bool = False,
) -> Response | None:
    """The 403 page for an account without `permission` (or a form `posted` from
    another site), else None."""
    if not account.principal.has(permission):
        return error_page(request, account, 403, NOT_ALLOWED)
    if posted and cross_site(request, required=True):
        return error_page(request, account, 403, FOREIGN)
    return None


def _field_errors(exc: ValidationError) -> str:
    names = {
        "username": "Tên đăng nhập (3–64 ký tự: chữ không dấu, số, . _ @ -)",
        "password": "Mật khẩu (ít nhất 10 ký tự)",
        "role": "Vai trò",
        "areas": "Địa bàn",
        "full_name": "Họ tên (tối đa 200 ký tự)",
        "name": "Tên mã (1–100 ký tự)",
        "expires_in_days": "Số ngày hiệu lực (1–3650)",
    }
    fields = dict.fromkeys(str(e["loc"][0]) for e in exc.errors() if e["loc"])
    return "Thông tin chưa hợp lệ: " + ", ".join(names.get(f, f) for f in fields) + "."


def _message(exc: DomainError) -> str:
    return exc.message_vi or "Không thực hiện được yêu cầu; kiểm tra lại thông tin."


def _record(
    session: Session,
    request: Request,
    account: Account,
    action: str,
    target_type: str,
    targets: list[str],
    **states: Any,
) -> None:
    audit.record(
        session,
        actor=account.principal,
        action=action,
        target_type=target_type,
        targets=targets,
        ip=client_ip(request),
        **states,
    )


def _user_row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name or "",
        "role": user.role.value,
        "role_label": ROLE_LABELS.get(user.role, user.role.value),
        "areas": [a.name for a in sorted(user.areas, key=lambda a: (a.level.rank, a.name))],
        "area_codes": [a.code for a in user.areas],
        "can_emergency": user.can_emergency,
        "active": user.active,
    }


def _users_page(
    request: Request,
    session: Session,
    account: Account,
    *,
    page: int = 1,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    users, total = auth_service.list_users(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(
        request,
        "admin_users.html",
        {
            "account": account,
            "active": "admin",
            "users": [_user_row(u) for u in users],
            "total": total,
            **pager(USERS, {}, page, total),
            "roles": ROLE_LABELS,
            "options": area_options(session, account.principal),
            "error": error,
            "notice": notice,
            "form": form or {"role": Role.OPERATOR.value, "areas": []},
        },
        status_code=status_code,
    )


@router.get("/quan-tri", response_class=HTMLResponse)
def admin_home(request: Request, account: SignedIn) -> Response:
    return _refused(request, account) or RedirectResponse(
        USERS, status_code=status.HTTP_303_SEE_OTHER
    )


@router.get(USERS, response_class=HTMLResponse)
def users_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    trang: str | None = None,
    da_luu: str | None = None,
) -> Response:
    if refused := _refused(request, account):
        return refused
    notice = f"Đã lưu tài khoản {da_luu}." if da_luu else None
    return _users_page(request, session, account, page=page_number(trang), notice=notice)


@router.post(USERS, response_class=HTMLResponse)
def user_create(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    username: Text = "",
    full_name: Text = "",
    password: Text = "",
    role: Text = "",
    areas: Areas = None,
    can_emergency: Text = "",
) -> Response:
    if refused := _refused(request, account, posted=True):
        return refused
    form = {
        "username": username.strip(),
        "full_name": full_name.strip(),
        "role": role,
        "areas": areas or [],
        "can_emergency": bool(can_emergency),
    }
    try:
        data = UserCreate(
            username=form["username"],
            password=password,
            role=role,
            areas=form["areas"],
            full_name=form["full_name"] or None,
            can_emergency=form["can_emergency"],
        )
        user = auth_service.create_user(session, data)
    except ValidationError as exc:
        return _users_page(
            request, session, account, error=_field_errors(exc), form=form, status_code=422
        )
    except DomainError as exc:
        session.rollback()
        return _users_page(
            request, session, account, error=_message(exc), form=form, status_code=422
        )
    _record(
        session,
        request,
        account,
        "user.create",
        "user",
        [user.username],
        after=data.model_dump(mode="json", exclude={"password"}),
    )
    session.commit()
    return RedirectResponse(
        f"{USERS}?da_luu={user.username}", status_code=status.HTTP_303_SEE_OTHER
    )


def _managed_user(session: Session, user_id: str) -> User | None:
    if not (user_id.isdigit() and len(user_id) < 10):
        return None
    try:
        return auth_service.get_user(session, int(user_id))
    except NotFoundError:
        return None


def _user_page(
    request: Request,
    session: Session,
    account: Account,
    user: User,
    *,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin_user.html",
        {
            "account": account,
            "active": "admin",
            "user": _user_row(user),
            "roles": ROLE_LABELS,
            "options": area_options(session, account.principal),
            "error": error,
            "notice": notice,
            "myself": user.id == account.principal.user_id,
        },
        status_code=status_code,
    )


@router.get(USERS + "/{user_id}", response_class=HTMLResponse)
def user_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    user_id: str,
    da_luu: str | None = None,
) -> Response:
    if refused := _refused(request, account):
        return refused
    user = _managed_user(session, user_id)
    if user is None:
        return error_page(request, account, 404, "Không tìm thấy tài khoản này.")
    notice = "Đã lưu thay đổi." if da_luu else None
    return _user_page(request, session, account, user, notice=notice)


@router.post(USERS + "/{user_id}", response_class=HTMLResponse)
def user_update(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    user_id: str,
    action: Text = "save",
    full_name: Text = "",
    role: Text = "",
    areas: Areas = None,
    can_emergency: Text = "",
    password: Text = "",
) -> Response:
    """One form per change: ``save`` (name, role, areas, emergency right),
    ``password`` (reset), ``disable`` and ``enable``."""
    if refused := _refused(request, account, posted=True):
        return refused
    user = _managed_user(session, user_id)
    if user is None:
        return error_page(request, account, 404, "Không tìm thấy tài khoản này.")
    myself = user.id == account.principal.user_id
    before = {
        "role": user.role.value,
        "areas": [a.code for a in user.areas],
        "can_emergency": user.can_emergency,
        "active": user.active,
    }
    try:
        if action == "password":
            data = UserUpdate(password=password)
        elif action in ("disable", "enable"):
            if myself:
                return _user_page(
                    request,
                    session,
                    account,
                    user,
                    error="Không thể tự khóa tài khoản đang dùng.",
                    status_code=422,
                )
            data = UserUpdate(active=action == "enable")
        else:
            data = UserUpdate(
                full_name=full_name.strip() or None,
                role=role,
                areas=areas or [],
                can_emergency=bool(can_emergency),
            )
        auth_service.update_user(session, user, data)
    except ValidationError as exc:
        return _user_page(
            request, session, account, user, error=_field_errors(exc), status_code=422
        )
    except DomainError as exc:
        session.rollback()
        user = auth_service.get_user(session, user.id)
        return _user_page(request, session, account, user, error=_message(exc), status_code=422)
    after = data.model_dump(mode="json", exclude={"password"}, exclude_unset=True)
    if data.password:
        after["password"] = "changed"  # noqa: S105 - a note, not a password
    _record(session, request, account, "user.update", "user", [user.username],
            before=before, after=after)  # fmt: skip
    session.commit()
    return RedirectResponse(f"{USERS}/{user.id}?da_luu=1", status_code=status.HTTP_303_SEE_OTHER)


# --- integration tokens ---------------------------------------------------------------------


def _tokens_page(
    request: Request,
    session: Session,
    account: Account,
    *,
    created: str | None = None,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    users, _ = auth_service.list_users(session, limit=MAX_LIST, offset=0)
    return render(
        request,
        "admin_tokens.html",
        {
            "account": account,
            "active": "admin",
            "tokens": auth_service.all_api_tokens(session),
            "users": [u for u in users if u.active],
            "created": created,
            "error": error,
            "notice": notice,
        },
        status_code=status_code,
    )


@router.get(TOKENS, response_class=HTMLResponse)
def tokens_page(
    request: Request, session: SessionDep, account: SignedIn, da_thu_hoi: str | None = None
) -> Response:
    if refused := _refused(request, account):
        return refused
    notice = "Đã thu hồi mã." if da_thu_hoi else None
    return _tokens_page(request, session, account, notice=notice)


@router.post(TOKENS, response_class=HTMLResponse)
def token_create(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    name: Text = "",
    user_id: Text = "",
    expires_in_days: Text = "",
) -> Response:
    if refused := _refused(request, account, posted=True):
        return refused
    owner = _managed_user(session, user_id) if user_id else None
    if owner is None:
        return _tokens_page(
            request, session, account, error="Hãy chọn tài khoản dùng mã.", status_code=422
        )
    name = name.strip()
    days = expires_in_days.strip()
    if not name or len(name) > 100 or (days and not (days.isdigit() and 1 <= int(days) <= 3650)):
        return _tokens_page(
            request,
            session,
            account,
            error="Tên mã cần 1–100 ký tự; số ngày hiệu lực từ 1 đến 3650 "
            "(bỏ trống: không hết hạn).",
            status_code=422,
        )
    ttl = dt.timedelta(days=int(days)) if days else None
    plaintext, issued = auth_service.issue_token(
        session, owner, kind=TokenKind.API, name=name, ttl=ttl, ip=client_ip(request)
    )
    _record(session, request, account, "auth.token_create", "token", [str(issued.id)],
            after={"name": name, "user": owner.username})  # fmt: skip
    session.commit()
    return _tokens_page(request, session, account, created=plaintext, status_code=201)


@router.post(TOKENS + "/{token_id}/thu-hoi", response_class=HTMLResponse)
def token_revoke(
    request: Request, session: SessionDep, account: SignedIn, token_id: str
) -> Response:
    if refused := _refused(request, account, posted=True):
        return refused
    issued = (
        auth_service.get_token(session, int(token_id))
        if token_id.isdigit() and len(token_id) < 10
        else None
    )
    if issued is None or issued.kind is not TokenKind.API:
        return error_page(request, account, 404, "Không tìm thấy mã tích hợp này.")
    auth_service.revoke(issued)
    _record(session, request, account, "auth.token_revoke", "token", [str(issued.id)])
    session.commit()
    return RedirectResponse(f"{TOKENS}?da_thu_hoi=1", status_code=status.HTTP_303_SEE_OTHER)


# --- the audit log ----------------------------------------------------------------------------


@router.get(AUDIT, response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    nguoi: str | None = None,
    hanh_dong: str | None = None,
    doi_tuong: str | None = None,
    tu: str | None = None,
    den: str | None = None,
    trang: str | None = None,
) -> Response:
    """Filters read leniently: a value that does not fit is left out, never an error."""
    if refused := _refused(request, account, Permission.AUDIT_READ):
        return refused
    tz = page_tz(request)
    first, last = day_param(tu), day_param(den)
    if first and last and last < first:
        first, last = last, first
    actor = (nguoi or "").strip()[:64] or None
    action = hanh_dong if hanh_dong in ACTION_LABELS else None
    target = (doi_tuong or "").strip()[:128] or None
    page = page_number(trang)
    entries, total = audit.search(
        session,
        actor=actor,
        action=action,
        target=target,
        since=local_midnight(first, tz) if first else None,
        until=local_midnight(last + dt.timedelta(days=1), tz) if last else None,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    filters = {
        "nguoi": actor or "",
        "hanh_dong": action or "",
        "doi_tuong": target or "",
        "tu": first.isoformat() if first else "",
        "den": last.isoformat() if last else "",
    }
    return render(
        request,
        "admin_audit.html",
        {
            "account": account,
            "active": "admin",
            "entries": entries,
            "total": total,
            "filters": filters,
            **pager(AUDIT, filters, page, total),
            "ACTION_LABELS": ACTION_LABELS,
            "OBJECT_LABELS": OBJECT_LABELS,
        },
    )
