"""The seeded relay chain (``broadcaster seed tan-an``): 05:00 and 17:00 on all 108
stations, idempotent, approved by "system", editable like any rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import MediaAsset
from kernel.approval import Approval
from kernel.audit import AuditEntry
from kernel.security import Role
from schedules import seed
from stations.models import Area, Station
from tests.api import make_user, ok
from tests.schedules.api_helpers import hhmm, playlist

pytestmark = pytest.mark.usefixtures("tan_an")
DAY = dt.date(2026, 11, 26)


@pytest.fixture
def seeded(
    tan_an: None, app: FastAPI, client: TestClient, session_factory: sessionmaker[Session]
) -> dict[str, int]:
    return seed.load(session_factory, app.state.media_library)


def _unit_of(session: Session) -> dict[str, str]:
    """sid -> the code of its ward/commune."""
    areas = {a.id: a for a in session.scalars(select(Area))}
    out = {}
    for station in session.scalars(select(Station)):
        area = areas[station.area_id]
        while area.parent_id is not None and areas[area.parent_id].parent_id is not None:
            area = areas[area.parent_id]
        out[station.sid] = area.code
    return out


def test_chain_on_all_108_stations(
    seeded: dict[str, int],
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    assert seeded == {"stream_sources": 17, "programmes": 17, "rules": 34}
    with session_factory() as session:
        units = _unit_of(session)
    assert len(units) == 108
    sources = ok(client.get("/api/v1/stream-sources?limit=100", headers=admin))["items"]
    urls = {s["key"]: s["url"] for s in sources}
    assert {s["kind"] for s in sources} == {"national", "provincial", "city", "commune"}
    assert all(s["fallback_playable"] for s in sources)
    expected = [  # national first (issue 15: the seeded chain had no VOV1 step)
        ("05:00:00", "05:15:00", "tan-an:stream:vov1"),
        ("05:15:00", "05:45:00", "tan-an:stream:long-an"),
        ("05:45:00", "06:00:00", "tan-an:stream:tan-an"),
        ("06:00:00", "06:15:00", None),
        ("17:00:00", "17:15:00", "tan-an:stream:vov1"),
        ("17:15:00", "17:45:00", "tan-an:stream:long-an"),
        ("17:45:00", "18:00:00", "tan-an:stream:tan-an"),
        ("18:00:00", "18:15:00", None),
    ]
    fallbacks = set()
    for sid, unit in sorted(units.items()):
        items = playlist(client, admin, sid, DAY)
        assert len(items) == 8, sid
        for item, (start, end, key) in zip(items, expected, strict=True):
            assert item["start_at"] == f"{DAY}T{start}.000+07:00", sid
            assert item["end_at"] == f"{DAY}T{end}.000+07:00", sid
            assert item["kind"] == "relay"
            assert item["priority"] == 5
            assert item["url"] == urls[key or f"tan-an:stream:{unit}"], (sid, item["url"])
            fallbacks.add(item["fallback"]["sha256"])
    assert len(fallbacks) == 1  # one spoken fallback shared by every source
    # a chain is on air exactly while a relay of the built plan plays (the broadcast
    # benchmark reads this to say whether its rounds preempted a relay)
    spans = [
        (dt.time.fromisoformat(i["start_at"][11:19]), dt.time.fromisoformat(i["end_at"][11:19]))
        for i in items
    ]
    for minute in range(24 * 60):
        at = dt.time(*divmod(minute, 60))
        playing = any(start <= at < end for start, end in spans)
        assert any(chain.on_air(at) for chain in seed.CHAINS) == playing, at

    # seeded as approved by "system", recorded
    rules = ok(client.get("/api/v1/schedules/rules?limit=100", headers=admin))["items"]
    assert len(rules) == 34
    assert {(r["approval"], r["approved_by"], r["created_by"]) for r in rules} == {
        ("approved", "system", "system")
    }
    assert all(r["approval_note"] == seed.APPROVAL_NOTE for r in rules)
    city_rules = [r for r in rules if r["owner_area_code"] is None]
    assert len(city_rules) == 6
    assert all(r["targets"]["groups"] == ["all"] for r in city_rules)
    with session_factory() as session:
        asset = session.scalar(select(MediaAsset).where(MediaAsset.title == seed.FALLBACK_TITLE))
        assert asset is not None
        assert asset.approval is Approval.APPROVED
        assert asset.approved_by == "system"
        assert asset.recipe
        assert "gián đoạn" in asset.recipe["text"]
        assert (
            session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "schedule.seed"))
            == "system"
        )

    # idempotent (and no second TTS run)
    assert seed.load(session_factory, app.state.media_library) == {
        "stream_sources": 0,
        "programmes": 0,
        "rules": 0,
    }
    with session_factory() as session:
        assert len(list(session.scalars(select(MediaAsset)))) == 1
    assert ok(client.get("/api/v1/schedules/rules", headers=admin))["total"] == 34


def test_new_station_joins_and_operators_edit(
    seeded: dict[str, int],
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    station = {"sid": "lbn-moi", "name": "Trạm mới", "kind": "smart", "area_code": "lbn-cau-tre"}
    ok(client.post("/api/v1/stations", json=station, headers=admin), 201)
    items = playlist(client, admin, "lbn-moi", DAY)
    assert [hhmm(i["start_at"]) for i in items] == [
        "05:00",
        "05:15",
        "05:45",
        "06:00",
        "17:00",
        "17:15",
        "17:45",
        "18:00",
    ]
    assert items[3]["url"].endswith("/xa-loi-binh-nhon.mp3")

    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    approver = make_user(session_factory, "duyet-lbn", Role.APPROVER, ["xa-loi-binh-nhon"])
    mine = ok(client.get("/api/v1/schedules/rules?owner_area=xa-loi-binh-nhon", headers=operator))
    assert mine["total"] == 2
    morning: dict[str, Any] = next(r for r in mine["items"] if "(sáng)" in r["title"])
    edited = ok(
        client.patch(
            f"/api/v1/schedules/rules/{morning['id']}",
            json={"recurrence": {"when": {"kind": "daily", "times": ["06:01"]}}},
            headers=operator,
        )
    )
    assert edited["approval"] == "draft"
    assert [hhmm(i["start_at"]) for i in playlist(client, operator, "lbn-moi", DAY)][:4] == [
        "05:00",
        "05:15",
        "05:45",
        "17:00",
    ]
    ok(client.post(f"/api/v1/schedules/rules/{morning['id']}/approve", headers=approver))
    assert [hhmm(i["start_at"]) for i in playlist(client, operator, "lbn-moi", DAY)][:4] == [
        "05:00",
        "05:15",
        "05:45",
        "06:01",
    ]
    # the city-wide part of the chain is the city's
    city = next(
        r
        for r in ok(client.get("/api/v1/schedules/rules?limit=100", headers=operator))["items"]
        if r["owner_area_code"] is None
    )
    assert (
        client.patch(
            f"/api/v1/schedules/rules/{city['id']}", json={"order": 1}, headers=operator
        ).status_code
        == 403
    )
