"""Approval (a second person, scoped; TTS bulletins approved with the rule) and area
scope (a commune operator neither sees nor edits another commune's schedules)."""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

import httpx
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
    create_source,
    daily,
    gap_item,
    make_asset,
    playlist,
    relay_item,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")
DAY = dt.date(2026, 11, 26)
TEXT = "Ủy ban nhân dân xã Lợi Bình Nhơn thông báo lịch tiêm chủng tại trạm y tế xã."


def decide(
    client: TestClient,
    rule: dict[str, Any],
    headers: dict[str, str],
    action: str = "approve",
    note: str | None = None,
) -> httpx.Response:
    """POST ``/schedules/rules/{id}/approve`` (or ``reject``), with a note if given."""
    url = f"/api/v1/schedules/rules/{rule['id']}/{action}"
    return client.post(url, json={"note": note} if note else None, headers=headers)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_text_bulletin_is_approved_with_its_rule(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    approver = make_user(session_factory, "duyet-lbn", Role.APPROVER, ["xa-loi-binh-nhon"])
    other_approver = make_user(session_factory, "duyet-p2", Role.APPROVER, ["phuong-2"])
    jingle = make_asset(session_factory, "Nhạc hiệu xã", minutes=0.2, owner_area="xa-loi-binh-nhon")
    programme = create_programme(
        client,
        operator,
        {"kind": "jingle", "asset_id": jingle},
        {"kind": "text", "text": TEXT, "voice": "south", "title": "Thông báo tiêm chủng"},
        title="Thông báo của xã",
    )
    assert programme["owner_area_code"] == "xa-loi-binh-nhon"
    spoken = programme["items"][1]
    assert spoken["kind"] == "text"
    assert spoken["text"] == TEXT
    assert spoken["asset_id"]
    assert spoken["duration_ms"] > 2000
    assert spoken["problem"] == "waiting for approval (with the rule)"
    with session_factory() as session:
        asset = session.get(MediaAsset, spoken["asset_id"])
        assert asset is not None
        assert asset.approval is Approval.DRAFT
        assert asset.created_by == "op-lbn"
        assert asset.recipe
        assert asset.recipe["text"] == TEXT

    body = rule_body(programme["id"], daily("06:30"), groups=["xa-loi-binh-nhon"])
    rule = create_rule(client, operator, body)
    assert rule["approval"] == "draft"
    assert rule["owner_area_code"] == "xa-loi-binh-nhon"
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []  # drafts do not air
    # operators cannot approve; an approver of another commune does not even see it
    assert decide(client, rule, operator).status_code == 403
    assert decide(client, rule, other_approver).status_code == 404
    approved = ok(decide(client, rule, approver, note="Đồng ý phát"))
    assert approved["approval"] == "approved"
    assert approved["approved_by"] == "duyet-lbn"
    assert approved["approval_note"] == "Đồng ý phát"
    assert approved["approved_at"]
    with session_factory() as session:
        asset = session.get(MediaAsset, spoken["asset_id"])
        assert asset is not None
        assert asset.approval is Approval.APPROVED
        assert asset.approved_by == "duyet-lbn"
        assert asset.approval_note == f"Duyệt cùng lịch phát #{rule['id']}: Đồng ý phát"
    items = playlist(client, operator, "lbn-cau-tre", DAY)
    assert [i["title"] for i in items] == ["Nhạc hiệu xã", "Thông báo tiêm chủng"]
    assert items[1]["media"]["duration_ms"] == spoken["duration_ms"]

    # changing what the programme plays sends the rule back to draft; the unchanged
    # text keeps its spoken asset (no second TTS run)
    changed = ok(
        client.patch(
            f"/api/v1/programmes/{programme['id']}",
            json={
                "items": [
                    {"kind": "jingle", "asset_id": jingle},
                    gap_item(1),
                    {
                        "kind": "text",
                        "text": TEXT,
                        "voice": "south",
                        "title": "Thông báo tiêm chủng",
                    },
                ]
            },
            headers=operator,
        )
    )
    assert changed["rules_reset"] == [rule["id"]]
    assert changed["items"][2]["asset_id"] == spoken["asset_id"]
    assert (
        ok(client.get(f"/api/v1/schedules/rules/{rule['id']}", headers=operator))["approval"]
        == "draft"
    )
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []
    ok(decide(client, rule, approver))
    # renaming or pausing keeps the approval; moving the time does not
    paused = ok(
        client.patch(
            f"/api/v1/schedules/rules/{rule['id']}",
            json={"title": "Thông báo (tạm dừng)", "enabled": False},
            headers=operator,
        )
    )
    assert paused["approval"] == "approved"
    assert paused["enabled"] is False
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []
    moved = ok(
        client.patch(
            f"/api/v1/schedules/rules/{rule['id']}",
            json={"enabled": True, "recurrence": daily("07:00")},
            headers=operator,
        )
    )
    assert moved["approval"] == "draft"
    assert moved["approved_by"] is None
    rejected = ok(decide(client, rule, approver, "reject", note="Sai giờ"))
    assert rejected["approval"] == "rejected"
    assert rejected["approval_note"] == "Sai giờ"
    assert playlist(client, operator, "lbn-cau-tre", DAY) == []


def test_the_author_never_approves(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    programme = create_programme(client, admin, asset_item(make_asset(session_factory)))
    rule = create_rule(client, admin, rule_body(programme["id"], daily("06:00")))
    response = decide(client, rule, admin)
    assert response.status_code == 403
    assert response.json()["message_vi"]
    assert decide(client, rule, admin, "reject").status_code == 403
    # a commune approver cannot approve a city-wide rule; a city approver can
    commune = make_user(session_factory, "duyet-lbn", Role.APPROVER, ["xa-loi-binh-nhon"])
    assert decide(client, rule, commune).status_code == 403
    city = make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])
    assert ok(decide(client, rule, city))["approval"] == "approved"


def test_area_scope(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    lbn = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    p2 = make_user(session_factory, "op-p2", Role.OPERATOR, ["phuong-2"])
    lbn_approver = make_user(session_factory, "duyet-lbn", Role.APPROVER, ["xa-loi-binh-nhon"])
    viewer = make_user(session_factory, "xem", Role.VIEWER, ["phuong-2"])
    asset = make_asset(session_factory, "Tin phường 2", owner_area="phuong-2")
    source = create_source(client, p2, "Đài phường 2", kind="commune")
    assert source["owner_area_code"] == "phuong-2"
    programme = create_programme(
        client, p2, asset_item(asset), relay_item(source["id"], 5), title="Phường 2"
    )
    rule = create_rule(client, p2, rule_body(programme["id"], daily("06:00"), groups=["phuong-2"]))
    assert rule["owner_area_code"] == "phuong-2"
    city = create_programme(client, admin, asset_item(make_asset(session_factory)), title="TP")
    city_rule = create_rule(client, admin, rule_body(city["id"], daily("07:00")))

    # Lợi Bình Nhơn does not see Phường 2's objects at all
    for path in (
        f"/api/v1/schedules/rules/{rule['id']}",
        f"/api/v1/programmes/{programme['id']}",
        f"/api/v1/stream-sources/{source['id']}",
        "/api/v1/stations/p2-kp-1/playlist",
        "/api/v1/stations/p2-kp-1/calendar.ics",
    ):
        assert client.get(path, headers=lbn).status_code == 404, path
    assert (
        client.patch(
            f"/api/v1/schedules/rules/{rule['id']}", json={"order": 1}, headers=lbn
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/schedules/rules/{rule['id']}", headers=lbn).status_code == 404
    assert (
        client.patch(
            f"/api/v1/programmes/{programme['id']}", json={"title": "x"}, headers=lbn
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/stream-sources/{source['id']}", headers=lbn).status_code == 404
    assert decide(client, rule, lbn_approver).status_code == 404
    assert [r["id"] for r in ok(client.get("/api/v1/schedules/rules", headers=lbn))["items"]] == [
        city_rule["id"]
    ]
    assert ok(client.get("/api/v1/programmes", headers=lbn))["total"] == 1
    assert ok(client.get("/api/v1/stream-sources", headers=lbn))["total"] == 0
    # city-wide objects are visible but managed by the city
    assert (
        client.patch(
            f"/api/v1/schedules/rules/{city_rule['id']}", json={"order": 1}, headers=lbn
        ).status_code
        == 403
    )
    # an operator schedules only inside their areas
    mine = create_programme(client, lbn, asset_item(make_asset(session_factory)), title="LBN")
    for targets in ({"stations": ["p2-kp-1"]}, {"groups": ["all"]}, {"areas": ["phuong-2"]}):
        body = rule_body(mine["id"], daily("06:00")) | {"targets": targets}
        assert client.post("/api/v1/schedules/rules", json=body, headers=lbn).status_code == 403, (
            targets
        )
    body = rule_body(mine["id"], daily("06:00"), groups=["xa-loi-binh-nhon"], owner_area="phuong-2")
    assert client.post("/api/v1/schedules/rules", json=body, headers=lbn).status_code == 403
    # Phường 2's programme is unknown to Lợi Bình Nhơn (422 on the field, not a leak)
    body = rule_body(programme["id"], daily("06:00"), groups=["xa-loi-binh-nhon"])
    response = client.post("/api/v1/schedules/rules", json=body, headers=lbn)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == [
        "body",
        "programme_id",
    ]
    # emergency tier needs the emergency flag
    body = rule_body(mine["id"], daily("06:00"), groups=["xa-loi-binh-nhon"], tier="emergency")
    assert client.post("/api/v1/schedules/rules", json=body, headers=lbn).status_code == 403
    assert (
        ok(
            client.post(
                "/api/v1/schedules/rules",
                json=body | {"owner_area": "xa-loi-binh-nhon"},
                headers=admin,
            ),
            201,
        )["priority"]
        == 9
    )
    # viewers read, never write
    assert (
        ok(client.get(f"/api/v1/schedules/rules/{rule['id']}", headers=viewer))["id"] == rule["id"]
    )
    assert (
        client.patch(
            f"/api/v1/schedules/rules/{rule['id']}", json={"order": 1}, headers=viewer
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/v1/programmes", json={"title": "x", "items": [asset_item(asset)]}, headers=viewer
        ).status_code
        == 403
    )
