"""`stations.live.record_telemetry`: one batch, many stations, with and without a state
row yet; history keeps every sample, the latest follows the station's own time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from stations import live, tan_an
from stations.models import StationState, TelemetrySample

T0 = dt.datetime(2026, 11, 26, 5, 0, tzinfo=dt.UTC)


def row(station_id: int, seq: int, at: dt.datetime, received: dt.datetime) -> live.TelemetryRow:
    data = {"seq": seq, "at": at.isoformat(), "uptime_s": seq, "volume": 40 + seq, "playing": None}
    return live.TelemetryRow(station_id=station_id, at=at, received_at=received, seq=seq, data=data)


def test_a_batch_across_stations_keeps_history_and_the_newest_sample(
    session_factory: sessionmaker[Session],
) -> None:
    with db.session_scope(session_factory) as session:
        tan_an.load(session)
    with session_factory() as session:
        ids = sorted(live.sid_index(session).values())[:3]
        a, b, c = ids
        live.record_birth(
            session,
            a,
            bdseq=0,
            received_at=T0,
            firmware="fw",
            model=None,
            capabilities=["file"],
            held_version=None,
        )
        session.commit()
        assert session.get(StationState, b) is None  # b and c have no state row yet

    minute = dt.timedelta(minutes=1)
    batch = [
        row(a, 1, T0 + minute, T0 + minute),
        row(b, 0, T0, T0 + minute),
        row(a, 2, T0 + 3 * minute, T0 + 2 * minute),
        row(b, 1, T0 + 2 * minute, T0 + 3 * minute),
        row(c, 5, T0 + minute, T0 + minute),
    ]
    with session_factory() as session:
        assert live.record_telemetry(session, batch) == 5
        session.commit()

    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(TelemetrySample)) == 5
        states = {s.station_id: s for s in session.scalars(select(StationState))}
        assert states[a].telemetry is not None
        assert states[a].telemetry["seq"] == 2
        assert states[a].volume == 42
        assert states[a].online is True  # the birth's fields are untouched
        assert states[b].telemetry is not None
        assert states[b].telemetry["seq"] == 1
        assert states[b].telemetry_at == T0 + 2 * minute
        assert states[b].last_seen == T0 + 3 * minute
        assert states[c].telemetry is not None
        assert states[c].telemetry["seq"] == 5
        assert states[c].online is False
        history = live.telemetry_between(session, b, since=None, until=None, limit=10)
        assert [s.seq for s in history] == [0, 1]

    # a later batch with an older sample (by station time) does not replace the latest
    with session_factory() as session:
        live.record_telemetry(session, [row(a, 9, T0, T0 + 10 * minute)])
        session.commit()
        state = session.get(StationState, a)
        assert state is not None
        assert state.telemetry is not None
        assert state.telemetry["seq"] == 2
        assert state.last_seen == T0 + 10 * minute


def test_the_state_rows_of_many_stations_are_read_and_created_in_a_few_statements(
    session_factory: sessionmaker[Session],
) -> None:
    """`live.states_of`: the rows that exist, the missing ones created, in three
    statements whatever the number of stations (the desired publisher meeting thousands
    of stations whose births are not stored yet), and nothing lost of a row that exists."""
    with db.session_scope(session_factory) as session:
        tan_an.load(session)
    with session_factory() as session:
        ids = sorted(live.sid_index(session).values())
        assert len(ids) > 50
        live.state_of(session, ids[0]).volume = 33
        session.commit()

    statements: list[str] = []
    engine = session_factory.kw["bind"]

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's write transaction
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_factory() as session:
            states = live.states_of(session, ids)
            assert sorted(states) == ids
            assert len(statements) <= 3, statements
            assert states[ids[0]].volume == 33  # the row that existed, as it was
            assert all(states[i].desired_version == 0 for i in ids[1:])
            states[ids[1]].volume = 44
            session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with session_factory() as session:
        # read again, created by nobody twice
        again = live.states_of(session, ids)
        assert again[ids[1]].volume == 44
        assert session.scalar(select(func.count()).select_from(StationState)) == len(ids)
