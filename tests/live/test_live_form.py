"""The live page without a browser: who may open it, what it offers, and a service
without Icecast saying so (in Vietnamese) instead of failing later."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.broadcaster.test_web_pages import login, user

pytestmark = pytest.mark.usefixtures("tan_an")


def test_operator_sees_only_their_hamlets_and_no_icecast_notice(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    page = client.get("/truc-tiep")
    assert page.status_code == 200
    text = page.text
    assert "Phát trực tiếp" in text
    assert 'id="live-disabled"' in text  # no BROADCASTER_LIVE_ICECAST_URL in tests' settings
    assert 'id="live-start" disabled' in text
    assert 'value="lbn-' in text
    assert 'value="p3-' not in text  # another ward's hamlets are not offered
    # no emergency right: the emergency tier is offered disabled
    assert 'value="emergency" disabled' in text


def test_live_api_without_icecast_is_503(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [], can_emergency=True)
    login(client, "quantri")
    answer = client.post(
        "/api/v1/live/relays",
        json={"targets": {"areas": ["phuong-3"]}, "url": "http://127.0.0.1:9/x.mp3"},
        headers={"Origin": "http://testserver"},
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["message_vi"] == "Chưa cấu hình máy chủ phát trực tiếp (Icecast)"
    assert client.get("/api/v1/live/config").json()["enabled"] is False


def test_a_viewer_gets_the_403_page(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "xem", Role.VIEWER, ["tan-an"])
    login(client, "xem")
    assert client.get("/truc-tiep").status_code == 403
