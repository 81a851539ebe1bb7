"""Who may broadcast where: area scope, the emergency permission, read scope."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.api import make_user, ok

pytestmark = pytest.mark.usefixtures("tan_an")


def test_operators_broadcast_only_in_their_commune(
    client: TestClient, session_factory: sessionmaker[Session], bulletin: int
) -> None:
    lbn = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    p2 = make_user(session_factory, "op-p2", Role.OPERATOR, ["phuong-2"])
    content = {"asset_id": bulletin}
    foreign = client.post(
        "/api/v1/broadcasts",
        json={"targets": {"groups": ["phuong-2"]}, "content": content},
        headers=lbn,
    )
    assert foreign.status_code == 403
    mixed = client.post(
        "/api/v1/broadcasts",
        json={"targets": {"stations": ["lbn-cau-tre", "p2-kp-1"]}, "content": content},
        headers=lbn,
    )
    assert mixed.status_code == 403
    city = client.post(
        "/api/v1/broadcasts",
        json={"targets": {"areas": ["tan-an"]}, "content": content},
        headers=lbn,
    )
    assert city.status_code == 403
    own = ok(
        client.post(
            "/api/v1/broadcasts",
            json={
                "targets": {"groups": ["xa-loi-binh-nhon"]},
                "content": content,
                "tier": "priority",
            },
            headers=lbn,
        ),
        201,
    )
    assert own["station_count"] == 7
    assert own["progress"]["by_status"]["PENDING"] == 7  # stored before any publish
    # the other commune cannot see it, the city can
    assert client.get(f"/api/v1/broadcasts/{own['id']}", headers=p2).status_code == 404
    assert ok(client.get("/api/v1/broadcasts", headers=p2))["total"] == 0
    assert ok(client.get("/api/v1/broadcasts", headers=lbn))["total"] == 1
    # and cannot stop it
    assert client.post(f"/api/v1/broadcasts/{own['id']}/stop", headers=p2).status_code == 404
    assert (
        ok(client.post(f"/api/v1/broadcasts/{own['id']}/stop", headers=lbn))["status"] == "stopped"
    )


def test_emergency_needs_its_own_permission(
    client: TestClient, session_factory: sessionmaker[Session], bulletin: int
) -> None:
    plain = make_user(session_factory, "op-thuong", Role.OPERATOR, ["xa-loi-binh-nhon"])
    trusted = make_user(
        session_factory, "op-kc", Role.OPERATOR, ["xa-loi-binh-nhon"], can_emergency=True
    )
    body = {
        "targets": {"groups": ["xa-loi-binh-nhon"]},
        "content": {"asset_id": bulletin},
        "tier": "emergency",
    }
    denied = client.post("/api/v1/broadcasts", json=body, headers=plain)
    assert denied.status_code == 403
    assert "khẩn cấp" in denied.json()["message_vi"]
    assert ok(client.post("/api/v1/broadcasts", json=body, headers=trusted), 201)["priority"] == 9


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TECHNICIAN, Role.APPROVER])
def test_roles_without_broadcast_permission(
    client: TestClient, session_factory: sessionmaker[Session], bulletin: int, role: Role
) -> None:
    headers = make_user(session_factory, f"u-{role.value}", role, ["tan-an"])
    body = {"targets": {"areas": ["tan-an"]}, "content": {"asset_id": bulletin}}
    assert client.post("/api/v1/broadcasts", json=body, headers=headers).status_code == 403


def test_technicians_command_stations_in_their_area_only(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    tech = make_user(session_factory, "tech-lbn", Role.TECHNICIAN, ["xa-loi-binh-nhon"])
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    ok(
        client.post("/api/v1/stations/lbn-cau-tre/commands", json={"type": "ping"}, headers=tech),
        201,
    )
    assert (
        client.post(
            "/api/v1/stations/p2-kp-1/commands", json={"type": "ping"}, headers=tech
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/api/v1/stations/lbn-cau-tre/commands", json={"type": "reboot"}, headers=operator
        ).status_code
        == 403
    )
    bad = client.post(
        "/api/v1/stations/lbn-cau-tre/commands", json={"type": "volume"}, headers=tech
    )
    assert bad.status_code == 422
    history = ok(client.get("/api/v1/stations/lbn-cau-tre/commands", headers=tech))
    assert [c["type"] for c in history["items"]] == ["ping"]
    assert history["items"][0]["status"] == "PENDING"
