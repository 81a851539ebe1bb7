"""The connection history (`stations.live`): why each interval ended (mains lost, a link
that dropped and came back, the station's death, the server losing the broker), and its
API `GET /api/v1/stations/{sid}/connections`."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.web.pages.labels import CONNECTION_CAUSE_LABELS
from kernel.security import Role
from stations import live, tan_an
from stations.models import ConnectionCause, Station, StationConnection
from tests.api import make_user, ok

T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SID = "lbn-cau-tre"  # xã Lợi Bình Nhơn
OTHER = "p2-kp-1"  # phường 2


@pytest.fixture
def db_session(session: Session) -> Session:
    tan_an.load(session)
    session.flush()
    return session


def station_id(session: Session, sid: str = SID) -> int:
    return int(session.scalar(select(Station.id).where(Station.sid == sid)) or 0)


def birth(session: Session, sid_id: int, bdseq: int, at: dt.datetime) -> None:
    live.record_birth(
        session,
        sid_id,
        bdseq=bdseq,
        received_at=at,
        firmware="sim",
        model="sim",
        capabilities=["file"],
        held_version=None,
    )


def telemetry(session: Session, sid_id: int, at: dt.datetime, **data: object) -> None:
    base = {"seq": 0, "at": at.isoformat(), "uptime_s": 1, "volume": 70, "playing": None}
    live.record_telemetry(session, [live.TelemetryRow(sid_id, at, at, 0, base | data)])


def causes(session: Session, sid_id: int) -> list[ConnectionCause | None]:
    rows = session.scalars(
        select(StationConnection.cause)
        .where(StationConnection.station_id == sid_id)
        .order_by(StationConnection.online_at, StationConnection.id)
    )
    return list(rows)


def test_a_death_is_the_will_and_a_reconnect_without_one_is_the_link(db_session: Session) -> None:
    sid_id = station_id(db_session)
    birth(db_session, sid_id, 1, T0)
    telemetry(db_session, sid_id, T0 + MINUTE, on_battery=False, supply_v=13.1)
    live.record_death(db_session, sid_id, bdseq=1, received_at=T0 + 2 * MINUTE)
    birth(db_session, sid_id, 2, T0 + 3 * MINUTE)
    birth(db_session, sid_id, 3, T0 + 4 * MINUTE)  # no death seen: the link dropped
    birth(db_session, sid_id, 3, T0 + 5 * MINUTE)  # the same birth again: no new interval
    assert causes(db_session, sid_id) == [ConnectionCause.WILL, ConnectionCause.LINK, None]


def test_mains_lost_makes_the_cause_power(db_session: Session) -> None:
    sid_id = station_id(db_session)
    birth(db_session, sid_id, 1, T0)
    telemetry(db_session, sid_id, T0 + MINUTE, on_battery=True, supply_v=12.2)
    live.record_death(db_session, sid_id, bdseq=1, received_at=T0 + 2 * MINUTE)  # battery ran out
    birth(db_session, sid_id, 2, T0 + 10 * MINUTE)
    telemetry(db_session, sid_id, T0 + 11 * MINUTE, on_battery=False)
    live.record_fault(db_session, sid_id, "power_lost", raised=True)  # a fault event says it
    birth(db_session, sid_id, 3, T0 + 12 * MINUTE)  # reconnected without a death
    live.record_fault(db_session, sid_id, "power_lost", raised=False)
    live.record_death(db_session, sid_id, bdseq=3, received_at=T0 + 13 * MINUTE)
    assert causes(db_session, sid_id) == [
        ConnectionCause.POWER,
        ConnectionCause.POWER,
        ConnectionCause.WILL,
    ]


def test_the_server_losing_the_broker_then_the_retained_will(db_session: Session) -> None:
    dead, powerless = station_id(db_session), station_id(db_session, OTHER)
    birth(db_session, dead, 1, T0)
    birth(db_session, powerless, 1, T0)
    telemetry(db_session, powerless, T0 + MINUTE, on_battery=True)
    live.mark_all_offline(db_session, at=T0 + 2 * MINUTE)
    assert causes(db_session, dead) == [ConnectionCause.SERVER]
    # the broker is back: each station's retained will says how it really ended
    live.record_death(db_session, dead, bdseq=1, received_at=T0 + 3 * MINUTE)
    live.record_death(db_session, powerless, bdseq=1, received_at=T0 + 3 * MINUTE)
    assert causes(db_session, dead) == [ConnectionCause.WILL]
    assert causes(db_session, powerless) == [ConnectionCause.POWER]
    # a stale death (another bdseq) changes nothing
    birth(db_session, dead, 2, T0 + 4 * MINUTE)
    assert not live.record_death(db_session, dead, bdseq=1, received_at=T0 + 5 * MINUTE)
    assert causes(db_session, dead) == [ConnectionCause.WILL, None]


def test_values_stored_before_causes_were_told_apart_stay_readable(db_session: Session) -> None:
    sid_id = station_id(db_session)
    for n, old in enumerate(("death", "replaced"), start=1):
        db_session.add(
            StationConnection(
                station_id=sid_id, bdseq=n, online_at=T0 + n * MINUTE, offline_at=T0 + 9 * MINUTE
            )
        )
        db_session.flush()
        db_session.execute(
            update(StationConnection)
            .where(StationConnection.station_id == sid_id, StationConnection.bdseq == n)
            .values(cause=ConnectionCause(old))
        )
    db_session.expire_all()
    assert causes(db_session, sid_id) == [ConnectionCause.DEATH, ConnectionCause.REPLACED]
    # every cause has its Vietnamese label, and fits the VARCHAR(16) it is stored in
    assert set(CONNECTION_CAUSE_LABELS) == set(ConnectionCause)
    assert all(len(c.value) <= 16 for c in ConnectionCause)


# --- the API ---------------------------------------------------------------------------


def history(factory: sessionmaker[Session]) -> None:
    """Four connections of `SID`: ended by its will, a dropped link, mains lost; one open."""
    with db.session_scope(factory) as session:
        sid_id = station_id(session)
        birth(session, sid_id, 1, T0)
        live.record_death(session, sid_id, bdseq=1, received_at=T0 + 10 * MINUTE)
        birth(session, sid_id, 2, T0 + 20 * MINUTE)
        birth(session, sid_id, 3, T0 + 30 * MINUTE)
        telemetry(session, sid_id, T0 + 31 * MINUTE, on_battery=True)
        live.record_death(session, sid_id, bdseq=3, received_at=T0 + 40 * MINUTE)
        birth(session, sid_id, 4, T0 + 60 * MINUTE)


@pytest.mark.usefixtures("tan_an")
def test_connections_api_lists_filters_pages_and_is_scoped(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    history(session_factory)
    url = f"/api/v1/stations/{SID}/connections"
    body = ok(client.get(url, headers=admin))
    assert body["total"] == 4
    assert [(c["bdseq"], c["cause"], c["duration_s"]) for c in body["items"]] == [
        (4, None, None),
        (3, "power", 600.0),
        (2, "link", 600.0),
        (1, "will", 600.0),
    ]
    assert body["items"][0]["offline_at"] is None
    assert dt.datetime.fromisoformat(body["items"][-1]["online_at"]) == T0
    # intervals overlapping the period [from, to)
    params = {
        "from": (T0 + 25 * MINUTE).isoformat(),
        "to": (T0 + 35 * MINUTE).isoformat(),
    }
    window = ok(client.get(url, params=params, headers=admin))
    assert [c["bdseq"] for c in window["items"]] == [3, 2]
    later = ok(client.get(url, params={"from": (T0 + 50 * MINUTE).isoformat()}, headers=admin))
    assert [c["bdseq"] for c in later["items"]] == [4]
    page = ok(client.get(url, params={"limit": 2, "offset": 1}, headers=admin))
    assert (page["total"], [c["bdseq"] for c in page["items"]]) == (4, [3, 2])
    assert client.get(url, params={"limit": 0}, headers=admin).status_code == 422
    # another commune's operator does not see the station
    ward = make_user(session_factory, "phuong2", Role.OPERATOR, ["phuong-2"])
    assert client.get(url, headers=ward).status_code == 404
    commune = make_user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    assert ok(client.get(url, headers=commune))["total"] == 4
    assert ok(client.get("/api/v1/stations/p2-kp-1/connections", headers=admin))["items"] == []
