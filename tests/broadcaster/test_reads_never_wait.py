"""Reads never wait for ingest; no write lock is held across a network call
(issue 15, defect 4).

SQLite has one writer at a time.  Another connection holds the write lock (as the
ingest of a 10,000-event burst does, batch after batch) while the API is read: a GET,
authentication included, must not queue behind it.  Before, every request's session
began with ``BEGIN IMMEDIATE`` and authentication committed ``last_used_at``, so a
``GET /api/v1/stations`` waited for the lock (48 s in the report).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.auth.models import Token
from broadcaster.dispatch.worker import Worker
from tests.conftest import IS_POSTGRES
from tests.support.sqlite_lock import db_path, try_write_now

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="SQLite's single write lock")


@contextmanager
def write_lock_held(database: str) -> Iterator[None]:
    """Another connection holds SQLite's write lock for the duration."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_get_and_authentication_do_not_wait_for_a_writer(
    client, admin, tan_an, session_factory: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    database = db_path(session_factory)
    results: list[int] = []

    def read() -> None:
        for path in ("/api/v1/stations?limit=200", "/api/v1/stations/p1-kp-1/state", "/"):
            results.append(client.get(path, headers=admin, follow_redirects=False).status_code)

    with write_lock_held(database):
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(20)  # with the lock queued behind, this takes the 30 s busy timeout
        assert not reader.is_alive(), "a read waited for the write lock"
    assert results[:2] == [200, 200]


def test_token_use_is_recorded_in_the_background(
    client, admin, session_factory: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        assert session.scalar(select(Token.last_used_at)) is None
    assert client.get("/api/v1/stations", headers=admin).status_code == 200
    with session_factory() as session:
        assert session.scalar(select(Token.last_used_at)) is None  # not written by the request
    assert client.app.state.token_usage.flush() == 1
    with session_factory() as session:
        assert session.scalar(select(Token.last_used_at)) is not None
    client.get("/api/v1/stations", headers=admin)
    assert client.app.state.token_usage.flush() == 0  # at most once a minute


def test_broker_account_sync_runs_without_the_write_lock(
    app, tan_an, settings, session_factory: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    """The worker's broker account sync waits for the broker (``listClients``, up to
    10 s): it must not hold SQLite's write lock meanwhile (a login stalled 20 s)."""
    database = db_path(session_factory)
    seen: list[bool] = []

    def after_plan(session: Session) -> None:
        session.execute(select(1))  # the sync reads the registry first...
        seen.append(try_write_now(database))  # ...then waits on the network

    worker = Worker(settings, session_factory, app.state.media_library, after_plan=after_plan)
    worker.rebuild_desired()
    assert seen == [True]
