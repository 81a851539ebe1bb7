"""Login, tokens, accounts and the audit log API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, status

from broadcaster.auth import service
from broadcaster.auth.dependencies import COOKIE_NAME, ManagedUser, set_session_cookie
from broadcaster.auth.models import Token, TokenKind, User
from broadcaster.auth.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    AuditRead,
    Me,
    PasswordChange,
    TokenResponse,
    UserCreate,
    UserRead,
    UserUpdate,
)
from kernel import audit as audit_log
from kernel.db import columns_of
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    TimeRangeDep,
    client_ip,
)
from kernel.errors import InvalidInput, NotFoundError, Unauthenticated
from kernel.security import Permission
from stations.schemas import ListOf

public_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
router = APIRouter(prefix="/api/v1", tags=["auth"])

UsernameForm = Annotated[str, Form(max_length=64)]
PasswordForm = Annotated[str, Form(max_length=256)]


def _login(
    request: Request, session: SessionDep, username: str, password: str
) -> tuple[str, Token]:
    """Log in; a failure's audit entry is committed before the error answers."""
    try:
        plaintext, token = service.log_in(session, username, password, ip=client_ip(request))
    except Unauthenticated:
        session.commit()
        raise
    session.commit()
    return plaintext, token


@public_router.post("/token")
def token(
    request: Request, session: SessionDep, username: UsernameForm, password: PasswordForm
) -> TokenResponse:
    """OAuth2 password flow: form fields `username` and `password`."""
    plaintext, issued = _login(request, session, username, password)
    return TokenResponse(access_token=plaintext, expires_at=issued.expires_at)


@public_router.post("/login")
def login(
    request: Request,
    response: Response,
    session: SessionDep,
    username: UsernameForm,
    password: PasswordForm,
) -> TokenResponse:
    """Web UI login: same as `/token`, and sets the HttpOnly session cookie."""
    plaintext, issued = _login(request, session, username, password)
    set_session_cookie(request, response, plaintext)
    return TokenResponse(access_token=plaintext, expires_at=issued.expires_at)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    service.log_out(session, principal, ip=client_ip(request))
    session.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def _user_read(user: User) -> UserRead:
    areas = [a.code for a in user.areas]
    return UserRead.model_validate(columns_of(user, UserRead.model_fields) | {"areas": areas})


@router.get("/auth/me")
def me(session: SessionDep, principal: CurrentPrincipal) -> Me:
    assert principal.user_id is not None
    user = service.get_user(session, principal.user_id)
    return Me(**_user_read(user).model_dump(), permissions=sorted(principal.permissions))


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    data: PasswordChange, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    assert principal.user_id is not None
    user = service.get_user(session, principal.user_id)
    if not service.verify_password(user.password_hash, data.current_password):
        raise InvalidInput(
            "the current password is wrong",
            field="current_password",
            message_vi="Mật khẩu hiện tại không đúng",
        )
    service.update_user(session, user, UserUpdate(password=data.new_password))
    audit.record("auth.password_change", "user", [user.username])
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _token_read(token: Token) -> ApiTokenRead:
    return ApiTokenRead.model_validate(token, from_attributes=True)


@router.get("/auth/tokens", response_model=ListOf[ApiTokenRead])
def list_tokens(session: SessionDep, principal: CurrentPrincipal) -> ListOf[ApiTokenRead]:
    tokens = service.api_tokens(session, principal.user_id)
    return ListOf(items=[_token_read(t) for t in tokens], total=len(tokens))


@router.post("/auth/tokens", status_code=status.HTTP_201_CREATED)
def create_token(
    data: ApiTokenCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> ApiTokenCreated:
    """A named API token for an integration (e.g. the provincial source system)."""
    assert principal.user_id is not None
    user = service.get_user(session, principal.user_id)
    ttl = dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None
    plaintext, issued = service.issue_token(
        session, user, kind=TokenKind.API, name=data.name, ttl=ttl, ip=client_ip(request)
    )
    audit.record("auth.token_create", "token", [str(issued.id)], after={"name": data.name})
    session.commit()
    return ApiTokenCreated(**_token_read(issued).model_dump(), token=plaintext)


@router.delete("/auth/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(
    token_id: IdPath, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    issued = service.get_token(session, token_id)
    if issued is None or (
        issued.user_id != principal.user_id and not principal.has(Permission.USERS_MANAGE)
    ):
        raise NotFoundError(f"token {token_id} not found", message_vi="Không tìm thấy mã truy cập")
    service.revoke(issued)
    audit.record("auth.token_revoke", "token", [str(token_id)])
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- users -----------------------------------------------------------------------------


@router.get("/users", response_model=ListOf[UserRead])
def list_users(session: SessionDep, principal: CurrentPrincipal, page: PageDep) -> ListOf[UserRead]:
    principal.require(Permission.USERS_MANAGE)
    items, total = service.list_users(session, limit=page.limit, offset=page.offset)
    return ListOf(items=[_user_read(u) for u in items], total=total)


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(
    data: UserCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> UserRead:
    principal.require(Permission.USERS_MANAGE)
    user = service.create_user(session, data)
    audit.record(
        "user.create", "user", [user.username], after=data.model_dump(exclude={"password"})
    )
    session.commit()
    return _user_read(user)


@router.get("/users/{user_id}")
def get_user(user: ManagedUser) -> UserRead:
    return _user_read(user)


@router.patch("/users/{user_id}")
def update_user(user: ManagedUser, data: UserUpdate, session: SessionDep, audit: Audit) -> UserRead:
    before = _user_read(user).model_dump(
        mode="json", include={"role", "areas", "can_emergency", "active"}
    )
    service.update_user(session, user, data)
    audit.record(
        "user.update",
        "user",
        [user.username],
        before=before,
        after=data.model_dump(mode="json", exclude={"password"}, exclude_unset=True)
        | ({"password": "changed"} if data.password else {}),
    )
    session.commit()
    return _user_read(user)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(
    user: ManagedUser, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> Response:
    if user.id == principal.user_id:
        raise InvalidInput(
            "you cannot delete your own account",
            field="user_id",
            message_vi="Không thể xóa tài khoản đang dùng",
        )
    username = user.username
    service.delete_user(session, user)
    audit.record("user.delete", "user", [username])
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- audit -----------------------------------------------------------------------------


@router.get("/audit", response_model=ListOf[AuditRead], tags=["audit"])
def list_audit(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    window: TimeRangeDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=128)] = None,
) -> ListOf[AuditRead]:
    """The append-only audit log, newest first (administrators only)."""
    principal.require(Permission.AUDIT_READ)
    items, total = audit_log.search(
        session,
        actor=actor,
        action=action,
        target=target,
        since=window.since,
        until=window.until,
        limit=page.limit,
        offset=page.offset,
    )
    return ListOf(
        items=[AuditRead.model_validate(e, from_attributes=True) for e in items], total=total
    )
