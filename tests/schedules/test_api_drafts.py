"""Drafts an author keeps (approval ``unsubmitted``, *Nháp*) before sending them for
approval: the API creates one on request (``submit: false``), never airs it, keeps it
out of the approval queue, refuses to approve or reject it, and sends it with
``.../submit``; editing a rejected item can bring it back to waiting or to a draft."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import MediaAsset
from kernel.approval import Approval
from kernel.security import Role
from tests.api import make_user, ok
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    daily,
    make_asset,
    playlist,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")
DAY = dt.date(2026, 11, 26)
LBN = "xa-loi-binh-nhon"


def _unsubmitted_asset(factory: sessionmaker[Session], title: str) -> int:
    asset_id = make_asset(factory, title, approved=False, owner_area=LBN)
    with factory() as session:
        session.get_one(MediaAsset, asset_id).approval = Approval.UNSUBMITTED
        session.commit()
    return asset_id


def _ids(client: TestClient, headers: dict[str, str], path: str) -> set[int]:
    return {item["id"] for item in ok(client.get(path, headers=headers))["items"]}


def test_rule_draft_submit_approve(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, [LBN])
    approver = make_user(session_factory, "duyet-lbn", Role.APPROVER, [LBN])
    jingle = make_asset(session_factory, "Nhạc hiệu xã", owner_area=LBN)
    programme = create_programme(client, operator, asset_item(jingle), title="Tin xã")
    body = rule_body(programme["id"], daily("06:30"), groups=[LBN], submit=False)
    rule = create_rule(client, operator, body)
    assert rule["approval"] == "unsubmitted"
    url = f"/api/v1/schedules/rules/{rule['id']}"

    # a draft never airs and is not in the approval queue
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []
    waiting = "/api/v1/schedules/rules?approval=draft"
    assert rule["id"] not in _ids(client, approver, waiting)
    assert rule["id"] in _ids(client, operator, "/api/v1/schedules/rules?approval=unsubmitted")
    for verb in ("approve", "reject"):
        refused = client.post(f"{url}/{verb}", headers=approver)
        assert refused.status_code == 409, refused.text
        assert (
            refused.json()["message_vi"]
            == "Lịch phát này còn là bản nháp, người tạo chưa gửi duyệt"
        )
    assert ok(client.get(url, headers=operator))["approval"] == "unsubmitted"

    # the author edits the draft: it stays a draft
    edited = ok(client.patch(url, json={"recurrence": daily("06:45")}, headers=operator))
    assert edited["approval"] == "unsubmitted"
    # only an editor in the rule's areas submits it
    assert client.post(f"{url}/submit", headers=approver).status_code == 403
    submitted = ok(client.post(f"{url}/submit", headers=operator))
    assert submitted["approval"] == "draft"
    again = client.post(f"{url}/submit", headers=operator)
    assert again.status_code == 409
    assert "chờ duyệt" in again.json()["message_vi"]
    assert rule["id"] in _ids(client, approver, waiting)
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []

    approved = ok(client.post(f"{url}/approve", headers=approver))
    assert approved["approval"] == "approved"
    assert [i["title"] for i in playlist(client, operator, "lbn-cau-tre", DAY)] == ["Nhạc hiệu xã"]
    assert client.post(f"{url}/submit", headers=operator).status_code == 409

    # an approved rule whose times change goes back to the author's draft on request
    moved = ok(
        client.patch(url, json={"recurrence": daily("07:00"), "submit": False}, headers=operator)
    )
    assert moved["approval"] == "unsubmitted"
    assert moved["approved_by"] is None
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []

    # a rejected rule: an edit keeps it rejected unless asked; then waiting or a draft
    ok(client.post(f"{url}/submit", headers=operator))
    rejected = ok(client.post(f"{url}/reject", json={"note": "Sai giờ"}, headers=approver))
    assert rejected["approval"] == "rejected"
    renamed = ok(client.patch(url, json={"title": "Tin xã (sửa)"}, headers=operator))
    assert renamed["approval"] == "rejected"
    assert renamed["approval_note"] == "Sai giờ"
    back = ok(client.patch(url, json={"title": "Tin xã", "submit": False}, headers=operator))
    assert back["approval"] == "unsubmitted"
    resent = ok(
        client.patch(url, json={"recurrence": daily("06:30"), "submit": True}, headers=operator)
    )
    assert resent["approval"] == "draft"


def test_rules_created_without_submit_still_wait(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    programme = create_programme(client, admin, asset_item(make_asset(session_factory)))
    rule = create_rule(client, admin, rule_body(programme["id"], daily("06:00")))
    assert rule["approval"] == "draft"
    waiting = ok(
        client.patch(f"/api/v1/schedules/rules/{rule['id']}", json={"submit": True}, headers=admin)
    )
    assert waiting["approval"] == "draft"


def test_media_draft_submit_approve(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, [LBN])
    approver = make_user(session_factory, "duyet-lbn", Role.APPROVER, [LBN])
    draft = _unsubmitted_asset(session_factory, "Thông báo họp dân")
    url = f"/api/v1/media/{draft}"
    assert ok(client.get(url, headers=operator))["approval"] == "unsubmitted"
    assert draft not in _ids(client, approver, "/api/v1/media?approval=draft")
    assert draft in _ids(client, approver, "/api/v1/media?approval=unsubmitted")
    for verb in ("approve", "reject"):
        refused = client.post(f"{url}/{verb}", headers=approver)
        assert refused.status_code == 409, refused.text
        assert refused.json()["message_vi"] == (
            "Tệp âm thanh này còn là bản nháp, người tạo chưa gửi duyệt"
        )
    # a draft cannot go into a programme (only approved audio plays)
    refused = client.post(
        "/api/v1/programmes",
        json={"title": "CT", "items": [asset_item(draft)]},
        headers=operator,
    )
    assert refused.status_code == 422, refused.text

    assert client.post(f"{url}/submit", headers=approver).status_code == 403
    assert ok(client.post(f"{url}/submit", headers=operator))["approval"] == "draft"
    assert client.post(f"{url}/submit", headers=operator).status_code == 409
    assert draft in _ids(client, approver, "/api/v1/media?approval=draft")
    rejected = ok(client.post(f"{url}/reject", json={"note": "Thiếu giờ họp"}, headers=approver))
    assert rejected["approval"] == "rejected"

    # editing the rejected asset: kept as a draft, then sent again and approved
    kept = ok(
        client.patch(url, json={"title": "Họp dân lúc 8 giờ", "submit": False}, headers=operator)
    )
    assert kept["approval"] == "unsubmitted"
    assert kept["approval_note"] is None
    sent = ok(client.patch(url, json={"submit": True}, headers=operator))
    assert sent["approval"] == "draft"
    approved = ok(client.post(f"{url}/approve", headers=approver))
    assert approved["approval"] == "approved"
    assert approved["playable"] is True
    # an approved asset stays approved whatever an edit asks
    still = ok(client.patch(url, json={"submit": False}, headers=operator))
    assert still["approval"] == "approved"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_spoken_bulletin_saved_as_draft(client: TestClient, admin: dict[str, str]) -> None:
    body = {"text": "Thông báo lịch tiêm chủng tại trạm y tế.", "title": "Tiêm chủng"}
    kept = ok(client.post("/api/v1/media/tts", json=body | {"submit": False}, headers=admin), 201)
    assert kept["approval"] == "unsubmitted"
    assert kept["playable"] is False
    sent = ok(
        client.post("/api/v1/media/tts", json=body | {"title": "Tiêm chủng 2"}, headers=admin), 201
    )
    assert sent["approval"] == "draft"
    assert (
        ok(client.post(f"/api/v1/media/{kept['id']}/submit", headers=admin))["approval"] == "draft"
    )
