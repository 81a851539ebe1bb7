"""Authentication, roles, area scope, lockout, tokens and the audit log."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.api import PASSWORD, make_user, ok

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/login"),
}
# self-service routes every signed-in account may use
SELF_SERVICE = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/tokens"),
    ("DELETE", "/api/v1/auth/tokens/{token_id}"),
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for path, methods in app.openapi()["paths"].items():
        for method in methods:
            out.append((method.upper(), path))
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_requires_credentials(client: TestClient, app: FastAPI) -> None:
    routes = _routes(app)
    assert len(routes) > 20
    for method, path in routes:
        response = client.request(method, _concrete(path))
        if (method, path) in PUBLIC or path.startswith("/media/"):
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers.get("www-authenticate") == "Bearer"


@pytest.mark.usefixtures("tan_an")
def test_viewer_cannot_change_anything(
    client: TestClient, app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    viewer = make_user(session_factory, "viewer", Role.VIEWER, ["tan-an"])
    for method, path in _routes(app):
        if method in {"GET", "HEAD"} or (method, path) in PUBLIC | SELF_SERVICE:
            continue
        response = client.request(method, _concrete(path), headers=viewer, json={})
        assert not 200 <= response.status_code < 300, (method, path, response.status_code)
    # and with valid bodies the answer is a plain 403
    body = {"sid": "x-1", "name": "X", "kind": "smart", "area_code": "lbn-cau-tre"}
    assert client.post("/api/v1/stations", json=body, headers=viewer).status_code == 403
    assert client.delete("/api/v1/stations/lbn-cau-tre", headers=viewer).status_code == 403
    assert client.get("/api/v1/stations/lbn-cau-tre", headers=viewer).status_code == 200


@pytest.mark.usefixtures("tan_an")
def test_area_scope_for_operators_and_technicians(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    lbn_operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    lbn_tech = make_user(session_factory, "tech-lbn", Role.TECHNICIAN, ["xa-loi-binh-nhon"])
    mine = ok(client.get("/api/v1/stations?limit=200", headers=lbn_operator))
    assert mine["total"] == 7
    assert all(s["sid"].startswith("lbn-") for s in mine["items"])
    # Phường 2 does not exist for them
    assert client.get("/api/v1/stations/p2-kp-1", headers=lbn_operator).status_code == 404
    assert client.get("/api/v1/areas/phuong-2", headers=lbn_operator).status_code == 404
    assert client.get("/api/v1/groups/phuong-2", headers=lbn_operator).status_code == 404
    assert client.get("/api/v1/stations?area=phuong-2", headers=lbn_operator).json()["total"] == 0
    assert (
        client.patch(
            "/api/v1/stations/p2-kp-1", json={"default_volume": 1}, headers=lbn_tech
        ).status_code
        == 404
    )
    # operators do not configure stations; technicians do, in their commune only
    assert (
        client.patch(
            "/api/v1/stations/lbn-cau-tre", json={"default_volume": 50}, headers=lbn_operator
        ).status_code
        == 403
    )
    assert (
        ok(
            client.patch(
                "/api/v1/stations/lbn-cau-tre", json={"default_volume": 50}, headers=lbn_tech
            )
        )["default_volume"]
        == 50
    )
    moved = client.patch(
        "/api/v1/stations/lbn-cau-tre", json={"area_code": "p2-kp-1"}, headers=lbn_tech
    )
    assert moved.status_code == 403
    created = client.post(
        "/api/v1/stations",
        json={"sid": "p2-new", "name": "X", "kind": "smart", "area_code": "p2-kp-1"},
        headers=lbn_tech,
    )
    assert created.status_code == 403
    # groups: an operator makes groups inside their commune only
    ok(
        client.post(
            "/api/v1/groups",
            json={"gid": "lbn-ven-song", "name": "Ven sông", "areas": ["lbn-cau-tre"]},
            headers=lbn_operator,
        ),
        201,
    )
    foreign = client.post(
        "/api/v1/groups",
        json={"gid": "mix", "name": "Mix", "stations": ["p2-kp-1"]},
        headers=lbn_operator,
    )
    assert foreign.status_code in (403, 404)
    gids = {
        g["gid"] for g in ok(client.get("/api/v1/groups?limit=100", headers=lbn_operator))["items"]
    }
    assert gids == {"all", "xa-loi-binh-nhon", "lbn-ven-song"}
    # CSV import rows outside the technician's commune are refused line by line
    csv_body = "sid,name,kind,area_code\nlbn-x,X,smart,lbn-cau-tre\np2-x,Y,smart,p2-kp-1\n"
    r = client.post(
        "/api/v1/stations/import", files={"file": ("s.csv", csv_body.encode())}, headers=lbn_tech
    )
    assert r.status_code == 422
    assert [(e["line"], e["field"]) for e in r.json()["errors"]] == [(3, "area_code")]


def test_login_lockout_and_tokens(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "oper", Role.OPERATOR)
    form = {"username": "oper", "password": PASSWORD}
    good = ok(client.post("/api/v1/auth/token", data=form))
    assert good["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {good['access_token']}"}
    assert ok(client.get("/api/v1/auth/me", headers=headers))["username"] == "oper"
    assert (
        client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x"}).status_code
        == 401
    )
    for _ in range(5):
        assert (
            client.post("/api/v1/auth/token", data={**form, "password": "wrong"}).status_code == 401
        )
    locked = client.post("/api/v1/auth/token", data=form)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    # logout revokes the token
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": "Bearer bct_forged"}).status_code
        == 401
    )


def test_api_tokens_are_revocable_and_password_change(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    headers = make_user(session_factory, "integr", Role.VIEWER)
    created = ok(
        client.post("/api/v1/auth/tokens", json={"name": "LGSP Long An"}, headers=headers), 201
    )
    api = {"Authorization": f"Bearer {created['token']}"}
    assert ok(client.get("/api/v1/auth/me", headers=api))["username"] == "integr"
    listed = ok(client.get("/api/v1/auth/tokens", headers=headers))
    assert [t["name"] for t in listed["items"]] == ["LGSP Long An"]
    assert "token" not in listed["items"][0]
    assert client.delete(f"/api/v1/auth/tokens/{created['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=api).status_code == 401
    wrong = client.post(
        "/api/v1/auth/password",
        json={"current_password": "nope", "new_password": "a-new-password-1"},
        headers=headers,
    )
    assert wrong.status_code == 422
    assert (
        client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "a-new-password-1"},
            headers=headers,
        ).status_code
        == 204
    )
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401  # sessions revoked
    assert (
        client.post(
            "/api/v1/auth/token", data={"username": "integr", "password": "a-new-password-1"}
        ).status_code
        == 200
    )


def test_cookie_login_and_csrf(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    make_user(session_factory, "web", Role.ADMIN)
    response = client.post("/api/v1/auth/login", data={"username": "web", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax")
    assert ok(client.get("/api/v1/auth/me"))["username"] == "web"
    body = {"code": "xa-x", "name": "X", "level": "city"}
    assert (
        client.post(
            "/api/v1/areas", json=body, headers={"Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert (
        client.post("/api/v1/areas", json=body, headers={"Origin": "http://testserver"}).status_code
        == 201
    )


@pytest.mark.usefixtures("tan_an")
def test_user_management_and_audit(client: TestClient, admin: dict[str, str]) -> None:
    user = ok(
        client.post(
            "/api/v1/users",
            json={
                "username": "lbn",
                "password": "long-enough-pw",
                "role": "operator",
                "areas": ["xa-loi-binh-nhon"],
            },
            headers=admin,
        ),
        201,
    )
    assert user["areas"] == ["xa-loi-binh-nhon"]
    pw = "long-enough-pw"
    refused = [
        ({"username": "lbn", "password": pw, "role": "viewer"}, 409),  # taken
        ({"username": "x1", "password": "short", "role": "viewer"}, 422),
        ({"username": "x2", "password": pw, "role": "viewer", "areas": ["nowhere"]}, 422),
        ({"username": "x3", "password": pw, "role": "viewer", "can_emergency": True}, 422),
    ]
    for body, status in refused:
        assert client.post("/api/v1/users", json=body, headers=admin).status_code == status, body
    ok(client.patch(f"/api/v1/users/{user['id']}", json={"role": "approver"}, headers=admin))
    login = {"username": "lbn", "password": "long-enough-pw"}
    issued = ok(client.post("/api/v1/auth/token", data=login))
    lbn = {"Authorization": f"Bearer {issued['access_token']}"}
    assert client.get("/api/v1/users", headers=lbn).status_code == 403
    assert client.get("/api/v1/audit", headers=lbn).status_code == 403
    ok(client.patch("/api/v1/stations/lbn-cau-tre", json={"default_volume": 40}, headers=admin))
    entries = ok(client.get("/api/v1/audit?target=lbn-cau-tre", headers=admin))["items"]
    assert entries[0]["action"] == "station.update"
    assert entries[0]["actor"] == "admin"
    assert entries[0]["before"]["default_volume"] == 70
    assert entries[0]["after"]["default_volume"] == 40
    actions = {
        e["action"] for e in ok(client.get("/api/v1/audit?limit=100", headers=admin))["items"]
    }
    assert {"user.create", "user.update", "auth.login", "station.update"} <= actions
    # there is no route that edits or deletes the audit log
    for path, methods in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if "audit" in path:
            assert set(methods) == {"get"}


def test_audit_log_is_append_only_in_the_database(
    session_factory: sessionmaker[Session], client: TestClient
) -> None:
    make_user(session_factory, "someone", Role.VIEWER)
    client.post("/api/v1/auth/token", data={"username": "someone", "password": PASSWORD})
    with session_factory() as session:
        assert session.scalar(text("SELECT count(*) FROM audit_log")) >= 1
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(statement))
            session.rollback()


def test_production_refuses_default_secret() -> None:
    from pydantic import ValidationError

    from broadcaster.settings import Settings

    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment="production")
    Settings(environment="production", secret_key="k" * 40)


def test_security_headers_and_body_limit(client: TestClient, admin: dict[str, str]) -> None:
    docs = client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in docs.headers
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"
    huge = client.post(
        "/api/v1/areas",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
