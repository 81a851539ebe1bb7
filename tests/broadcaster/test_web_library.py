"""The audio library and approval queue pages (server side): scope, 404 outside the
account's areas, Vietnamese labels, the author's own work marked in the queue."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.api import make_user, ok
from tests.broadcaster.test_web_pages import login
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    daily,
    make_asset,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")


def _speak(client: TestClient, text: str, title: str) -> dict[str, object]:
    body = {"text": text, "title": title, "voice": "south"}
    return ok(
        client.post("/api/v1/media/tts", json=body, headers={"Origin": "http://testserver"}), 201
    )


def test_library_scope_queue_and_reason(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    make_user(session_factory, "phuong2", Role.OPERATOR, ["phuong-2"])
    make_user(session_factory, "duyet", Role.APPROVER, ["xa-loi-binh-nhon"])
    login(client, "phuong2")
    other = _speak(client, "Phường 2 thông báo lịch tiêm chủng.", "Tin phường 2")
    login(client, "lbn")
    mine = _speak(client, "Xã Lợi Bình Nhơn thông báo họp dân lúc 8 giờ.", "Họp dân ấp Cầu Tre")

    page = client.get("/thu-vien")
    assert page.status_code == 200
    assert "Họp dân ấp Cầu Tre" in page.text
    assert "Tin phường 2" not in page.text
    assert "Chờ duyệt" in page.text
    assert "draft" not in re.sub(r'(class|value|data-[a-z-]+)="[^"]*"', "", page.text)
    assert "Họp dân" in client.get("/thu-vien?q=hop+dan").text  # no diacritics needed
    # the composer offers every reading rate the API takes; the upload limit is the service's
    rates = re.search(r'<select id="tts-rate">(.*?)</select>', page.text, re.S)
    assert rates is not None
    assert re.findall(r'value="(-?\d)"', rates.group(1)) == [str(r) for r in range(-3, 4)]
    assert "tối đa 200 MB" in page.text
    settings = client.app.state.media_library.settings  # type: ignore[attr-defined]
    settings.max_upload_bytes = 50 * 1024 * 1024
    assert 'data-max-mb="50"' in client.get("/thu-vien").text
    settings.max_upload_bytes = 200 * 1024 * 1024
    assert "Họp dân" not in client.get("/thu-vien?state=approved").text
    assert client.get(f"/thu-vien/{mine['id']}").status_code == 200
    outside = client.get(f"/thu-vien/{other['id']}")
    assert outside.status_code == 404
    assert "Tin phường 2" not in outside.text
    assert client.get("/thu-vien/abc").status_code == 404
    assert client.get("/duyet").status_code == 403  # an operator approves nothing

    login(client, "duyet")
    queue = client.get("/duyet")
    assert queue.status_code == 200
    assert "Họp dân ấp Cầu Tre" in queue.text
    assert "Tin phường 2" not in queue.text
    note = {"note": "Ghi rõ địa điểm họp"}
    origin = {"Origin": "http://testserver"}
    ok(client.post(f"/api/v1/media/{mine['id']}/reject", json=note, headers=origin))
    assert "Họp dân ấp Cầu Tre" not in client.get("/duyet").text

    login(client, "lbn")
    detail = client.get(f"/thu-vien/{mine['id']}")
    assert "Bị từ chối" in detail.text
    assert "Ghi rõ địa điểm họp" in detail.text
    assert "Lý do từ chối: Ghi rõ địa điểm họp" in client.get("/thu-vien").text


def test_approver_cannot_approve_their_own_work(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "chihuy", Role.ADMIN)
    login(client, "chihuy")
    own = _speak(client, "Thành phố thông báo lịch cắt điện.", "Lịch cắt điện")
    queue = client.get("/duyet")
    block = queue.text.split(f'data-id="{own["id"]}"', 1)[1].split("</article>", 1)[0]
    assert "Bạn là người tạo nội dung này" in block
    assert "data-decision" not in block
    origin = {"Origin": "http://testserver"}
    refused = client.post(f"/api/v1/media/{own['id']}/approve", json={}, headers=origin)
    assert refused.status_code == 403


def test_queue_lists_draft_rules_in_the_approvers_areas(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "oplbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    make_user(session_factory, "duyetlbn", Role.APPROVER, ["xa-loi-binh-nhon"])
    make_user(session_factory, "duyetp2", Role.APPROVER, ["phuong-2"])
    jingle = make_asset(session_factory, "Nhạc hiệu xã", minutes=0.2, owner_area="xa-loi-binh-nhon")
    programme = create_programme(
        client, operator, asset_item(jingle), title="Chương trình sáng của xã"
    )
    body = rule_body(programme["id"], daily("06:30"), groups=["xa-loi-binh-nhon"])
    body["title"] = "Phát sáng hằng ngày"
    rule = create_rule(client, operator, body)

    login(client, "duyetp2")
    assert "Phát sáng hằng ngày" not in client.get("/duyet").text
    login(client, "duyetlbn")
    queue = client.get("/duyet").text
    block = queue.split(f'data-kind="rule" data-id="{rule["id"]}"', 1)[1].split("</article>")[0]
    assert "Phát sáng hằng ngày" in queue
    assert "Chương trình sáng của xã" in block
    assert "Lần phát tới" in block
    assert 'data-decision="approve"' in block


def test_library_pages_ask_for_a_session(client: TestClient) -> None:
    for path in ["/thu-vien", "/thu-vien/1", "/duyet"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/dang-nhap?next="), path
