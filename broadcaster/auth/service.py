"""Accounts and credentials.

Passwords are hashed with Argon2id (argon2-cffi).  Tokens are opaque random strings
(``bct_...``); only their SHA-256 is stored, so a database leak yields no usable token,
and revoking one is deleting its validity in one row.  Failed logins back off
exponentially per account once `LOCKOUT_AFTER` failures accumulate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.auth.models import Token, TokenKind, User
from broadcaster.auth.schemas import UserCreate, UserUpdate
from kernel import audit
from kernel.db import paginate, utcnow
from kernel.errors import ConflictError, InvalidInput, NotFoundError, RateLimited, Unauthenticated
from kernel.security import Principal, Role, permissions_for
from stations import service as stations
from stations.models import Area

SESSION_TTL = dt.timedelta(hours=12)
LOCKOUT_AFTER = 5
LOCKOUT_BASE_S = 30
LOCKOUT_MAX_S = 15 * 60

_hasher = PasswordHasher()
EMERGENCY_ROLES_VI = "Chỉ cán bộ vận hành và quản trị thành phố được cấp quyền phát khẩn cấp"


@cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users (same time as a known one); made on
    first use, not at import: an argon2 hash is deliberately slow, and the service's
    start-up is on the clock."""
    return _hasher.hash("not-a-real-password-just-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserNotFound(NotFoundError):
    def __init__(self, key: object) -> None:
        super().__init__(f"user {key!r} not found", message_vi="Không tìm thấy tài khoản")


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(user_id)
    return user


def _areas(session: Session, codes: list[str]) -> list[Area]:
    areas = []
    for index, code in enumerate(dict.fromkeys(codes)):
        area = session.scalar(select(Area).where(Area.code == code))
        if area is None:
            raise InvalidInput(
                f"unknown area {code!r}",
                field=("areas", index),
                message_vi=f"Không có địa bàn mã {code}",
            )
        areas.append(area)
    return areas


def create_user(session: Session, data: UserCreate) -> User:
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise ConflictError(
            f"user {data.username!r} already exists",
            message_vi=f"Tài khoản {data.username} đã tồn tại",
        )
    if data.can_emergency and data.role not in (Role.ADMIN, Role.OPERATOR):
        raise InvalidInput(
            "only operators can hold the emergency permission",
            field="can_emergency",
            message_vi=EMERGENCY_ROLES_VI,
        )
    user = User(
        username=data.username,
        full_name=data.full_name,
        password_hash=hash_password(data.password),
        role=data.role,
        can_emergency=data.can_emergency,
    )
    user.areas = _areas(session, data.areas)
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    if changes.get("password"):
        user.password_hash = hash_password(changes["password"])
        user.password_changed_at = utcnow()
        revoke_tokens(session, user, kind=TokenKind.SESSION)
    if changes.get("role") is not None:
        user.role = changes["role"]
    if "areas" in changes:
        user.areas = _areas(session, changes["areas"] or [])
    if "full_name" in changes:
        user.full_name = changes["full_name"]
    if changes.get("can_emergency") is not None:
        user.can_emergency = changes["can_emergency"]
    if user.can_emergency and user.role not in (Role.ADMIN, Role.OPERATOR):
        raise InvalidInput(
            "only operators can hold the emergency permission",
            field="can_emergency",
            message_vi=EMERGENCY_ROLES_VI,
        )
    if changes.get("active") is not None:
        user.active = changes["active"]
        if not user.active:
            revoke_tokens(session, user)
    if changes.get("active") or changes.get("password"):
        user.failed_logins = 0
        user.locked_until = None
    session.flush()
    return user


def authenticate_password(session: Session, username: str, password: str) -> User:
    """The user whose credentials these are, or `Unauthenticated` / `RateLimited`."""
    now = utcnow()
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        verify_password(_dummy_hash(), password)
        raise Unauthenticated(
            "wrong username or password", message_vi="Sai tên đăng nhập hoặc mật khẩu"
        )
    if user.locked_until is not None and user.locked_until > now:
        wait = int((user.locked_until - now).total_seconds()) + 1
        raise RateLimited(
            f"too many failed logins; try again in {wait} s",
            retry_after_s=wait,
            message_vi=f"Đăng nhập sai quá nhiều lần, thử lại sau {wait} giây",
        )
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= LOCKOUT_AFTER:
            delay = min(LOCKOUT_BASE_S * 2 ** (user.failed_logins - LOCKOUT_AFTER), LOCKOUT_MAX_S)
            user.locked_until = now + dt.timedelta(seconds=delay)
        session.flush()
        raise Unauthenticated(
            "wrong username or password", message_vi="Sai tên đăng nhập hoặc mật khẩu"
        )
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    session.flush()
    return user


def issue_token(
    session: Session,
    user: User,
    *,
    kind: TokenKind,
    name: str | None = None,
    ttl: dt.timedelta | None = SESSION_TTL,
    ip: str | None = None,
) -> tuple[str, Token]:
    plaintext = "bct_" + secrets.token_urlsafe(32)
    token = Token(
        user_id=user.id,
        kind=kind,
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:12],
        expires_at=utcnow() + ttl if ttl else None,
        created_ip=ip,
    )
    session.add(token)
    session.flush()
    return plaintext, token


def log_in(session: Session, username: str, password: str, *, ip: str | None) -> tuple[str, Token]:
    """A new session token for these credentials, the login written to the audit log.

    Wrong credentials are written to the audit log too, then raise `Unauthenticated`
    (the caller commits that record before answering); a locked account raises
    `RateLimited`.
    """
    try:
        user = authenticate_password(session, username, password)
    except Unauthenticated:
        audit.record(
            session,
            actor=None,
            actor_name=username,
            action="auth.login_failed",
            target_type="user",
            targets=[username],
            ip=ip,
        )
        raise
    plaintext, token = issue_token(session, user, kind=TokenKind.SESSION, ip=ip)
    audit.record(
        session,
        actor=principal_for(session, user),
        action="auth.login",
        target_type="user",
        targets=[user.username],
        ip=ip,
    )
    return plaintext, token


def log_out(session: Session, principal: Principal, *, ip: str | None) -> None:
    """Revoke the principal's session token (if it has one) and write the audit entry."""
    if principal.token_id is not None:
        token = session.get(Token, principal.token_id)
        if token is not None:
            revoke(token)
    audit.record(
        session,
        actor=principal,
        action="auth.logout",
        target_type="user",
        targets=[principal.username],
        ip=ip,
    )


def get_token(session: Session, token_id: int) -> Token | None:
    return session.get(Token, token_id)


def revoke(token: Token) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()


def api_tokens(session: Session, user_id: int | None) -> list[Token]:
    """A user's API tokens (not their sessions), oldest first."""
    return list(
        session.scalars(
            select(Token)
            .where(Token.user_id == user_id, Token.kind == TokenKind.API)
            .order_by(Token.id)
        )
    )


def all_api_tokens(session: Session) -> list[Token]:
    """Every account's API (integration) tokens, newest first (the administration page)."""
    return list(
        session.scalars(select(Token).where(Token.kind == TokenKind.API).order_by(Token.id.desc()))
    )


def list_users(session: Session, *, limit: int, offset: int) -> tuple[list[User], int]:
    return paginate(session, select(User).order_by(User.username), limit, offset)


def delete_user(session: Session, user: User) -> None:
    session.delete(user)
    session.flush()


def resolve_token(session: Session, plaintext: str) -> Token | None:
    token = session.scalar(select(Token).where(Token.token_hash == hash_token(plaintext)))
    now = utcnow()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    return token  # reads only: `broadcaster.auth.usage` records when it was used


def revoke_tokens(session: Session, user: User, *, kind: TokenKind | None = None) -> None:
    query = select(Token).where(Token.user_id == user.id, Token.revoked_at.is_(None))
    if kind is not None:
        query = query.where(Token.kind == kind)
    now = utcnow()
    for token in session.scalars(query):
        token.revoked_at = now
    session.flush()


def principal_for(session: Session, user: User, token: Token | None = None) -> Principal:
    codes = frozenset(a.code for a in user.areas)
    scope = (
        None
        if user.role is Role.ADMIN
        else frozenset(stations.subtree_ids(session, [a.id for a in user.areas]))
    )
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        permissions=permissions_for(user.role, can_emergency=user.can_emergency),
        area_codes=codes,
        scope=scope,
        token_id=token.id if token else None,
        city_level=any(a.parent_id is None for a in user.areas),
    )
