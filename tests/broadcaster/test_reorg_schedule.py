"""A reorganisation dated in the future waits for its date and is applied by the active
worker's job when the date arrives (midnight in Tân An): idempotent, audited, undoable
(cancelled) until then; one the structure no longer allows on its date is marked failed
with its errors, nothing of it applied.

The clock is moved with time-machine around each run of the job (and the calendar run,
`tests/test_calendar.py`, runs this module again a year ahead, and just after midnight).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.reorg import jobs
from broadcaster.reorg import service as reorg
from kernel import signals
from kernel.audit import AuditEntry
from kernel.security import Role
from stations.models import Area, Reorganisation, ReorgStatus, Station, StationUnit
from tests.api import make_user, ok

pytestmark = [pytest.mark.usefixtures("tan_an"), pytest.mark.calendar]

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _at(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), VN)


def _ward(session: Session, sid: str) -> str:
    station = session.scalar(select(Station).where(Station.sid == sid))
    assert station is not None
    area = station.area
    while area.parent is not None and area.level.value == "hamlet":
        area = area.parent
    return area.code


def test_applied_by_the_worker_when_its_date_arrives(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    today = dt.datetime.now(VN).date()
    day = today + dt.timedelta(days=1)
    plans = "/api/v1/areas/reorganisations"
    merge = {
        "name": "Gộp Bình Tâm vào Phường 7",
        "effective": day.isoformat(),
        "steps": [{"kind": "merge", "sources": ["xa-binh-tam"], "into": "phuong-7"}],
    }
    scheduled = ok(client.post(plans, json=merge, headers=admin), 201)
    assert scheduled["status"] == "scheduled"
    # a later plan naming the unit the first one retires is refused at once: its preview
    # applies the plans scheduled before it
    later = (day + dt.timedelta(days=1)).isoformat()
    stale = {
        "name": "Đổi tên Bình Tâm",
        "effective": later,
        "steps": [{"kind": "rename", "unit": "xa-binh-tam", "name": "Xã Bình Tâm Mới"}],
    }
    refused = client.post(plans, json=stale, headers=admin)
    assert refused.status_code == 422
    assert "xa-binh-tam" in refused.json()["message_vi"]
    # a later plan that moves a new hamlet, which is deleted before the plan's date
    ok(
        client.post(
            "/api/v1/areas",
            json={
                "code": "p1-kp-9",
                "name": "Khu phố 9",
                "level": "hamlet",
                "parent_code": "phuong-1",
            },
            headers=admin,
        ),
        201,
    )
    move = {
        "name": "Chuyển khu phố 9",
        "effective": later,
        "steps": [{"kind": "move", "hamlets": ["p1-kp-9"], "into": "phuong-7"}],
    }
    doomed = ok(client.post(plans, json=move, headers=admin), 201)
    assert doomed["status"] == "scheduled"
    assert client.delete("/api/v1/areas/p1-kp-9", headers=admin).status_code == 204

    with session_factory() as session:
        generation, _ = signals.current(session)
    # the evening before: nothing is due
    with time_machine.travel(_at(today, 23, 59, 50), tick=False):
        assert jobs.apply_due(session_factory, VN) == []
    with session_factory() as session:
        assert _ward(session, "bt-1") == "xa-binh-tam"
    # just after midnight in Tân An (17:00 UTC the day before): applied
    with time_machine.travel(_at(day, 0, 0, 5), tick=False):
        outcomes = jobs.apply_due(session_factory, VN)
        assert [o.record.id for o in outcomes] == [scheduled["id"]]
        assert jobs.apply_due(session_factory, VN) == []  # idempotent
        # its date has come: no undo any more
        # (a token of that time: the fixture's has expired on the moved clock)
        now_admin = make_user(session_factory, "quantri-0h", Role.ADMIN)
        late = client.post(f"{plans}/{scheduled['id']}/undo", headers=now_admin)
        assert late.status_code == 422
    with session_factory() as session:
        record = session.get_one(Reorganisation, scheduled["id"])
        assert record.status is ReorgStatus.APPLIED
        assert _ward(session, "bt-1") == "phuong-7"
        bt = session.scalar(select(Area).where(Area.code == "xa-binh-tam"))
        assert bt is not None
        assert bt.valid_to == day
        # the history says where the station was before and after the date
        station = session.scalar(select(Station.id).where(Station.sid == "bt-1"))
        history = reorg.UnitHistory(session)
        assert station is not None
        assert history.at(station, today) == bt.id
        assert history.at(station, day) != bt.id
        assert (
            session.scalar(
                select(StationUnit.valid_from).where(
                    StationUnit.station_id == station, StationUnit.valid_to.is_(None)
                )
            )
            == day
        )
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "area.reorganise"))
        assert entry is not None
        assert entry.actor == jobs.ACTOR.name
        assert entry.targets == [str(record.id)]
        assert signals.current(session)[0] > generation  # the stations' plans are rebuilt
    # the next day: the doomed plan is refused on its date, nothing of it applied
    with time_machine.travel(_at(day + dt.timedelta(days=1), 0, 0, 5), tick=False):
        outcomes = jobs.apply_due(session_factory, VN)
    assert [(o.record.id, o.effect) for o in outcomes] == [(doomed["id"], None)]
    with session_factory() as session:
        failed = session.get_one(Reorganisation, doomed["id"])
        assert failed.status is ReorgStatus.FAILED
        assert any("p1-kp-9" in e for e, _ in failed.undo["errors"])
        assert (
            session.scalar(select(AuditEntry.action).order_by(AuditEntry.id.desc()))
            == "area.reorganise.failed"
        )


def test_cancelled_before_its_date_is_never_applied(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    day = dt.datetime.now(VN).date() + dt.timedelta(days=3)
    body = {
        "name": "Đổi tên Phường 7",
        "effective": day.isoformat(),
        "steps": [{"kind": "rename", "unit": "phuong-7", "name": "Phường Bảy"}],
    }
    plans = "/api/v1/areas/reorganisations"
    scheduled = ok(client.post(plans, json=body, headers=admin), 201)
    with time_machine.travel(_at(day - dt.timedelta(days=1), 23, 30), tick=False):
        then_admin = make_user(session_factory, "quantri-23h", Role.ADMIN)
        cancelled = ok(client.post(f"{plans}/{scheduled['id']}/undo", headers=then_admin))
    assert cancelled["status"] == "undone"
    with time_machine.travel(_at(day, 0, 1), tick=False):
        assert jobs.apply_due(session_factory, VN) == []
    with session_factory() as session:
        assert session.scalar(select(Area.name).where(Area.code == "phuong-7")) == "Phường 7"
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["area.reorganise.schedule", "area.reorganise.cancel"]
