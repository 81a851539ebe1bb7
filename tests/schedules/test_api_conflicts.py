"""Conflicts (which rule beat which, shifted or dropped, on how many stations, in the
caller's scope) and previews (what a rule would do before it is saved)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from stations.models import Area, Station
from tests.api import make_user, ok
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    daily,
    field_of,
    hhmm,
    make_asset,
    playlist,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")
DAY = dt.date(2026, 11, 26)


def _stations_of(factory: sessionmaker[Session], code: str) -> int:
    with factory() as session:
        area = session.scalar(select(Area.id).where(Area.code == code))
        children = select(Area.id).where(Area.parent_id == area)
        count = session.scalar(select(func.count()).where(Station.area_id.in_(children)))
        return int(count or 0)


@pytest.fixture
def clash(
    tan_an: None, client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> dict[str, Any]:
    """Three rules on Phường 2 around 06:00 (and one station of Lợi Bình Nhơn)."""
    approver = make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])
    ten = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Mười phút", minutes=10)), title="10'"
    )
    five = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Năm phút", minutes=5)), title="5'"
    )
    winner = create_rule(
        client,
        admin,
        rule_body(
            ten["id"], daily("06:00"), title="Bản tin ưu tiên", groups=["phuong-2"], tier="priority"
        ),
        approver=approver,
    )
    shifted = create_rule(
        client,
        admin,
        rule_body(
            five["id"],
            daily("06:05"),
            title="Thông báo dời được",
            stations=["p2-kp-1", "lbn-cau-tre"],
            shift_tolerance_s=3600,
        ),
        approver=approver,
    )
    dropped = create_rule(
        client,
        admin,
        rule_body(five["id"], daily("06:02"), title="Thông báo cố định", groups=["phuong-2"]),
        approver=approver,
    )
    return {"winner": winner, "shifted": shifted, "dropped": dropped, "five": five, "ten": ten}


def test_conflicts_report(
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
    clash: dict[str, Any],
) -> None:
    report = ok(client.get(f"/api/v1/schedules/conflicts?date={DAY}", headers=admin))
    assert report["date"] == DAY.isoformat()
    assert report["total"] == 2
    dropped, shifted = report["items"]
    p2_count = _stations_of(session_factory, "phuong-2")
    assert dropped["rule_id"] == clash["dropped"]["id"]
    assert dropped["outcome"] == "dropped"
    assert dropped["winner_rule_id"] == clash["winner"]["id"]
    assert dropped["winner_rule_title"] == "Bản tin ưu tiên"
    assert dropped["station_count"] == p2_count
    assert "p2-kp-1" in dropped["stations"]
    assert dropped["new_start"] is None
    assert "priority 5" in dropped["reason"]
    assert shifted["rule_id"] == clash["shifted"]["id"]
    assert shifted["outcome"] == "shifted"
    assert shifted["station_count"] == 1
    assert shifted["stations"] == ["p2-kp-1"]
    assert hhmm(shifted["new_start"]) == "06:10"
    assert shifted["reason_vi"]
    assert report["skipped_rules"] == []
    # the playlists agree
    assert [hhmm(i["start_at"]) for i in playlist(client, admin, "p2-kp-1", DAY)] == [
        "06:00",
        "06:10",
    ]
    assert [hhmm(i["start_at"]) for i in playlist(client, admin, "lbn-cau-tre", DAY)] == ["06:05"]
    # scope: Lợi Bình Nhơn has no clash; Phường 2 sees both
    lbn = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    p2 = make_user(session_factory, "op-p2", Role.OPERATOR, ["phuong-2"])
    assert ok(client.get(f"/api/v1/schedules/conflicts?date={DAY}", headers=lbn))["total"] == 0
    assert ok(client.get(f"/api/v1/schedules/conflicts?date={DAY}", headers=p2))["total"] == 2
    assert (
        client.get("/api/v1/schedules/conflicts?date=yesterday", headers=admin).status_code == 422
    )


def test_preview(
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
    clash: dict[str, Any],
) -> None:
    url = f"/api/v1/schedules/preview?from={DAY}&to={DAY + dt.timedelta(days=1)}"
    # a normal rule at 06:03 on p2-kp-1, may move up to an hour: it suffers
    body = rule_body(
        clash["five"]["id"], daily("06:03"), stations=["p2-kp-1"], shift_tolerance_s=3600
    )
    before = ok(client.get("/api/v1/schedules/rules", headers=admin))["total"]
    result = ok(client.post(url, json=body, headers=admin))
    assert [hhmm(o) for o in result["occurrences"]] == ["06:03", "06:03"]
    assert result["station_count"] == 1
    assert result["duration_ms"] == 5 * 60_000
    assert [
        (hhmm(p["start_at"]), p["shifted"], p["station_count"]) for p in result["placements"]
    ] == [
        ("06:15", True, 1),
        ("06:15", True, 1),
    ]
    assert {c["winner_rule_id"] for c in result["suffered"]} == {clash["winner"]["id"]}
    assert all(c["outcome"] == "shifted" for c in result["suffered"])
    assert result["caused"] == []
    assert (
        ok(client.get("/api/v1/schedules/rules", headers=admin))["total"] == before
    )  # nothing saved
    # an emergency at 06:00 on p2-kp-1 displaces the priority bulletin there
    body = rule_body(clash["five"]["id"], daily("06:00"), stations=["p2-kp-1"], tier="emergency")
    result = ok(client.post(url, json=body, headers=admin))
    assert result["suffered"] == []
    caused = {(c["rule_id"], c["outcome"], c["station_count"]) for c in result["caused"]}
    assert (clash["winner"]["id"], "dropped", 1) in caused
    # editing an existing rule: previewing it at another time frees its old slot
    edit = rule_body(clash["five"]["id"], daily("07:00"), groups=["phuong-2"])
    result = ok(client.post(f"{url}&rule_id={clash['dropped']['id']}", json=edit, headers=admin))
    assert result["suffered"] == []
    assert result["caused"] == []
    assert {hhmm(p["start_at"]) for p in result["placements"]} == {"07:00"}
    # bad input is refused exactly as on create
    bad = rule_body(
        clash["five"]["id"], {"when": {"kind": "rrule", "rule": "FREQ=DAILY;BYHOUR=99"}}
    )
    assert field_of(client.post(url, json=bad, headers=admin)) == [
        "body",
        "recurrence",
        "when",
        "rule",
    ]
    backwards = f"/api/v1/schedules/preview?from={DAY}&to={DAY - dt.timedelta(days=1)}"
    assert field_of(
        client.post(backwards, json=rule_body(clash["five"]["id"], daily("06:00")), headers=admin)
    ) == ["query", "to"]
