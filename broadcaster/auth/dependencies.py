"""The authentication dependency run before every protected route.

Credentials: ``Authorization: Bearer <token>`` (API clients, integrations) or the
``broadcaster_session`` cookie (the web UI).  A cookie-authenticated request that
changes state must come from our own origin (checked on ``Origin``/``Referer``), the
usual defence against cross-site request forgery on top of ``SameSite=Lax``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import cookie_parser

from broadcaster.auth import service
from broadcaster.auth.models import User
from broadcaster.auth.signin_cache import SignIn, SignInCache
from broadcaster.auth.usage import TokenUsage, UsedToken
from broadcaster.db import read_session
from kernel.db import utcnow
from kernel.dependencies import CurrentPrincipal, IdPath, SessionDep
from kernel.errors import PermissionDeniedError, Unauthenticated
from kernel.security import Permission, Principal

COOKIE_NAME = "broadcaster_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated(
            "malformed Authorization header; expected 'Bearer <token>'",
            message_vi="Tiêu đề Authorization không đúng dạng 'Bearer <mã>'",
        )
    return value.strip()


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    return urlsplit(source).netloc == request.headers.get("host", "")


def set_session_cookie(request: Request, response: Response, plaintext: str) -> None:
    """Hand the browser its session token (HttpOnly, SameSite=Lax, Secure over HTTPS)."""
    response.set_cookie(
        COOKIE_NAME,
        plaintext,
        max_age=int(service.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.public_base_url.startswith("https://"),
        path="/",
    )


def authenticate(request: Request, session: SessionDep) -> Principal:
    """The principal of the request's token or session cookie (for callers that hold a
    session: ``app.state.authenticate``; the protected routes use `require_sign_in`).

    A request that writes reads its sign-in in a short read-only session of its own: on
    SQLite the request's write transaction (and its write turn, `broadcaster.db`) then
    begins only when the route writes, so an emergency waits for the write lock once,
    not once to sign in and again to store the broadcast."""
    token_text, via_cookie = _credentials(request)
    sign_in = _cached(request, token_text)
    if sign_in is None:
        if request.method in SAFE_METHODS:
            sign_in = _resolve(request, session, token_text)
        else:
            sign_in = _read_sign_in(request, token_text)
    return _admit(request, sign_in, via_cookie)


async def require_sign_in(request: Request) -> Principal:
    """The dependency of every protected route: `authenticate`, on the event loop when
    the token signed in moments ago (`SignInCache`: no query, no hop to the thread
    pool before the route), else reading the database in the thread pool."""
    token_text, via_cookie = _credentials(request)
    sign_in = _cached(request, token_text)
    if sign_in is None:
        sign_in = await run_in_threadpool(_read_sign_in, request, token_text)
    return _admit(request, sign_in, via_cookie)


def _credentials(request: Request) -> tuple[str, bool]:
    """The token the request carries, and whether it came in the session cookie."""
    token_text = _bearer(request)
    via_cookie = False
    if token_text is None:
        token_text = request.cookies.get(COOKIE_NAME)
        via_cookie = token_text is not None
    if not token_text:
        raise Unauthenticated("authentication required", message_vi="Cần đăng nhập")
    return token_text, via_cookie


def _cache(request: Request) -> SignInCache | None:
    return getattr(request.app.state, "signin_cache", None)


def _cached(request: Request, token_text: str) -> SignIn | None:
    cache = _cache(request)
    if cache is None:
        return None
    return cache.get(service.hash_token(token_text), utcnow())


def _read_sign_in(request: Request, token_text: str) -> SignIn:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with read_session(factory) as reader:
        return _resolve(request, reader, token_text)


def _resolve(request: Request, session: Session, token_text: str) -> SignIn:
    cache = _cache(request)
    generation = cache.generation() if cache is not None else 0
    token = service.resolve_token(session, token_text)
    if token is None:
        raise Unauthenticated(
            "invalid, expired or revoked token", message_vi="Phiên đăng nhập không hợp lệ"
        )
    sign_in = SignIn(
        principal=service.principal_for(session, token.user, token),
        id=token.id,
        last_used_at=token.last_used_at,
        expires_at=token.expires_at,
    )
    if cache is not None:
        cache.put(token.token_hash, sign_in, generation)
    return sign_in


def _admit(request: Request, sign_in: SignIn, via_cookie: bool) -> Principal:
    if via_cookie and request.method not in SAFE_METHODS and not _same_origin(request):
        raise PermissionDeniedError(
            "cross-site request refused",
            message_vi="Yêu cầu từ trang khác bị từ chối",
        )
    note_token_use(request, sign_in)
    request.state.principal = sign_in.principal
    return sign_in.principal


def note_token_use(request: Request, token: UsedToken) -> None:
    """Record, in the background, that ``token`` was used (authentication writes nothing)."""
    usage: TokenUsage | None = getattr(request.app.state, "token_usage", None)
    if usage is not None:
        usage.note(token)


def header_authenticator(
    factory: sessionmaker[Session],
) -> Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[bool]]:
    """For the body-limit middleware: do raw ASGI headers carry a valid bearer token or
    session cookie?  Reads only, in the thread pool (the check runs before a large body
    is read, i.e. before FastAPI's own authentication)."""

    def valid(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        token_text: str | None = None
        cookies: dict[str, str] = {}
        for name, value in headers:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    token_text = rest.strip()
            elif name == b"cookie":
                cookies.update(cookie_parser(value.decode("latin-1")))
        token_text = token_text or cookies.get(COOKIE_NAME)
        if not token_text:
            return False
        with read_session(factory) as session:
            return service.resolve_token(session, token_text) is not None

    async def check(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        return await run_in_threadpool(valid, headers)

    return check


def managed_user(user_id: IdPath, session: SessionDep, principal: CurrentPrincipal) -> User:
    """An account, for an administrator who manages accounts (403 for anyone else)."""
    principal.require(Permission.USERS_MANAGE)
    return service.get_user(session, user_id)


ManagedUser = Annotated[User, Depends(managed_user)]
