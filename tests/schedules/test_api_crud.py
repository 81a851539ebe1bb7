"""Stream sources, programmes and rules over the API: CRUD, lists, every bad input
(422 naming the field), deletion rules, the plan-changed signal and the audit trail."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kernel import signals
from kernel.audit import AuditEntry
from kernel.security import Role
from tests.api import make_user, ok
from tests.schedules.api_helpers import (
    MINUTE,
    asset_item,
    create_programme,
    create_rule,
    create_source,
    daily,
    field_of,
    gap_item,
    make_asset,
    relay_item,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")


def _generation(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return signals.current(session)[0]


def test_stream_source_crud(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    fallback = make_asset(session_factory, "Xin lỗi quý vị")
    created = create_source(
        client, admin, "Đài Long An", kind="provincial", fallback_asset_id=fallback
    )
    assert created["kind"] == "provincial"
    assert created["owner_area_code"] is None
    assert created["fallback_playable"] is True
    assert created["fallback_title"] == "Xin lỗi quý vị"
    create_source(client, admin, "VOV1")
    listed = ok(client.get("/api/v1/stream-sources?q=long an", headers=admin))
    assert listed["total"] == 1
    assert listed["items"][0]["id"] == created["id"]
    page = ok(client.get("/api/v1/stream-sources?limit=1&offset=1", headers=admin))
    assert page["total"] == 2
    assert len(page["items"]) == 1
    assert ok(client.get("/api/v1/stream-sources?kind=national", headers=admin))["total"] == 1
    changed = ok(
        client.patch(
            f"/api/v1/stream-sources/{created['id']}",
            json={"url": "https://radio.longan.example/live", "enabled": False},
            headers=admin,
        )
    )
    assert changed["url"] == "https://radio.longan.example/live"
    assert changed["enabled"] is False
    assert ok(client.get("/api/v1/stream-sources?enabled=false", headers=admin))["total"] == 1
    # bad input: 422 naming the field
    assert field_of(
        client.post(
            "/api/v1/stream-sources",
            json={"name": "x", "url": "ftp://nope", "kind": "city"},
            headers=admin,
        )
    ) == ["body", "url"]
    unapproved = make_asset(session_factory, "Nháp", approved=False)
    for asset_id in (unapproved, 99_999):
        response = client.post(
            "/api/v1/stream-sources",
            json={
                "name": "x",
                "url": "http://a.b/c",
                "kind": "city",
                "fallback_asset_id": asset_id,
            },
            headers=admin,
        )
        assert field_of(response) == ["body", "fallback_asset_id"]
    # a source a programme relays cannot be deleted
    programme = create_programme(client, admin, relay_item(created["id"], 30))
    blocked = client.delete(f"/api/v1/stream-sources/{created['id']}", headers=admin)
    assert blocked.status_code == 409
    assert str(programme["id"]) in blocked.json()["detail"]
    ok(client.delete(f"/api/v1/programmes/{programme['id']}", headers=admin), 204)
    ok(client.delete(f"/api/v1/stream-sources/{created['id']}", headers=admin), 204)
    assert client.get(f"/api/v1/stream-sources/{created['id']}", headers=admin).status_code == 404


def test_programme_crud_and_bad_items(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    news = make_asset(session_factory, "Bản tin sáng", minutes=4)
    jingle = make_asset(session_factory, "Nhạc hiệu", minutes=0.25, category="jingle")
    vov = create_source(client, admin, "VOV1")
    programme = create_programme(
        client,
        admin,
        {"kind": "jingle", "asset_id": jingle},
        asset_item(news, title="Tin trong ngày"),
        gap_item(2),
        relay_item(vov["id"], 10),
        title="Chương trình sáng",
    )
    assert [i["kind"] for i in programme["items"]] == ["jingle", "asset", "gap", "relay"]
    assert programme["duration_ms"] == 15_000 + 4 * MINUTE + 2_000 + 10 * MINUTE
    assert programme["items"][1]["title"] == "Tin trong ngày"
    assert programme["items"][3]["source_name"] == "VOV1"
    assert all(i["problem"] is None for i in programme["items"])
    assert ok(client.get("/api/v1/programmes?q=chuong trinh sang", headers=admin))["total"] == 1
    renamed = ok(
        client.patch(
            f"/api/v1/programmes/{programme['id']}", json={"title": "Buổi sáng"}, headers=admin
        )
    )
    assert renamed["title"] == "Buổi sáng"
    assert len(renamed["items"]) == 4
    shorter = ok(
        client.patch(
            f"/api/v1/programmes/{programme['id']}",
            json={"items": [asset_item(news)]},
            headers=admin,
        )
    )
    assert shorter["duration_ms"] == 4 * MINUTE

    draft = make_asset(session_factory, "Chưa duyệt", approved=False)
    bad_items = {
        "missing asset": ([asset_item(99_999)], ["body", "items", 0, "asset_id"]),
        "unapproved asset": ([gap_item(1), asset_item(draft)], ["body", "items", 1, "asset_id"]),
        "unknown source": ([relay_item(99_999, 5)], ["body", "items", 0, "source_id"]),
        "only gaps": ([gap_item(5)], ["body", "items"]),
        "empty": ([], ["body", "items"]),
        "relay without duration": (
            [{"kind": "relay", "source_id": vov["id"]}],
            ["body", "items", 0, "relay", "duration_ms"],
        ),
        "too long": ([relay_item(vov["id"], 24 * 60), asset_item(news)], ["body", "items"]),
    }
    for name, (items, loc) in bad_items.items():
        response = client.post(
            "/api/v1/programmes", json={"title": name, "items": items}, headers=admin
        )
        assert field_of(response) == loc, name
    assert ok(client.get("/api/v1/programmes", headers=admin))["total"] == 1


def test_rule_crud_and_every_bad_input(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    news = make_asset(session_factory, "Bản tin", minutes=10)
    programme = create_programme(client, admin, asset_item(news))
    pid = programme["id"]
    body = rule_body(
        pid,
        daily("06:00", "18:00", skip_holidays=True),
        title="Bản tin hằng ngày",
        groups=["xa-loi-binh-nhon"],
        stations=["p2-kp-1"],
        areas=["phuong-3"],
        volume=80,
        order=2,
    )
    rule = create_rule(client, admin, body)
    assert rule["approval"] == "draft"
    assert rule["tier"] == "normal"
    assert rule["priority"] == 3
    assert rule["targets"] == {
        "stations": ["p2-kp-1"],
        "groups": ["xa-loi-binh-nhon"],
        "areas": ["phuong-3"],
    }
    with session_factory() as session:
        from stations.models import Station
        from stations.service import get_area, subtree_ids

        ids = subtree_ids(session, [get_area(session, "xa-loi-binh-nhon").id]) | subtree_ids(
            session, [get_area(session, "phuong-3").id]
        )
        expected = session.scalar(select(func.count()).where(Station.area_id.in_(ids))) + 1
    assert rule["station_count"] == expected
    assert rule["duration_ms"] == 10 * MINUTE
    assert rule["programme_title"] == programme["title"]
    assert len(rule["next_occurrences"]) == 3
    assert rule["lost_targets"] == []
    assert rule["recurrence"]["when"]["times"] == ["06:00:00", "18:00:00"]

    got = ok(client.get(f"/api/v1/schedules/rules/{rule['id']}", headers=admin))
    assert got["id"] == rule["id"]
    changed = ok(
        client.patch(
            f"/api/v1/schedules/rules/{rule['id']}",
            json={"tier": "priority", "volume": None, "enabled": False},
            headers=admin,
        )
    )
    assert changed["priority"] == 5
    assert changed["volume"] is None
    assert changed["enabled"] is False
    assert changed["targets"] == rule["targets"]
    listed = ok(client.get("/api/v1/schedules/rules?tier=priority&enabled=false", headers=admin))
    assert listed["total"] == 1
    assert ok(client.get("/api/v1/schedules/rules?approval=approved", headers=admin))["total"] == 0
    assert (
        ok(client.get(f"/api/v1/schedules/rules?programme_id={pid}", headers=admin))["total"] == 1
    )

    long_asset = make_asset(session_factory, "Dài", minutes=40)
    long_programme = create_programme(client, admin, asset_item(long_asset), title="Dài")
    bad = {
        "unknown programme": (rule_body(99_999, daily("06:00")), ["body", "programme_id"]),
        "invalid RRULE": (
            rule_body(pid, {"when": {"kind": "rrule", "rule": "FREQ=SOMETIMES;BYHOUR=5"}}),
            ["body", "recurrence", "when", "rule"],
        ),
        "window ends before it starts": (
            rule_body(pid, daily("06:00", valid_from="2026-12-01", valid_until="2026-11-01")),
            ["body", "recurrence", "valid_until"],
        ),
        "bad time": (rule_body(pid, daily("25:00")), ["body", "recurrence", "when", "times", 0]),
        "unknown group": (
            rule_body(pid, daily("06:00"), groups=["khong-co"]),
            ["body", "targets", "groups", 0],
        ),
        "unknown station": (
            rule_body(pid, daily("06:00"), groups=["all"], stations=["p1-kp-1", "nope"]),
            ["body", "targets", "stations", 1],
        ),
        "no targets": (rule_body(pid, daily("06:00"), groups=[]), ["body", "targets"]),
        "longer than its slot": (
            rule_body(long_programme["id"], daily("06:00"), slot_s=30 * 60),
            ["body", "slot_s"],
        ),
        "unknown tier": (rule_body(pid, daily("06:00"), tier="urgent"), ["body", "tier"]),
    }
    for name, (payload, loc) in bad.items():
        response = client.post("/api/v1/schedules/rules", json=payload, headers=admin)
        assert field_of(response) == loc, name
        assert response.json()["detail"][0]["msg"], name
    # "live" is a tier (an operator on the air), but not one a schedule rule may have
    for attempt in (
        client.post(
            "/api/v1/schedules/rules",
            json=rule_body(pid, daily("06:00"), tier="live"),
            headers=admin,
        ),
        client.patch(f"/api/v1/schedules/rules/{rule['id']}", json={"tier": "live"}, headers=admin),
    ):
        assert field_of(attempt) == ["body", "tier"]
        assert "live" in attempt.json()["detail"][0]["msg"]
        assert "Trực tiếp" in attempt.json()["message_vi"]
    # an area whose stations are all switched off: the targets resolve to no station
    with session_factory() as session:
        from stations.models import Area, Station

        area_id = session.scalar(select(Area.id).where(Area.code == "phuong-1"))
        session.execute(
            Station.__table__.update()
            .where(Station.area_id.in_(select(Area.id).where(Area.parent_id == area_id)))
            .values(enabled=False)
        )
        session.commit()
    response = client.post(
        "/api/v1/schedules/rules",
        json=rule_body(pid, daily("06:00"), areas=["phuong-1"]),
        headers=admin,
    )
    assert field_of(response) == ["body", "targets"]
    assert "no (enabled) station" in response.json()["detail"][0]["msg"]
    # an asset un-approved after the programme was saved: the rule cannot be saved
    with session_factory() as session:
        from audio_library.models import MediaAsset
        from kernel.approval import Approval

        session.get(MediaAsset, news).approval = Approval.REJECTED  # type: ignore[union-attr]
        session.commit()
    response = client.post(
        "/api/v1/schedules/rules", json=rule_body(pid, daily("07:00")), headers=admin
    )
    assert field_of(response) == ["body", "programme", "items", 0, "media"]

    ok(client.delete(f"/api/v1/schedules/rules/{rule['id']}", headers=admin), 204)
    assert client.get(f"/api/v1/schedules/rules/{rule['id']}", headers=admin).status_code == 404
    ok(client.delete(f"/api/v1/programmes/{pid}", headers=admin), 204)


def test_programme_in_use_and_deleted_targets(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    programme = create_programme(client, admin, asset_item(make_asset(session_factory)))
    ok(
        client.post(
            "/api/v1/groups",
            json={"gid": "hoi-nong-dan", "name": "Hội nông dân", "stations": ["lbn-cau-tre"]},
            headers=admin,
        ),
        201,
    )
    rule = create_rule(
        client,
        admin,
        rule_body(programme["id"], daily("07:00"), groups=["hoi-nong-dan"], stations=["p2-kp-1"]),
    )
    blocked = client.delete(f"/api/v1/programmes/{programme['id']}", headers=admin)
    assert blocked.status_code == 409
    assert f"#{rule['id']}" in blocked.json()["detail"]
    # deleting a group (or station) a rule targets: the association goes, the rule says so
    ok(client.delete("/api/v1/groups/hoi-nong-dan", headers=admin), 204)
    ok(client.delete("/api/v1/stations/p2-kp-1", headers=admin), 204)
    after = ok(client.get(f"/api/v1/schedules/rules/{rule['id']}", headers=admin))
    assert after["targets"] == {"stations": [], "groups": [], "areas": []}
    assert sorted(after["lost_targets"]) == ["group:hoi-nong-dan", "station:p2-kp-1"]
    assert after["station_count"] == 0
    # approved, it is reported as skipped (nowhere to play) rather than silently gone
    approver = make_user(session_factory, "duyet", Role.APPROVER, ["tan-an"])
    with session_factory() as session:
        from schedules.models import ScheduleRule

        session.get(ScheduleRule, rule["id"]).approval = "approved"  # type: ignore[union-attr]
        session.commit()
    report = ok(client.get("/api/v1/schedules/conflicts?date=2026-11-26", headers=approver))
    assert [(s["rule_id"], s["field"]) for s in report["skipped_rules"]] == [
        (rule["id"], "targets")
    ]


def test_mutations_bump_plan_signal_and_audit(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    approver = make_user(session_factory, "duyet", Role.APPROVER, ["tan-an"])
    asset = make_asset(session_factory)
    steps = []

    def step(name: str) -> None:
        steps.append((name, _generation(session_factory)))

    step("start")
    source = create_source(client, admin)
    step("source.create")
    ok(client.patch(f"/api/v1/stream-sources/{source['id']}", json={"name": "VOV"}, headers=admin))
    step("source.update")
    programme = create_programme(client, admin, asset_item(asset), relay_item(source["id"], 1))
    step("programme.create")
    ok(client.patch(f"/api/v1/programmes/{programme['id']}", json={"title": "X"}, headers=admin))
    step("programme.update")
    rule = create_rule(client, admin, rule_body(programme["id"], daily("06:00")))
    step("rule.create")
    ok(client.patch(f"/api/v1/schedules/rules/{rule['id']}", json={"order": 4}, headers=admin))
    step("rule.update")
    ok(client.post(f"/api/v1/schedules/rules/{rule['id']}/approve", headers=approver))
    step("rule.approve")
    ok(client.post(f"/api/v1/schedules/rules/{rule['id']}/reject", headers=approver))
    step("rule.reject")
    ok(client.delete(f"/api/v1/schedules/rules/{rule['id']}", headers=admin), 204)
    step("rule.delete")
    ok(client.delete(f"/api/v1/programmes/{programme['id']}", headers=admin), 204)
    step("programme.delete")
    ok(client.delete(f"/api/v1/stream-sources/{source['id']}", headers=admin), 204)
    step("source.delete")
    generations = [g for _, g in steps]
    assert all(b > a for a, b in itertools.pairwise(generations)), steps
    with session_factory() as session:
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target_type.in_(["stream_source", "programme", "schedule_rule"]))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == [
        "stream_source.create",
        "stream_source.update",
        "programme.create",
        "programme.update",
        "schedule.create",
        "schedule.update",
        "schedule.approve",
        "schedule.reject",
        "schedule.delete",
        "programme.delete",
        "stream_source.delete",
    ]


@pytest.mark.calendar
def test_media_delete_refused_while_a_future_rule_uses_it(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    used = make_asset(session_factory, "Dùng trong lịch")
    fallback = make_asset(session_factory, "Dự phòng")
    past = make_asset(session_factory, "Lịch đã qua")
    source = create_source(client, admin, "Đài thành phố", fallback_asset_id=fallback)
    programme = create_programme(client, admin, asset_item(used), title="Sáng")
    create_rule(client, admin, rule_body(programme["id"], daily("06:00"), title="Bản tin sáng"))
    old = create_programme(client, admin, asset_item(past), title="Cũ")
    yesterday = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    create_rule(
        client,
        admin,
        rule_body(
            old["id"],
            daily("06:00", valid_from="2025-01-01", valid_until=yesterday),
            title="Đã hết hạn",
        ),
    )
    blocked = client.delete(f"/api/v1/media/{used}", headers=admin)
    assert blocked.status_code == 409
    assert "Bản tin sáng" in blocked.json()["detail"]
    blocked = client.delete(f"/api/v1/media/{fallback}", headers=admin)
    assert blocked.status_code == 409
    assert source["name"] in blocked.json()["detail"]
    # only rules already over use it: deleting is allowed; the item loses its asset
    ok(client.delete(f"/api/v1/media/{past}", headers=admin), 204)
    after = ok(client.get(f"/api/v1/programmes/{old['id']}", headers=admin))
    assert after["items"][0]["asset_id"] is None
    assert after["items"][0]["problem"] == "the media asset was deleted"
