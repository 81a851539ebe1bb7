"""Drafts in the dashboard (server side): the library's status filter and badges say
"Nháp", the forms offer "Lưu nháp", a draft shows "Gửi duyệt" (library and rule editor),
and the approval queue never lists a draft its author has not submitted."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import MediaAsset
from kernel.approval import Approval
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
LBN = "xa-loi-binh-nhon"
ORIGIN = {"Origin": "http://testserver"}


def _asset(factory: sessionmaker[Session], title: str, approval: Approval) -> int:
    asset_id = make_asset(factory, title, approved=False, owner_area=LBN)
    with factory() as session:
        session.get_one(MediaAsset, asset_id).approval = approval
        session.commit()
    return asset_id


def _row(html: str, title: str) -> str:
    return html.split(title, 1)[1].split("</tr>", 1)[0]


def test_library_filter_badges_and_submit_button(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "oplbn", Role.OPERATOR, [LBN])
    make_user(session_factory, "duyetlbn", Role.APPROVER, [LBN])
    draft = _asset(session_factory, "Bản nháp họp dân", Approval.UNSUBMITTED)
    _asset(session_factory, "Tin chờ duyệt", Approval.DRAFT)

    login(client, "oplbn")
    page = client.get("/thu-vien").text
    states = re.search(r'<select id="f-state".*?</select>', page, re.S)
    assert states is not None
    options = re.findall(r'<option value="([a-z]*)"[^>]*>([^<]*)</option>', states.group(0))
    assert options[:5] == [
        ("", "Tất cả"),
        ("unsubmitted", "Nháp"),
        ("draft", "Chờ duyệt"),
        ("approved", "Đã duyệt"),
        ("rejected", "Bị từ chối"),
    ]
    row = _row(page, "Bản nháp họp dân")
    assert ">Nháp</span>" in row
    assert f'data-submit="{draft}"' in row
    assert ">Gửi duyệt</button>" in row
    assert "data-submit=" not in _row(page, "Tin chờ duyệt")  # already waiting
    for button in ("up-keep", "rec-keep", "tts-keep"):
        assert re.search(rf'id="{button}"[^>]*>Lưu nháp</button>', page), button
    only = client.get("/thu-vien?state=unsubmitted").text
    assert "Bản nháp họp dân" in only
    assert "Tin chờ duyệt" not in only
    assert "Bản nháp họp dân" not in client.get("/thu-vien?state=draft").text
    detail = client.get(f"/thu-vien/{draft}").text
    assert 'id="asset-submit"' in detail
    assert "chưa gửi duyệt" in detail
    assert 'id="ed-send"' in detail

    login(client, "duyetlbn")
    queue = client.get("/duyet").text
    assert "Tin chờ duyệt" in queue
    assert "Bản nháp họp dân" not in queue

    login(client, "oplbn")
    ok(client.post(f"/api/v1/media/{draft}/submit", headers=ORIGIN))
    assert "Gửi duyệt</button>" not in _row(client.get("/thu-vien").text, "Bản nháp họp dân")
    assert 'id="asset-submit"' not in client.get(f"/thu-vien/{draft}").text
    login(client, "duyetlbn")
    assert "Bản nháp họp dân" in client.get("/duyet").text


def test_rule_editor_draft_and_submit_button(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "oplbn", Role.OPERATOR, [LBN])
    make_user(session_factory, "duyetlbn", Role.APPROVER, [LBN])
    jingle = make_asset(session_factory, "Nhạc hiệu xã", minutes=0.2, owner_area=LBN)
    programme = create_programme(client, operator, asset_item(jingle), title="Chương trình xã")
    body = rule_body(programme["id"], daily("06:30"), groups=[LBN], submit=False)
    body["title"] = "Phát sáng (nháp)"
    rule = create_rule(client, operator, body)

    login(client, "oplbn")
    new = client.get("/lich/quy-tac/moi").text
    assert re.search(r'id="r-save"[^>]*>Lưu và gửi duyệt</button>', new)
    assert re.search(r'id="r-keep"[^>]*>Lưu nháp</button>', new)
    assert 'id="r-submit"' not in new
    editor = client.get(f"/lich/quy-tac/{rule['id']}").text
    assert re.search(r'id="r-submit"[^>]*>Gửi duyệt</button>', editor)
    assert 'id="rule-unsubmitted-note"' in editor
    assert "Nháp" in _row(client.get("/lich/quy-tac").text, "Phát sáng (nháp)")

    login(client, "duyetlbn")
    assert "Phát sáng (nháp)" not in client.get("/duyet").text
    login(client, "oplbn")
    ok(client.post(f"/api/v1/schedules/rules/{rule['id']}/submit", headers=ORIGIN))
    editor = client.get(f"/lich/quy-tac/{rule['id']}").text
    assert 'id="r-submit"' not in editor
    assert re.search(r'id="r-save"[^>]*>Lưu thay đổi</button>', editor)
    login(client, "duyetlbn")
    assert "Phát sáng (nháp)" in client.get("/duyet").text
