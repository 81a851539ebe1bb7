"""Issue 16: the 2025 reorganisation of Tân An applied as one operation, history kept."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import AssetSource, AssetStatus, MediaAsset
from broadcaster.alarms.models import AlarmSubscription, Channel
from broadcaster.alarms.rules import Severity
from broadcaster.dispatch import reports
from broadcaster.dispatch.models import Play, PlayStatus
from broadcaster.reorg import service as reorg
from broadcaster.reorg import tan_an as tan_an_2025
from kernel.approval import Approval
from kernel.audit import AuditEntry
from kernel.changes import Actor, commit_change
from kernel.security import Role
from kernel.text import fold
from kernel.tiers import Tier
from schedules import seed
from schedules.models import Programme, ScheduleRule, rule_areas, rule_groups
from stations import tan_an
from stations.models import Area, AreaLevel, Group, Reorganisation, Station
from tests.api import make_user, ok
from tests.schedules.api_helpers import playlist

DAY = dt.date(2026, 11, 26)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
#: one played 15-minute relay (the report test's plays, one a station a day)
PLAY: dict[str, Any] = {
    "source": "schedule",
    "title": "VOV1",
    "kind": "relay",
    "priority": 5,
    "expected_ms": 900_000,
    "played_ms": 900_000,
    "status": PlayStatus.PLAYED,
}
OLD_TO_NEW = {old: new for new, (_, olds) in tan_an_2025.WARDS.items() for old in olds}


def _units(session: Session) -> dict[str, str | None]:
    codes = dict(session.execute(select(Area.id, Area.code)).all())
    sids = dict(session.execute(select(Station.id, Station.sid)).all())
    return {
        sids[sid]: (codes[unit] if unit else None)
        for sid, unit in reorg.unit_of_station(session).items()
    }


def apply_plan(session: Session, plan: reorg.Plan) -> dict[str, Any]:
    """Apply `plan` now and commit it through the change helper; answer its effect."""
    record, effect = reorg.apply(session, plan, by="admin")
    commit_change(
        session,
        Actor.system("admin"),
        "area.reorganise",
        "area_reorganisation",
        [str(record.id)],
        after=effect.as_dict(),
    )
    return effect.as_dict()


def test_codes_come_from_the_package() -> None:
    plan = tan_an_2025.plan()
    codes = {u.code: (u.name, u.stat_code) for u in plan.create}
    assert codes == {
        "tay-ninh": ("Tỉnh Tây Ninh", "80"),
        "tn-phuong-long-an": ("Phường Long An", "27694"),
        "tn-phuong-tan-an": ("Phường Tân An", "27712"),
        "tn-phuong-khanh-hau": ("Phường Khánh Hậu", "27715"),
    }
    # every one of the registry's 14 wards and communes goes somewhere
    assert set(OLD_TO_NEW) == {u.code for u in tan_an.UNITS}


@pytest.mark.usefixtures("tan_an")
def test_the_real_tan_an_change(
    session_factory: sessionmaker[Session], app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    seed.load(session_factory, app.state.media_library)
    operator = make_user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    with session_factory() as session:
        before = _units(session)
        lbn = {sid for sid, unit in before.items() if unit == "xa-loi-binh-nhon"}
        kh = {
            sid for sid, unit in before.items() if OLD_TO_NEW[unit or ""] == "tn-phuong-khanh-hau"
        }
        # a rule targeting an old commune by area (the seed's target its groups)
        rule = session.scalars(
            select(ScheduleRule).where(ScheduleRule.key.like("%xa-binh-tam"))
        ).first()
        assert rule is not None
        session.execute(
            rule_areas.insert().values(rule_id=rule.id, area_id=tan_an_area(session, "xa-binh-tam"))
        )
        # a technician told of the old commune's alarms
        technician = AlarmSubscription(
            name="Kỹ thuật Lợi Bình Nhơn",
            channel=Channel.EMAIL,
            target="kythuat-lbn@example.vn",
            area_id=tan_an_area(session, "xa-loi-binh-nhon"),
            min_severity=Severity.WARNING,
        )
        session.add(technician)
        session.commit()
        technician_id = technician.id
    seen = {
        s["sid"] for s in ok(client.get("/api/v1/stations?limit=200", headers=operator))["items"]
    }
    assert seen == lbn
    playlists = {sid: playlist(client, admin, sid, DAY) for sid in sorted(before)}

    plan = tan_an_2025.plan(end_rules=tan_an_2025.CITY_RULES)
    with session_factory() as session:
        preview = reorg.preview(session, plan, by="admin")
        assert session.scalar(select(func.count()).select_from(Reorganisation)) == 0
        assert set(preview["stations"]) == set(before)
        assert preview["accounts"] == ["lbn"]
        assert preview["subscriptions"] == ["Kỹ thuật Lợi Bình Nhơn"]
        assert set(preview["retired"]) == set(OLD_TO_NEW) | {"tan-an"}
        assert "tan-an:chain:morning:tan-an" in preview["rules"]
        effect = apply_plan(session, plan)
        assert effect == preview
    with session_factory() as session:
        after = _units(session)
        # every station's ward is right
        assert after == {sid: OLD_TO_NEW[unit or ""] for sid, unit in before.items()}
        # the technician is now told of the new ward's (the same stations and more)
        moved = session.get_one(AlarmSubscription, technician_id)
        assert moved.area_id == tan_an_area(session, "tn-phuong-khanh-hau")
        wards = session.scalars(
            select(Area).where(Area.valid_to.is_(None), Area.level == AreaLevel.WARD)
        )
        assert {(a.code, a.parent.code if a.parent else None) for a in wards} == {
            (code, "tay-ninh") for code in tan_an_2025.WARDS
        }
        # the old units' groups still reach the same stations, no longer automatic
        group = session.scalar(select(Group).where(Group.gid == "xa-loi-binh-nhon"))
        assert group is not None
        assert not group.auto
        assert session.scalar(select(AuditEntry.action).order_by(AuditEntry.id.desc())) == (
            "area.reorganise"
        )
    # the operator of former Xã Lợi Bình Nhơn is now scoped to Phường Khánh Hậu
    seen = {
        s["sid"] for s in ok(client.get("/api/v1/stations?limit=200", headers=operator))["items"]
    }
    assert seen == kh
    assert lbn < seen
    # next day's playlists: unchanged except for the chain's city step
    city_url = "tan-an.mp3"
    for sid, items in playlists.items():
        expected = [i for i in items if not i.get("url", "").endswith(city_url)]
        assert len(expected) == len(items) - 2, sid
        got = playlist(client, admin, sid, DAY)
        assert [(i["start_at"], i.get("url")) for i in got] == [
            (i["start_at"], i.get("url")) for i in expected
        ], sid

    # undo only before the effective date
    with session_factory() as session, pytest.raises(reorg.InvalidInput):
        reorg.undo(session, 1, today=DAY)


def tan_an_area(session: Session, code: str) -> int:
    found = session.scalar(select(Area.id).where(Area.code == code))
    assert found is not None
    return found


@pytest.mark.usefixtures("tan_an")
def test_a_june_july_report_reads_by_old_and_new_units(
    session_factory: sessionmaker[Session], client: TestClient, admin: dict[str, str]
) -> None:
    with session_factory() as session:
        stations = list(session.scalars(select(Station).order_by(Station.sid)))
        for day in (dt.date(2025, 6, 30), dt.date(2025, 7, 1), dt.date(2025, 7, 15)):
            for station in stations:
                start = dt.datetime.combine(day, dt.time(5), TZ)
                PLAY["planned_end"] = start + dt.timedelta(minutes=15)
                session.add(Play(station_id=station.id, **PLAY, planned_start=start))
        session.commit()
        apply_plan(session, tan_an_2025.plan())
    with session_factory() as session:
        query = reports.play_query(
            session,
            None,
            since=dt.datetime(2025, 6, 1, tzinfo=TZ),
            until=dt.datetime(2025, 8, 1, tzinfo=TZ),
        )
        history = reorg.UnitHistory(session)
        old = reports.play_totals(session, query, TZ, unit_at=history.as_of(dt.date(2025, 6, 30)))
        new = reports.play_totals(session, query, TZ, unit_at=history.as_of(dt.date(2025, 7, 1)))
        then = reports.play_totals(session, query, TZ, unit_at=history.at)
    assert {r.key for r in old} == set(OLD_TO_NEW)
    assert {r.key for r in new} == set(tan_an_2025.WARDS)
    assert {r.key for r in then if r.date < dt.date(2025, 7, 1)} == set(OLD_TO_NEW)
    assert {r.key for r in then if r.date >= dt.date(2025, 7, 1)} == set(tan_an_2025.WARDS)
    for rows in (old, new, then):
        assert sum(r.plays for r in rows) == 3 * 108
        assert round(sum(r.minutes for r in rows), 2) == 3 * 108 * 15
    # the same through the API
    window = "from=2025-06-01T00:00:00%2B07:00&to=2025-08-01T00:00:00%2B07:00"
    for units, keys in (("2025-06-30", set(OLD_TO_NEW)), ("today", set(tan_an_2025.WARDS))):
        rows = ok(client.get(f"/api/v1/playlog/totals?{window}&units={units}", headers=admin))
        assert {r["key"] for r in rows} == keys
        assert sum(r["plays"] for r in rows) == 3 * 108


@pytest.mark.usefixtures("tan_an")
def test_bad_plans_are_refused_with_every_error(session_factory: sessionmaker[Session]) -> None:
    bad = reorg.Plan(
        name="bad",
        effective=dt.date(2030, 1, 1),
        steps=[
            reorg.Step(kind="merge", sources=["xa-khong-co"], into="phuong-1"),
            reorg.Step(kind="merge", sources=["phuong-1"], into="phuong-9"),
            reorg.Step(kind="dissolve", unit="phuong-2"),
            reorg.Step(kind="move", hamlets=["p3-kp-1"], into="p3-kp-2"),
        ],
    )
    with session_factory() as session:
        with pytest.raises(reorg.ReorgRefused) as refused:
            reorg.apply(session, bad, by="admin")
        text = " | ".join(e for e, _ in refused.value.errors)
        assert "'xa-khong-co'" in text
        assert "'phuong-9'" in text
        assert "without an area" in text
        assert "cannot sit under" in text
        assert refused.value.message_vi
        assert session.scalar(select(func.count()).select_from(Reorganisation)) == 0
        cycle = reorg.Plan(
            name="cycle",
            effective=dt.date(2030, 1, 1),
            create=[reorg.NewUnit(code="x", name="X", level=AreaLevel.CITY, parent="tan-an")],
            steps=[reorg.Step(kind="dissolve", unit="tan-an", into="x")],
        )
        with pytest.raises(reorg.ReorgRefused) as refused:
            reorg.apply(session, cycle, by="admin")
        assert any("cycle" in e or "cannot sit" in e for e, _ in refused.value.errors)
        # the post-2025 codes come from the national list, in a plan as in the registry
        codes = reorg.Plan(
            name="codes",
            effective=dt.date(2030, 1, 1),
            create=[
                reorg.NewUnit(
                    code="phuong-moi", name="Phường Mới", level=AreaLevel.WARD, stat_code="99999"
                )
            ],
            steps=[reorg.Step(kind="rename", unit="phuong-7", name="Phường Bảy", stat_code="7x")],
        )
        with pytest.raises(reorg.ReorgRefused) as refused:
            reorg.apply(session, codes, by="admin")
        vietnamese = [vi for _, vi in refused.value.errors]
        assert "Mã thống kê 99999 không có trong danh mục phường/xã hiện hành" in vietnamese
        assert "Mã thống kê 7x không có trong danh mục phường/xã hiện hành" in vietnamese
        assert session.scalar(select(Area.id).where(Area.code == "phuong-moi")) is None


@pytest.mark.usefixtures("tan_an")
def test_same_date_overlap_refused_and_undo_before_effective(
    session_factory: sessionmaker[Session],
) -> None:
    later = dt.date(2030, 1, 1)
    rename = reorg.Plan(
        name="rename",
        effective=later,
        steps=[reorg.Step(kind="rename", unit="phuong-7", name="Phường Bảy")],
    )
    merge = reorg.Plan(
        name="merge",
        effective=later,
        steps=[
            reorg.Step(kind="merge", sources=["xa-binh-tam"], into="phuong-7"),
            reorg.Step(kind="move", hamlets=["p1-kp-1"], into="phuong-7"),
        ],
    )
    with session_factory() as session:
        before = _units(session)
        apply_plan(session, merge)
        with pytest.raises(reorg.ReorgRefused) as refused:
            reorg.apply(session, rename, by="admin")
        assert "merge" in str(refused.value)
        moved = _units(session)
        assert moved["p1-kp-1"] == "phuong-7"
        assert all(moved[s] == "phuong-7" for s, u in before.items() if u == "xa-binh-tam")
        record = session.scalar(select(Reorganisation))
        assert record is not None
        reorg.undo(session, record.id, today=dt.date(2029, 12, 31))
        commit_change(session, Actor.system("admin"), "area.reorganise.undo", "area_reorganisation")
    with session_factory() as session:
        assert _units(session) == before
        bt = session.scalar(select(Area).where(Area.code == "xa-binh-tam"))
        assert bt is not None
        assert bt.valid_to is None
        assert session.scalar(select(Group.auto).where(Group.gid == "xa-binh-tam")) is True
        # undone: the date is free again
        apply_plan(session, rename)


@pytest.mark.usefixtures("tan_an")
def test_the_json_api(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    body = {
        "name": "Gộp Bình Tâm",
        "effective": "2099-01-01",
        "steps": [{"kind": "merge", "sources": ["xa-binh-tam"], "into": "phuong-7"}],
    }
    operator = make_user(session_factory, "op7", Role.OPERATOR, ["phuong-7"])
    denied = client.post("/api/v1/areas/reorganisations/preview", json=body, headers=operator)
    assert denied.status_code == 403
    preview = ok(client.post("/api/v1/areas/reorganisations/preview", json=body, headers=admin))
    assert preview["retired"] == ["xa-binh-tam"]
    assert ok(client.get("/api/v1/areas/reorganisations", headers=admin)) == []
    bad = body | {"steps": [{"kind": "merge", "sources": ["xa-khong-co"], "into": "phuong-9"}]}
    refused = client.post("/api/v1/areas/reorganisations", json=bad, headers=admin)
    assert refused.status_code == 422
    assert "xa-khong-co" in refused.text
    assert "phuong-9" in refused.text
    # a future date: scheduled (the worker applies it on the day), nothing moves yet
    scheduled = ok(client.post("/api/v1/areas/reorganisations", json=body, headers=admin), 201)
    assert scheduled["status"] == "scheduled"
    assert scheduled["effect"] == preview
    again = client.post("/api/v1/areas/reorganisations", json=body, headers=admin)
    assert again.status_code == 422
    listed = ok(client.get("/api/v1/areas?level=commune&limit=100", headers=admin))["items"]
    assert "xa-binh-tam" in {a["code"] for a in listed}
    cancelled = ok(
        client.post(f"/api/v1/areas/reorganisations/{scheduled['id']}/undo", headers=admin)
    )
    assert cancelled["status"] == "undone"
    # a date that has come: applied at once
    applied = ok(
        client.post(
            "/api/v1/areas/reorganisations", json=body | {"effective": "2026-01-01"}, headers=admin
        ),
        201,
    )
    assert applied["status"] == "applied"
    assert applied["effect"] == preview
    listed = ok(client.get("/api/v1/areas?level=commune&limit=100", headers=admin))["items"]
    assert "xa-binh-tam" not in {a["code"] for a in listed}
    listed = ok(client.get("/api/v1/areas?level=commune&retired=true", headers=admin))["items"]
    assert "xa-binh-tam" in {a["code"] for a in listed}
    assert {a["valid_to"] for a in listed if a["code"] == "xa-binh-tam"} == {"2026-01-01"}
    # its date has come: it can no longer be undone
    late = client.post(f"/api/v1/areas/reorganisations/{applied['id']}/undo", headers=admin)
    assert late.status_code == 422
    assert late.json()["message_vi"]


def make_asset(session: Session, title: str, owner: int | None, approval: Approval) -> int:
    """A ready media asset of the library owned by area `owner`."""
    asset = MediaAsset(
        title=title,
        title_folded=fold(title),
        category="tin-tuc",
        source=AssetSource.UPLOAD,
        status=AssetStatus.READY,
        approval=approval,
        owner_area_id=owner,
        created_by="canbo",
    )
    session.add(asset)
    session.flush()
    return asset.id


def make_draft_rule(
    session: Session,
    title: str,
    owner: int | None,
    *,
    areas: tuple[int, ...] = (),
    groups: tuple[int, ...] = (),
) -> int:
    """A schedule rule waiting for approval, owned by `owner`, aimed at `areas`/`groups`."""
    programme = Programme(title=title, title_folded=fold(title), created_by="canbo")
    session.add(programme)
    session.flush()
    rule = ScheduleRule(
        title=title,
        title_folded=fold(title),
        programme_id=programme.id,
        tier=Tier.NORMAL,
        priority=3,
        owner_area_id=owner,
        recurrence={"when": {"kind": "daily", "times": ["07:00"]}},
        approval=Approval.DRAFT,
        created_by="canbo",
    )
    session.add(rule)
    session.flush()
    for area_id in areas:
        session.execute(rule_areas.insert().values(rule_id=rule.id, area_id=area_id))
    for group_id in groups:
        session.execute(rule_groups.insert().values(rule_id=rule.id, group_id=group_id))
    return rule.id


@pytest.mark.usefixtures("tan_an")
def test_library_assets_move_with_their_unit_and_inherited_drafts_are_listed(
    session_factory: sessionmaker[Session], client: TestClient
) -> None:
    """Gap: a merged commune's media assets pass to the new unit (its operators reach
    them), are previewed and counted in the audit entry; the approvals the new unit
    inherits are listed: drafts it now owns and drafts aimed at the old unit."""
    operator = make_user(session_factory, "op7", Role.OPERATOR, ["phuong-7"])
    merge = reorg.Plan(
        name="Gộp Bình Tâm",
        effective=dt.date(2026, 1, 1),
        steps=[reorg.Step(kind="merge", sources=["xa-binh-tam"], into="phuong-7")],
    )
    with session_factory() as session:
        bt, p7 = tan_an_area(session, "xa-binh-tam"), tan_an_area(session, "phuong-7")
        group = session.scalar(select(Group.id).where(Group.gid == "xa-binh-tam"))
        assert group is not None
        approved = make_asset(session, "Bản tin Bình Tâm", bt, Approval.APPROVED)
        waiting = make_asset(session, "Thông báo tiêm chủng", bt, Approval.DRAFT)
        make_asset(session, "Bản tin Phường 7", p7, Approval.DRAFT)  # not the old unit's
        owned = make_draft_rule(session, "Lịch xã Bình Tâm", bt)
        aimed = make_draft_rule(session, "Lịch nhắm Bình Tâm", None, areas=(bt,))
        by_group = make_draft_rule(session, "Lịch nhóm Bình Tâm", p7, groups=(group,))
        session.commit()

    def seen() -> set[int]:
        items = ok(client.get("/api/v1/media?limit=200", headers=operator))["items"]
        return {a["id"] for a in items}

    assert not {approved, waiting} & seen()  # Phường 7's operator cannot reach them yet

    with session_factory() as session:
        preview = reorg.preview(session, merge, by="admin")
        assert preview["owned"]["media_assets"] == ["Bản tin Bình Tâm", "Thông báo tiêm chủng"]
        assert preview["counts"]["media_assets"] == 2
        pending = {(p["kind"], p["id"]): p for p in preview["pending_approvals"]}
        assert set(pending) == {
            ("media_assets", waiting),
            ("schedule_rules", owned),
            ("schedule_rules", aimed),
            ("schedule_rules", by_group),
        }
        assert all(p["old"] == "xa-binh-tam" and p["new"] == "phuong-7" for p in pending.values())
        assert pending["media_assets", waiting]["owned"] is True
        assert pending["schedule_rules", owned]["owned"] is True
        # aimed at the old unit: carried over (same stations), still waiting
        assert (
            pending["schedule_rules", aimed] | {"owned": False, "target": True}
            == (pending["schedule_rules", aimed])
        )
        assert pending["schedule_rules", by_group]["target"] is True
        assert not pending["schedule_rules", by_group]["owned"]
        # nothing changed by the preview
        assert session.get_one(MediaAsset, waiting).owner_area_id == bt
        effect = apply_plan(session, merge)
        assert effect == preview
    with session_factory() as session:
        assert {session.get_one(MediaAsset, i).owner_area_id for i in (approved, waiting)} == {p7}
        # still waiting: a reorganisation approves nothing
        assert session.get_one(MediaAsset, waiting).approval is Approval.DRAFT
        assert session.get_one(ScheduleRule, aimed).approval is Approval.DRAFT
        entry = session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()))
        assert entry is not None
        assert entry.action == "area.reorganise"
        assert entry.after is not None
        assert entry.after["counts"]["media_assets"] == 2
        assert len(entry.after["pending_approvals"]) == 4
    assert {approved, waiting} <= seen()  # the new ward's operator reaches them
    # undone before its date: the assets go back to the old unit
    with session_factory() as session:
        record = session.scalar(select(Reorganisation))
        assert record is not None
        reorg.undo(session, record.id, today=dt.date(2025, 12, 31))
        commit_change(session, Actor.system("admin"), "area.reorganise.undo", "area_reorganisation")
        assert session.get_one(MediaAsset, waiting).owner_area_id == bt


@pytest.mark.usefixtures("tan_an")
def test_statistics_codes_through_the_area_api(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    """Gap: a statistics code is set and edited in the area API; a province's and a
    ward/commune's must be in the `vietnam-provinces` list, a hamlet's is the site's own;
    no two current areas share one."""
    url = "/api/v1/areas"
    province = {"code": "tay-ninh", "name": "Tỉnh Tây Ninh", "level": "province"}
    refused = client.post(url, json=province | {"stat_code": "99"}, headers=admin)
    assert refused.status_code == 422
    assert "99" in refused.json()["message_vi"]
    made = ok(client.post(url, json=province | {"stat_code": "080"}, headers=admin), 201)
    assert made["stat_code"] == "80"  # as the package numbers it
    # a ward/commune: in the list (a province's code is not a ward's), unique
    for bad in ("80", "99999", "27a15", "２７７１５"):
        refused = client.patch(f"{url}/phuong-khanh-hau", json={"stat_code": bad}, headers=admin)
        assert refused.status_code == 422, bad
        assert "danh mục phường/xã" in refused.json()["message_vi"], bad
    edited = ok(client.patch(f"{url}/phuong-khanh-hau", json={"stat_code": "27715"}, headers=admin))
    assert edited["stat_code"] == "27715"
    taken = client.patch(f"{url}/phuong-tan-khanh", json={"stat_code": "27715"}, headers=admin)
    assert taken.status_code == 422
    assert "phuong-khanh-hau" in taken.json()["message_vi"]
    # a hamlet's code is the site's own; none is fine too
    hamlet = {"code": "p1-kp-9", "name": "Khu phố 9", "level": "hamlet", "parent_code": "phuong-1"}
    assert (
        ok(client.post(url, json=hamlet | {"stat_code": "KP9"}, headers=admin), 201)["stat_code"]
        == "KP9"
    )
    cleared = ok(client.patch(f"{url}/p1-kp-9", json={"stat_code": None}, headers=admin))
    assert cleared["stat_code"] is None
    with session_factory() as session:
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "area.update").order_by(AuditEntry.id)
        )
        assert entry is not None
        assert entry.after is not None
        assert entry.after["stat_code"] == "27715"
    # a retired unit's code may be taken again by the unit that succeeds it
    with session_factory() as session:
        apply_plan(
            session,
            reorg.Plan(
                name="Gộp Khánh Hậu",
                effective=dt.date(2026, 1, 1),
                steps=[
                    reorg.Step(kind="merge", sources=["phuong-khanh-hau"], into="phuong-tan-khanh")
                ],
            ),
        )
    ok(client.patch(f"{url}/phuong-tan-khanh", json={"stat_code": "27715"}, headers=admin))


@pytest.mark.usefixtures("tan_an")
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/playlog/totals?by=area",
        "/api/v1/reports/minutes?by=area",
        "/api/v1/alarms/availability?by=area",
    ],
)
def test_units_of_an_impossible_day_are_refused_in_vietnamese(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    answer = client.get(f"{path}&units=2025-02-30", headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["message_vi"] == "Ngày không hợp lệ"
    assert answer.json()["detail"][0]["loc"] == ["query", "units"]
    assert client.get(f"{path}&units=2025-02-28", headers=admin).status_code == 200
