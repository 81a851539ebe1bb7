"""CAP 1.2 ingest, rules, approval and export through the API (no broker)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alerts import cap
from broadcaster.alerts.vocabulary import RISK_LEVELS, risk_level, tier_and_repeat
from kernel.security import Role
from kernel.tiers import Tier
from stations import tan_an
from tests.alerts.capdocs import (
    FLOOD_BOX,
    OASIS,
    box_polygon,
    flood_alert,
    inside,
    reference,
)
from tests.api import make_user, ok
from tests.support.audio import sine, write_wav

pytestmark = pytest.mark.usefixtures("tan_an")

HEADER = "X-Alert-Token"


def send(client: TestClient, token: str | None, body: bytes) -> Any:
    headers = {"Content-Type": "application/cap+xml"}
    if token is not None:
        headers[HEADER] = token
    return client.post("/api/v1/alerts/cap", content=body, headers=headers)


def send_about(client: TestClient, token: str, earlier: str, msg_type: str, **kw: Any) -> Any:
    """An Update or Cancel of the alert `earlier`."""
    body = flood_alert(
        f"{earlier}-{msg_type}", msg_type=msg_type, references=reference(earlier), **kw
    )
    return send(client, token, body)


def broadcasts(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    return list(ok(client.get("/api/v1/broadcasts", headers=admin))["items"])


def alerts(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    return list(ok(client.get("/api/v1/alerts", headers=admin))["items"])


def in_box() -> list[str]:
    return sorted(s.sid for s in tan_an.stations() if inside(FLOOD_BOX, s.latitude, s.longitude))


def test_polygon_alert_airs_to_exactly_the_stations_inside(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    expected = in_box()
    assert 0 < len(expected) < 108
    body = ok(send(client, auto_token, flood_alert("LA-LU-1", polygon=box_polygon())), 202)
    assert body["outcome"] == "aired"
    assert body["aired"] is True
    assert body["station_count"] == len(expected)
    broadcast = ok(
        client.get(f"/api/v1/broadcasts/{body['broadcast_id']}?stations=true", headers=admin)
    )
    assert sorted(s["sid"] for s in broadcast["stations"]) == expected
    assert broadcast["tier"] == "emergency"
    assert broadcast["repeat"] == 2
    alert = ok(client.get(f"/api/v1/alerts/{body['alert_id']}", headers=admin))
    assert alert["stations"] == expected
    assert alert["risk_level"] == 3
    assert "di chuyển đến nơi an toàn" in alert["text"]


def test_geocode_and_circle_areas(client: TestClient, auto_token: str) -> None:
    p3 = sorted(s.sid for s in tan_an.stations() if s.sid.startswith("p3-"))
    body = ok(send(client, auto_token, flood_alert("LA-GEO", geocode="phuong-3")), 202)
    assert body["station_count"] == len(p3)
    station = next(s for s in tan_an.stations() if s.sid == "p3-kp-1")
    circle = f"{station.latitude},{station.longitude} 0.05"
    near = ok(send(client, auto_token, flood_alert("LA-CIRCLE", circle=circle)), 202)
    assert near["station_count"] >= 1


@pytest.mark.parametrize("status", ["Test", "Exercise", "Draft"])
def test_test_exercise_draft_never_reach_a_speaker(
    client: TestClient, admin: dict[str, str], auto_token: str, status: str
) -> None:
    body = ok(
        send(client, auto_token, flood_alert(f"LA-{status}", status=status, polygon=box_polygon())),
        202,
    )
    assert body["outcome"] == "not_aired"
    assert body["aired"] is False
    assert body["station_count"] == len(in_box())  # recorded what it would have reached
    assert broadcasts(client, admin) == []
    assert alerts(client, admin)[0]["status"] == status


def test_cancel_stops_the_running_broadcast(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    aired = ok(send(client, auto_token, flood_alert("LA-2", polygon=box_polygon())), 202)
    cancel = ok(send_about(client, auto_token, "LA-2", "Cancel", with_info=False), 202)
    assert cancel["stopped_broadcasts"] == [aired["broadcast_id"]]
    broadcast = ok(client.get(f"/api/v1/broadcasts/{aired['broadcast_id']}", headers=admin))
    assert broadcast["status"] == "stopped"
    first = ok(client.get(f"/api/v1/alerts/{aired['alert_id']}", headers=admin))
    assert first["outcome"] == "cancelled"


def test_update_replaces_the_running_broadcast(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    aired = ok(send(client, auto_token, flood_alert("LA-3", polygon=box_polygon())), 202)
    update = ok(
        send_about(client, auto_token, "LA-3", "Update", geocode="phuong-3", risk_level=4), 202
    )
    assert update["stopped_broadcasts"] == [aired["broadcast_id"]]
    assert update["aired"] is True
    new = ok(client.get(f"/api/v1/broadcasts/{update['broadcast_id']}", headers=admin))
    assert new["status"] == "active"
    assert new["repeat"] == 3
    old = ok(client.get(f"/api/v1/broadcasts/{aired['broadcast_id']}", headers=admin))
    assert old["status"] == "stopped"


def test_expired_alert_is_refused_and_recorded(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    response = send(
        client,
        auto_token,
        flood_alert("LA-CU", polygon=box_polygon(), sent=past, expires=past),
    )
    assert response.status_code == 422
    assert response.json()["message_vi"] == "Bản tin cảnh báo đã hết hiệu lực"
    assert broadcasts(client, admin) == []
    assert alerts(client, admin)[0]["outcome"] == "refused"


@pytest.mark.parametrize(
    ("token", "body", "code"),
    [
        (None, flood_alert("X1", polygon=box_polygon()), 401),
        ("cap_not-a-real-token", flood_alert("X2", polygon=box_polygon()), 401),
        ("AUTO", b"<alert>not cap</alert>", 422),
        ("AUTO", flood_alert("X3", polygon=box_polygon()).replace(b"Severe", b"Terrible"), 422),
        ("AUTO", b"<?xml version='1.0'?><not-closed", 422),
        (
            "AUTO",
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>',
            422,
        ),
        ("AUTO", flood_alert("X4", polygon="10.5,106.4 10.6,106.4 10.5,106.4"), 422),
    ],
    ids=["no-token", "bad-token", "not-cap", "schema", "not-xml", "doctype", "bad-polygon"],
)
def test_refused_with_the_reason_recorded_nothing_airs(
    client: TestClient,
    admin: dict[str, str],
    auto_token: str,
    token: str | None,
    body: bytes,
    code: int,
) -> None:
    response = send(client, auto_token if token == "AUTO" else token, body)
    assert response.status_code == code, response.text
    assert response.json()["message_vi"]
    assert broadcasts(client, admin) == []
    recorded = alerts(client, admin)
    assert len(recorded) == 1
    assert recorded[0]["outcome"] == "refused"
    assert recorded[0]["reason_vi"] == response.json()["message_vi"]


def test_disabled_source_is_refused(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    source = ok(client.get("/api/v1/alert-sources", headers=admin))[0]
    ok(
        client.patch(
            f"/api/v1/alert-sources/{source['id']}", json={"enabled": False}, headers=admin
        )
    )
    assert send(client, auto_token, flood_alert("X5", polygon=box_polygon())).status_code == 401


def test_duplicate_is_refused(client: TestClient, auto_token: str) -> None:
    ok(send(client, auto_token, flood_alert("LA-DUP", geocode="phuong-3")), 202)
    again = send(client, auto_token, flood_alert("LA-DUP", geocode="phuong-3"))
    assert again.status_code == 409
    assert again.json()["message_vi"]


def test_area_without_stations_is_accepted_flagged_and_the_sender_told(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    far = "21.0,105.8 21.0,105.9 21.1,105.9 21.1,105.8 21.0,105.8"  # Hà Nội
    body = ok(send(client, auto_token, flood_alert("LA-HN", polygon=far)), 202)
    assert body["outcome"] == "no_stations"
    assert body["no_stations"] is True
    assert body["aired"] is False
    assert "không có trạm" in body["message_vi"].lower()
    assert broadcasts(client, admin) == []


def test_oasis_examples(client: TestClient, admin: dict[str, str], auto_token: str) -> None:
    outcomes = {}
    for path in sorted(OASIS.glob("*.xml")):
        response = send(client, auto_token, path.read_bytes())
        outcomes[path.stem] = (response.status_code, response.json().get("outcome"))
    assert outcomes == {
        "amber_alert": (202, "no_stations"),
        "earthquake_update": (202, "no_stations"),
        "homeland_security": (202, "no_stations"),
        "severe_thunderstorm": (422, None),  # expired in 2003
    }
    assert broadcasts(client, admin) == []


def test_held_alert_waits_for_an_approver(
    client: TestClient,
    admin: dict[str, str],
    held_token: str,
    session_factory: sessionmaker[Session],
) -> None:
    body = ok(send(client, held_token, flood_alert("KTTV-1", polygon=box_polygon())), 202)
    assert body["outcome"] == "held"
    assert body["aired"] is False
    assert broadcasts(client, admin) == []
    viewer = make_user(session_factory, "xem", Role.VIEWER, ["tan-an"])
    denied = client.post(f"/api/v1/alerts/{body['alert_id']}/approve", headers=viewer)
    assert denied.status_code == 403
    approver = make_user(session_factory, "duyet", Role.APPROVER, ["tan-an"])
    approved = ok(client.post(f"/api/v1/alerts/{body['alert_id']}/approve", headers=approver))
    assert approved["outcome"] == "aired"
    assert approved["approval"] == "approved"
    assert approved["approved_by"] == "duyet"
    assert len(broadcasts(client, admin)) == 1
    again = client.post(f"/api/v1/alerts/{body['alert_id']}/approve", headers=approver)
    assert again.status_code == 409

    other = ok(send(client, held_token, flood_alert("KTTV-2", geocode="phuong-3")), 202)
    rejected = ok(client.post(f"/api/v1/alerts/{other['alert_id']}/reject", headers=approver))
    assert rejected["outcome"] == "rejected"
    assert len(broadcasts(client, admin)) == 1


def test_own_emergencies_export_as_valid_cap(
    client: TestClient, admin: dict[str, str], auto_token: str
) -> None:
    made = ok(
        client.post(
            "/api/v1/broadcasts",
            json={
                "targets": {"areas": ["phuong-3"]},
                "content": {"text": "Cảnh báo triều cường. Người dân chú ý."},
                "tier": "emergency",
                "title": "Cảnh báo triều cường",
            },
            headers=admin,
        ),
        201,
    )
    # an aired CAP alert is not re-exported as our own
    ok(send(client, auto_token, flood_alert("LA-4", geocode="phuong-3")), 202)
    single = client.get(f"/api/v1/alerts/export/{made['id']}", headers=admin)
    assert single.status_code == 200
    assert single.headers["content-type"] == "application/cap+xml"
    cap.validate(cap.parse_document(single.content))
    ok(client.post(f"/api/v1/broadcasts/{made['id']}/stop", headers=admin))
    feed = client.get("/api/v1/alerts/feed", headers=admin)
    assert feed.status_code == 200
    root = etree.fromstring(feed.content)
    embedded = root.findall(".//{urn:oasis:names:tc:emergency:cap:1.2}alert")
    assert len(embedded) == 1
    for element in embedded:
        cap.validate(cap.parse_document(etree.tostring(element)))
    parsed = cap.read(etree.tostring(embedded[0]))
    assert parsed.msg_type == "Cancel"
    assert parsed.references
    assert parsed.references[0][1] == f"broadcaster-{made['id']}"
    assert ("broadcaster:area", "phuong-3") in parsed.infos[0].areas[0].geocodes


def test_mapping_vocabulary() -> None:
    assert [RISK_LEVELS[n].colour_vi for n in range(1, 6)] == [
        "xanh dương nhạt",
        "vàng nhạt",
        "da cam",
        "đỏ",
        "tím",
    ]
    five = risk_level([("capDoRuiRoThienTai", "5")])
    assert tier_and_repeat(severity="Minor", urgency="Past", certainty="Observed", level=five) == (
        Tier.EMERGENCY,
        3,
    )
    assert risk_level([("capDoRuiRoThienTai", "9")]) is None
    assert tier_and_repeat(
        severity="Moderate", urgency="Expected", certainty="Likely", level=None
    ) == (Tier.PRIORITY, 1)
    assert tier_and_repeat(severity="Minor", urgency="Past", certainty="Observed", level=None) == (
        Tier.NORMAL,
        1,
    )


def test_an_alert_larger_than_an_anonymous_body_needs_a_token(
    client: TestClient, auto_token: str
) -> None:
    long = flood_alert("LA-DAI", geocode="phuong-3").replace(
        b"</description>", "Mực nước tiếp tục lên. ".encode() * 2000 + b"</description>"
    )
    assert 32 * 1024 < len(long) < 512 * 1024
    assert send(client, None, long).status_code == 401
    assert send(client, "cap_guess", long).status_code == 401
    assert ok(send(client, auto_token, long), 202)["aired"] is True
    too_large = long.replace(b"</description>", b"." * (600 * 1024) + b"</description>")
    refused = send(client, auto_token, too_large)
    assert refused.status_code in (413, 422)
    assert refused.json()["message_vi"]


def test_the_alerts_own_audio_resource_is_played(
    client: TestClient, admin: dict[str, str], auto_token: str, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "canh-bao.wav", sine(2.0, 660.0, 0.5))
    body = ok(
        send(client, auto_token, flood_alert("LA-AM", geocode="phuong-3", audio=wav.read_bytes())),
        202,
    )
    assert body["aired"] is True
    broadcast = ok(client.get(f"/api/v1/broadcasts/{body['broadcast_id']}", headers=admin))
    asset = ok(client.get(f"/api/v1/media/{broadcast['content']['asset_id']}", headers=admin))
    assert asset["source"] == "upload"
    assert 1500 <= asset["duration_ms"] <= 2500
    bad = flood_alert("LA-AM-2", geocode="phuong-3", audio=b"x").replace(b"eA==", b"e!!A")
    assert send(client, auto_token, bad).status_code == 422


def test_an_update_supersedes_a_held_alert(
    client: TestClient, admin: dict[str, str], held_token: str
) -> None:
    first = ok(send(client, held_token, flood_alert("KTTV-3", geocode="phuong-3")), 202)
    update = ok(send_about(client, held_token, "KTTV-3", "Update", geocode="phuong-1"), 202)
    assert update["outcome"] == "held"
    assert ok(client.get(f"/api/v1/alerts/{first['alert_id']}", headers=admin))["outcome"] == (
        "cancelled"
    )
    assert (
        client.post(f"/api/v1/alerts/{first['alert_id']}/approve", headers=admin).status_code == 409
    )
    assert broadcasts(client, admin) == []
