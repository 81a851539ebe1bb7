"""The sign-in cache (`broadcaster.auth.signin_cache`): a token used moments ago skips
the database, and whatever changes a sign-in takes effect at once in this process, or
within ``BROADCASTER_AUTH_CACHE_S`` when another process changed it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.auth.models import User
from broadcaster.auth.signin_cache import SignIn, SignInCache
from kernel.db import utcnow
from kernel.security import Principal, Role
from tests.api import PASSWORD, make_user, ok


@contextmanager
def token_reads(engine: Engine) -> Iterator[list[str]]:
    """The statements that read the tokens table while the block runs."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM tokens" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _user(factory: sessionmaker[Session], username: str) -> int:
    with factory() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        assert user_id is not None
        return user_id


def test_a_token_used_moments_ago_is_not_read_again(
    client: TestClient, app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    app.state.signin_cache = SignInCache(ttl_s=60)  # no expiry on a slow machine either
    headers = make_user(session_factory, "oper", Role.OPERATOR)
    with token_reads(app.state.engine) as reads:
        assert ok(client.get("/api/v1/auth/me", headers=headers))["username"] == "oper"
        assert len(reads) == 1
        for _ in range(3):
            assert ok(client.get("/api/v1/auth/me", headers=headers))["username"] == "oper"
        assert len(reads) == 1  # the next three came from the cache
    assert len(app.state.signin_cache) == 1
    # a wrong token is never cached, and is refused every time
    wrong = {"Authorization": "Bearer bct_not-a-token"}
    for _ in range(2):
        assert client.get("/api/v1/auth/me", headers=wrong).status_code == 401
    assert len(app.state.signin_cache) == 1


def test_signing_out_and_revoking_take_effect_at_once(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    headers = make_user(session_factory, "integr", Role.VIEWER)
    made = ok(client.post("/api/v1/auth/tokens", json={"name": "LGSP"}, headers=headers), 201)
    api = {"Authorization": f"Bearer {made['token']}"}
    assert ok(client.get("/api/v1/auth/me", headers=api))["username"] == "integr"
    assert client.delete(f"/api/v1/auth/tokens/{made['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=api).status_code == 401
    assert ok(client.get("/api/v1/auth/me", headers=headers))["username"] == "integr"
    assert client.post("/api/v1/auth/logout", headers=headers).status_code in (200, 204)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


@pytest.mark.usefixtures("tan_an")
def test_an_account_changed_in_this_process_is_read_again(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    """Through the API, through the ORM (a CLI command's code, an import) and through a
    statement that bypasses the unit of work: each is seen by the next request."""
    headers = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    user_id = _user(session_factory, "op-lbn")
    assert ok(client.get("/api/v1/stations?limit=200", headers=headers))["total"] == 7
    # the areas, through the API
    ok(client.patch(f"/api/v1/users/{user_id}", json={"areas": ["tan-an"]}, headers=admin))
    assert ok(client.get("/api/v1/stations?limit=200", headers=headers))["total"] == 108
    # the role, through the ORM
    assert ok(client.get("/api/v1/auth/me", headers=headers))["role"] == "operator"
    with session_factory() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.role = Role.VIEWER
        session.commit()
    assert ok(client.get("/api/v1/auth/me", headers=headers))["role"] == "viewer"
    # deactivated by a bulk statement
    with session_factory() as session:
        session.execute(update(User).where(User.id == user_id).values(active=False))
        session.commit()
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


@pytest.mark.usefixtures("tan_an")
def test_a_new_area_under_an_operators_ward_is_in_scope_at_once(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    headers = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    ok(client.get("/api/v1/auth/me", headers=headers))
    area = {"code": "ap-moi", "name": "Ấp Mới", "level": "hamlet"}
    ok(
        client.post(
            "/api/v1/areas", json=area | {"parent_code": "xa-loi-binh-nhon"}, headers=admin
        ),
        201,
    )
    body = {"sid": "lbn-ap-moi", "name": "Ấp Mới", "kind": "smart", "area_code": "ap-moi"}
    ok(client.post("/api/v1/stations", json=body, headers=admin), 201)
    mine = ok(client.get("/api/v1/stations?limit=200", headers=headers))
    assert "lbn-ap-moi" in {s["sid"] for s in mine["items"]}


def test_logins_leave_the_cache_alone(
    client: TestClient, app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    """A new token and a failed login (a user's count of them) change no sign-in."""
    app.state.signin_cache = SignInCache(ttl_s=60)
    headers = make_user(session_factory, "oper", Role.OPERATOR)
    make_user(session_factory, "other", Role.VIEWER)
    ok(client.get("/api/v1/auth/me", headers=headers))
    cache: SignInCache = app.state.signin_cache
    generation = cache.generation()
    refused = client.post("/api/v1/auth/token", data={"username": "other", "password": "no"})
    assert refused.status_code == 401
    ok(client.post("/api/v1/auth/token", data={"username": "other", "password": PASSWORD}))
    assert cache.generation() == generation
    assert len(cache) == 1


def test_another_process_s_change_takes_effect_within_the_time_to_live(
    client: TestClient, app: FastAPI, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """A change no session of this process made (another replica, a CLI command: here a
    plain SQL statement on a connection of its own) is seen once the entry is older
    than ``BROADCASTER_AUTH_CACHE_S``."""
    app.state.signin_cache = SignInCache(ttl_s=0.5)
    headers = make_user(session_factory, "oper", Role.OPERATOR)
    ok(client.get("/api/v1/auth/me", headers=headers))
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET active = :no WHERE username = 'oper'"), {"no": False})
    deadline = time.monotonic() + 10
    while client.get("/api/v1/auth/me", headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "the deactivation was never seen"
        time.sleep(0.1)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_no_cache_reads_every_time(
    client: TestClient, app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    app.state.signin_cache = SignInCache(ttl_s=0)
    headers = make_user(session_factory, "oper", Role.OPERATOR)
    with token_reads(app.state.engine) as reads:
        for _ in range(3):
            ok(client.get("/api/v1/auth/me", headers=headers))
    assert len(reads) == 3
    assert len(app.state.signin_cache) == 0


def _sign_in(expires_at: dt.datetime | None = None) -> SignIn:
    principal = Principal(
        user_id=1,
        username="op",
        role=Role.OPERATOR,
        permissions=frozenset(),
        area_codes=frozenset(),
        scope=frozenset(),
    )
    return SignIn(principal, id=1, last_used_at=None, expires_at=expires_at)


def test_a_read_that_raced_an_invalidation_is_not_kept() -> None:
    cache = SignInCache(ttl_s=60)
    before = cache.generation()
    cache.clear()  # a revocation committed while the sign-in was being read
    cache.put("h", _sign_in(), before)
    assert cache.get("h", utcnow()) is None
    cache.put("h", _sign_in(), cache.generation())
    assert cache.get("h", utcnow()) is not None


def test_an_expired_token_is_not_served_from_the_cache() -> None:
    cache = SignInCache(ttl_s=60)
    now = utcnow()
    cache.put("h", _sign_in(expires_at=now + dt.timedelta(seconds=1)), cache.generation())
    assert cache.get("h", now) is not None
    assert cache.get("h", now + dt.timedelta(seconds=2)) is None
    assert len(cache) == 0


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache = SignInCache(ttl_s=60, max_entries=2)
    for key in ("a", "b"):
        cache.put(key, _sign_in(), cache.generation())
    assert cache.get("a", utcnow()) is not None
    cache.put("c", _sign_in(), cache.generation())
    assert cache.get("b", utcnow()) is None
    assert cache.get("a", utcnow()) is not None
    assert cache.get("c", utcnow()) is not None
