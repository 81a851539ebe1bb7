"""`/api/v1/stations/{sid}/credentials`: issue once, rotate, status, revoke; scope; 503."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broker.bootstrap import find_dynsec_plugin
from broadcaster.broker.hashing import verify_secret
from broadcaster.broker.models import StationCredential
from broadcaster.settings import Settings
from kernel.audit import AuditEntry
from kernel.security import Role
from tests.api import make_user, ok
from tests.support.dynsec_broker import DynsecBroker
from tests.support.mosquitto import requires_mosquitto

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic-security plugin"),
    pytest.mark.usefixtures("tan_an"),
]

A, B = "lbn-cau-tre", "bt-1"  # xa-loi-binh-nhon, xa-binh-tam
URL = "/api/v1/stations/{}/credentials"


@pytest.fixture
def settings(settings: Settings, dynsec_broker: DynsecBroker) -> Settings:
    """The conftest settings, pointed at the module's broker with the service account."""
    return settings.model_copy(update={"mqtt_url": dynsec_broker.url, "mqtt_dynsec": True})


def _credential_rows(factory: sessionmaker[Session]) -> list[StationCredential]:
    with factory() as session:
        return list(session.scalars(select(StationCredential)))


def _audit(factory: sessionmaker[Session]) -> list[AuditEntry]:
    with factory() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("station.credentials.%"))
                .order_by(AuditEntry.id)
            )
        )


def test_routes_need_authentication(client: TestClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = client.request(method, URL.format(A))
        assert response.status_code == 401, method
        assert response.headers["www-authenticate"] == "Bearer"


def test_issue_once_rotate_and_revoke(
    client: TestClient,
    admin: dict[str, str],
    dynsec_broker: DynsecBroker,
    session_factory: sessionmaker[Session],
) -> None:
    status = ok(client.get(URL.format(A), headers=admin))
    assert status["issued"] is False
    assert status["created_at"] is None

    response = client.post(URL.format(A), headers=admin)
    body = ok(response, 201)
    assert response.headers["cache-control"] == "no-store"
    assert body["sid"] == A
    assert body["username"] == A
    assert body["client_id"] == f"st-{A}"
    # no service account in the URL
    assert body["mqtt_url"] == f"mqtt://{dynsec_broker.host}:{dynsec_broker.port}"
    assert len(body["password"]) >= 43
    assert body["rotated"] is False
    first = body["password"]
    dynsec_broker.peer(A, first, client_id=f"st-{A}").ok().close()

    status = ok(client.get(URL.format(A), headers=admin))
    assert status["issued"] is True
    assert status["created_by"] == "admin"
    assert status["rotated_at"] is None
    assert status["rotations"] == 0
    assert "password" not in status
    assert first not in json.dumps(status)
    (row,) = _credential_rows(session_factory)
    assert first not in row.secret_hash
    assert verify_secret(first, row.secret_hash)

    # re-POST rotates: the old secret stops working
    rotated = ok(client.post(URL.format(A), headers=admin), 200)
    assert rotated["rotated"] is True
    assert rotated["password"] != first
    assert dynsec_broker.peer(A, first, client_id=f"st-{A}").connect().is_failure
    dynsec_broker.peer(A, rotated["password"], client_id=f"st-{A}").ok().close()
    status = ok(client.get(URL.format(A), headers=admin))
    assert status["rotations"] == 1
    assert status["rotated_by"] == "admin"

    # revoke: the account is gone
    assert client.delete(URL.format(A), headers=admin).status_code == 204
    assert ok(client.get(URL.format(A), headers=admin))["issued"] is False
    assert dynsec_broker.peer(A, rotated["password"], client_id=f"st-{A}").connect().is_failure
    assert _credential_rows(session_factory) == []

    entries = _audit(session_factory)
    assert [e.action for e in entries] == [
        "station.credentials.issue",
        "station.credentials.rotate",
        "station.credentials.revoke",
    ]
    assert all(e.actor == "admin" and e.targets == [A] for e in entries)
    dumped = json.dumps([[e.before, e.after] for e in entries])
    assert first not in dumped
    assert rotated["password"] not in dumped


def test_area_scope_and_roles(
    client: TestClient, session_factory: sessionmaker[Session], dynsec_broker: DynsecBroker
) -> None:
    technician = make_user(session_factory, "tech-lbn", Role.TECHNICIAN, ["xa-loi-binh-nhon"])
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    viewer = make_user(session_factory, "viewer-lbn", Role.VIEWER, ["xa-loi-binh-nhon"])
    # outside the technician's area the station does not exist
    for method in ("GET", "POST", "DELETE"):
        assert client.request(method, URL.format(B), headers=technician).status_code == 404
    # inside: technicians manage credentials; operators and viewers only see the status
    issued = ok(client.post(URL.format(A), headers=technician), 201)
    dynsec_broker.peer(A, issued["password"], client_id=f"st-{A}").ok().close()
    for who in (operator, viewer):
        assert client.post(URL.format(A), headers=who).status_code == 403
        assert client.delete(URL.format(A), headers=who).status_code == 403
        assert ok(client.get(URL.format(A), headers=who))["issued"] is True
    assert [e.actor for e in _audit(session_factory)] == ["tech-lbn"]


def test_unreachable_broker_answers_503_and_saves_nothing(
    settings: Settings, session_factory: sessionmaker[Session], admin: dict[str, str]
) -> None:
    from broadcaster.app import create_app
    from broadcaster.runtime import Role

    down = settings.model_copy(update={"mqtt_url": "mqtt://broadcaster:pw@127.0.0.1:1"})
    with TestClient(create_app(down, role=Role.API)) as other:
        response = other.post(URL.format(A), headers=admin)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "broker" in response.json()["detail"]
        assert response.json()["message_vi"]
        assert ok(other.get(URL.format(A), headers=admin))["issued"] is False
    assert _credential_rows(session_factory) == []
    assert _audit(session_factory) == []


def test_switched_off_answers_409(
    settings: Settings, session_factory: sessionmaker[Session], admin: dict[str, str]
) -> None:
    from broadcaster.app import create_app
    from broadcaster.runtime import Role

    with TestClient(
        create_app(settings.model_copy(update={"mqtt_dynsec": False}), role=Role.API)
    ) as other:
        response = other.post(URL.format(A), headers=admin)
        assert response.status_code == 409
        assert "BROADCASTER_MQTT_DYNSEC" in response.json()["detail"]
    assert _credential_rows(session_factory) == []
