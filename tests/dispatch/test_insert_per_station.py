"""A broadcast's target rows and planned plays go in as INSERT ... SELECT from the
stations (`stations.targets.insert_per_station`), in statements of at most
`IDS_PER_STATEMENT` ids: one row per existing station, each once, the shared values as
given (timestamps, enums), the flag only on the stations named."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox, playlog
from broadcaster.dispatch.models import CommandTarget, Play, PlayStatus, Route, TargetStatus
from stations import targets
from stations.models import Station

NOW = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)


@pytest.mark.usefixtures("tan_an")
@pytest.mark.parametrize("per_statement", [3, targets.IDS_PER_STATEMENT])
def test_rows_for_each_existing_station_once(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, per_statement: int
) -> None:
    monkeypatch.setattr(targets, "IDS_PER_STATEMENT", per_statement)
    with session_factory() as session:
        ids = list(session.scalars(select(Station.id).order_by(Station.id)))[:10]
        missing = max(ids) + 10_000
        asked = [*ids, ids[0], ids[3], missing]  # repeats and a station that is gone
        direct = {ids[1], ids[7], missing}
        command = outbox.create(
            session,
            type="play",
            body={},
            station_ids=asked,
            route=Route.GROUPS,
            groups=["all"],
            direct_ids=direct,
            not_after=NOW + dt.timedelta(minutes=5),
            created_by="test",
            now=NOW,
        )
        playlog.record_broadcast(
            session,
            station_ids=asked,
            cmd_id=command.cmd_id,
            broadcast_id=1,
            title="Bản tin khẩn",
            kind="voice",
            priority=9,
            start=NOW,
            expected_ms=60_000,
            now=NOW,
        )
        to_each = outbox.create(  # a command sent to each station: every target direct
            session,
            type="ping",
            body={},
            station_ids=asked,
            not_after=NOW + dt.timedelta(minutes=5),
            created_by="test",
            now=NOW,
        )
        session.commit()
    with session_factory() as session:
        each = list(
            session.scalars(select(CommandTarget).where(CommandTarget.command_id == to_each.id))
        )
        rows = list(
            session.scalars(select(CommandTarget).where(CommandTarget.command_id == command.id))
        )
        plays = list(session.scalars(select(Play)))
    assert sorted(r.station_id for r in rows) == ids
    assert sorted(r.station_id for r in each) == ids
    assert all(r.direct for r in each)
    assert {r.station_id for r in rows if r.direct} == {ids[1], ids[7]}
    assert {(r.command_id, r.status, r.updated_at) for r in rows} == {
        (command.id, TargetStatus.PENDING, NOW)
    }
    assert sorted(p.station_id for p in plays) == ids
    assert {
        (p.cmd_id, p.status, p.planned_start, p.planned_end, p.title, p.priority) for p in plays
    } == {
        (
            command.cmd_id,
            PlayStatus.PLANNED,
            NOW,
            NOW + dt.timedelta(minutes=1),
            "Bản tin khẩn",
            9,
        )
    }
