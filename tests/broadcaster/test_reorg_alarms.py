"""Alarms and availability keep the unit their station belonged to at the time: after
the 1 July 2025 change, former Xã Lợi Bình Nhơn still finds its June alarms and its
June availability; Phường Khánh Hậu only what came after; a period spanning the change
reads by the old units, the new ones, or each part by its own, with the same totals."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alarms.models import Alarm, AlarmStatus
from broadcaster.alarms.rules import Condition, Severity
from broadcaster.reorg import tan_an as tan_an_2025
from stations.models import Station, StationConnection
from tests.api import ok
from tests.broadcaster.test_reorg import apply_plan

pytestmark = pytest.mark.usefixtures("tan_an")

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
JUNE_30 = dt.datetime(2025, 6, 30, tzinfo=TZ)
JULY_2 = dt.datetime(2025, 7, 2, tzinfo=TZ)
PERIOD = {"from": JUNE_30.isoformat(), "to": JULY_2.isoformat(), "by": "area"}


def _alarm(station_id: int, raised: dt.datetime) -> Alarm:
    return Alarm(
        station_id=station_id,
        condition=Condition.STATION_OFFLINE,
        severity=Severity.WARNING,
        status=AlarmStatus.CLEARED,
        raised_at=raised,
        last_seen_at=raised,
        cleared_at=raised + dt.timedelta(minutes=5),
    )


@pytest.fixture
def reorganised(session_factory: sessionmaker[Session]) -> dict[str, Any]:
    """Xã Lợi Bình Nhơn's stations connected the whole of 30 June and 1 July 2025 (one
    of them half of each day), an alarm on each day at one station; then the change."""
    with session_factory() as session:
        lbn = list(session.scalars(select(Station).where(Station.sid.like("lbn-%"))))
        for i, station in enumerate(lbn):
            if i == 0:  # online 12 h of each day
                for day in (JUNE_30, JUNE_30 + dt.timedelta(days=1)):
                    session.add(
                        StationConnection(
                            station_id=station.id,
                            bdseq=day.day,
                            online_at=day,
                            offline_at=day + dt.timedelta(hours=12),
                        )
                    )
            else:
                session.add(
                    StationConnection(
                        station_id=station.id, bdseq=1, online_at=JUNE_30, offline_at=JULY_2
                    )
                )
        june = _alarm(lbn[0].id, JUNE_30 + dt.timedelta(hours=10))
        july = _alarm(lbn[0].id, JUNE_30 + dt.timedelta(days=1, hours=10))
        session.add_all([june, july])
        session.flush()
        ids = {"june": june.id, "july": july.id, "stations": len(lbn), "hamlet": lbn[0].area.code}
        apply_plan(session, tan_an_2025.plan())
    return ids


def test_alarms_are_found_by_the_unit_of_their_time(
    client: TestClient, admin: dict[str, str], reorganised: dict[str, Any]
) -> None:
    def found(area: str) -> list[int]:
        page = ok(client.get(f"/api/v1/alarms?area={area}&limit=100", headers=admin))
        return sorted(a["id"] for a in page["items"])

    assert found("xa-loi-binh-nhon") == [reorganised["june"]]
    assert found("tn-phuong-khanh-hau") == [reorganised["july"]]
    # the dissolved city still finds what its communes had before the change
    assert found("tan-an") == [reorganised["june"]]
    # a hamlet keeps its stations through the change: both
    assert found(reorganised["hamlet"]) == [reorganised["june"], reorganised["july"]]


def test_availability_by_old_new_and_then_units(
    client: TestClient, admin: dict[str, str], reorganised: dict[str, Any]
) -> None:
    n = reorganised["stations"]
    url = "/api/v1/alarms/availability"
    old = ok(client.get(url, params=PERIOD | {"units": "2025-06-30"}, headers=admin))
    new = ok(client.get(url, params=PERIOD | {"units": "today"}, headers=admin))
    then = ok(client.get(url, params=PERIOD | {"units": "then"}, headers=admin))
    expected = round(((n - 1) + 0.5) / n, 4)
    assert [(r["key"], r["stations"], r["availability"]) for r in old] == [
        ("xa-loi-binh-nhon", n, expected)
    ]
    assert [(r["key"], r["stations"], r["availability"]) for r in new] == [
        ("tn-phuong-khanh-hau", n, expected)
    ]
    # each day read by its own unit: 30 June by the old commune, 1 July by the new ward
    assert [(r["key"], r["stations"], r["availability"]) for r in then] == [
        ("tn-phuong-khanh-hau", n, expected),
        ("xa-loi-binh-nhon", n, expected),
    ]
    assert {r["period_s"] for r in then} == {86_400.0}
    total = sum(r["online_s"] for r in old)
    assert sum(r["online_s"] for r in new) == total
    assert round(sum(r["online_s"] for r in then), 1) == total
    bad = client.get(url, params=PERIOD | {"units": "2025-13-01"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["message_vi"]
