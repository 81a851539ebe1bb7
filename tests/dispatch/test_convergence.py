"""Convergence: once a minute the worker asks the online stations that applied their
plan but still miss some of its media to fetch it again (a ``sync`` command, each
station at most every `SYNC_EVERY`).  It looks at the stations without holding
SQLite's write lock: at 10,000 stations the look took 0.9 s, and an emergency waited
behind it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch.models import Command, CommandTarget
from broadcaster.dispatch.worker import Worker
from broadcaster.settings import Settings
from stations import live
from stations.models import Station, StationState
from tests.conftest import IS_POSTGRES
from tests.support.sqlite_lock import db_path, try_write_now

#: sid -> (online, published version, applied version, missing)
STATES = {
    "htp-1": (True, 2, 2, ["ban-tin.mp3"]),  # in step, misses media: asked
    "lbn-cau-tre": (True, 2, 2, []),  # in step, has everything
    "lbn-ngai-loi-a": (False, 2, 2, ["ban-tin.mp3"]),  # offline
    "lbn-ngai-loi-b": (True, 2, 1, ["ban-tin.mp3"]),  # not yet on the plan published
    "p1-kp-1": (True, 0, 0, ["ban-tin.mp3"]),  # never sent a plan
}


def _states(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        ids = {sid: i for sid, i in session.execute(select(Station.sid, Station.id))}
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "station_id": ids[sid],
                "online": online,
                "desired_published_version": published,
                "applied_version": applied,
                "missing": missing,
                "desired_at": now,
            }
            for sid, (online, published, applied, missing) in STATES.items()
        ]
        session.execute(insert(StationState), rows)
        session.commit()
    return ids


def _synced(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return list(
            session.scalars(
                select(CommandTarget.station_id)
                .join(Command, Command.id == CommandTarget.command_id)
                .where(Command.type == "sync", Command.created_by == "system:convergence")
            )
        )


@pytest.mark.usefixtures("tan_an")
def test_stations_in_step_that_miss_media_are_asked_to_sync_once_in_a_while(
    app, settings: Settings, session_factory: sessionmaker[Session], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    ids = _states(session_factory)
    with session_factory() as session:
        assert live.missing_media(session) == [ids["htp-1"]]
    looked: list[bool] = []
    missing_media = live.missing_media

    def looking(session: Session) -> list[int]:
        found = missing_media(session)
        if not IS_POSTGRES:  # nobody holds SQLite's write lock while it looks
            looked.append(try_write_now(db_path(session_factory)))
        return found

    monkeypatch.setattr(live, "missing_media", looking)
    worker = Worker(settings, session_factory, app.state.media_library)
    worker._converge()
    assert _synced(session_factory) == [ids["htp-1"]]
    worker._converge()  # asked a moment ago: not again
    assert _synced(session_factory) == [ids["htp-1"]]
    assert looked == ([] if IS_POSTGRES else [True, True])
