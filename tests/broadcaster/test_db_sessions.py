"""SQLite transactions: writers queue for the write lock; a read-only session does not;
the write-ahead log is checkpointed by the engine's thread, never inside a commit."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from broadcaster import db
from stations.models import Area
from tests.support.loa import wait_until


def test_read_session_does_not_wait_for_a_writer_but_a_write_session_does(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/locks.db")
    db.upgrade(engine)
    factory = db.make_sessionmaker(engine)
    try:
        writer = factory()
        writer.add(
            Area(
                code="tan-an", name="Thành phố Tân An", name_folded="thanh pho tan an", level="city"
            )
        )
        writer.flush()  # holds the write lock (BEGIN IMMEDIATE) until it commits

        with db.read_session(factory) as reader:
            started = time.monotonic()
            seen = reader.scalars(select(Area.code)).all()
            read_s = time.monotonic() - started
        assert seen == []  # the last commit, not the writer's pending row
        assert read_s < 5  # the busy timeout is 30 s: it did not queue behind the writer

        waited = threading.Event()
        done = threading.Event()

        def second_writer() -> None:
            with factory() as session:
                session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: waits for the lock
                waited.set()
            done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not done.wait(1.0), "a write session must queue behind the writer"
        writer.commit()
        writer.close()
        assert done.wait(10)
        thread.join()
        assert waited.is_set()
        with db.read_session(factory) as reader:
            assert reader.scalars(select(Area.code)).all() == ["tan-an"]
    finally:
        engine.dispose()


def test_a_writer_is_next_after_the_batch_being_written_not_starved(tmp_path: Path) -> None:
    """An ingest-like writer commits short transactions back to back; another writer
    (the operator's emergency) asking meanwhile writes right after the current one."""
    engine = db.make_engine(f"sqlite:///{tmp_path}/turns.db")
    factory = db.make_sessionmaker(engine)
    with factory() as session:
        session.execute(text("CREATE TABLE batches (n INTEGER)"))
        session.commit()
    committed: list[int] = []
    asked, stop = threading.Event(), threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            with factory() as session:
                session.execute(text("INSERT INTO batches VALUES (:n)"), {"n": n})
                time.sleep(0.02)  # a batch being written
                session.commit()
            committed.append(n)
            n += 1

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        time.sleep(0.2)
        with factory() as session:
            before = len(committed)
            asked.set()
            session.execute(text("INSERT INTO batches VALUES (-1)"))
            after = len(committed)
            session.commit()
        # at most the batch being written when it asked (and one finishing its commit)
        assert after - before <= 2, f"{after - before} batches went first"
    finally:
        stop.set()
        thread.join(30)
        engine.dispose()
    assert asked.is_set()
    assert len(committed) > 5


def _queued(turns: db.WriteTurns, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(turns._waiting) < n:  # the queue is what is under test
        assert time.monotonic() < deadline, "the writer never queued"
        time.sleep(0.005)


def test_a_writer_someone_waits_on_goes_before_the_background_writers_waiting() -> None:
    """The ingest holds the turn and its next batch waits; an operator's request asks
    after it, yet writes next; two requests keep their order between them."""
    turns = db.WriteTurns()
    assert turns.take()  # the batch being written
    order: list[str] = []

    def writer(name: str, first: bool) -> threading.Thread:
        def run() -> None:
            assert turns.take(first=first)
            order.append(name)
            turns.give_back()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    threads = [writer("next batch", False)]
    _queued(turns, 1)
    threads.append(writer("emergency", True))
    _queued(turns, 2)
    threads.append(writer("operator edit", True))
    _queued(turns, 3)
    threads.append(writer("worker job", False))
    _queued(turns, 4)
    turns.give_back()
    for thread in threads:
        thread.join(10)
    assert order == ["emergency", "operator edit", "next batch", "worker job"]


def test_an_api_request_that_writes_asks_for_its_turn_first(tmp_path: Path) -> None:
    """The request's session (`kernel.dependencies.get_session`) and the factory of its
    long work (`get_session_factory`): a write is marked to go first, a read only reads."""
    from starlette.requests import Request

    from kernel.db import READ_ONLY, WRITE_FIRST
    from kernel.dependencies import get_session, get_session_factory

    engine = db.make_engine(f"sqlite:///{tmp_path}/first.db")
    factory = db.make_sessionmaker(engine)

    class App:
        class state:  # the shape of app.state
            sessionmaker = factory

    try:
        for method, option in (("POST", WRITE_FIRST), ("DELETE", WRITE_FIRST), ("GET", READ_ONLY)):
            request = Request({"type": "http", "method": method, "app": App, "headers": []})
            sessions = get_session(request)
            session = next(sessions)
            options = session.connection().get_execution_options()
            assert options.get(option) is True, method
            sessions.close()
            # the factory long work (an upload's audio) opens its own sessions from
            long_work = get_session_factory(request)
            with long_work() as session:
                options = session.connection().get_execution_options()
                assert bool(options.get(WRITE_FIRST)) is (method != "GET"), method
                assert session.expire_on_commit is False  # the factory's own settings kept
        post = Request({"type": "http", "method": "POST", "app": App, "headers": []})
        assert get_session_factory(post) is get_session_factory(post)  # made once
    finally:
        engine.dispose()


def _write_past_the_autocheckpoint(engine: Engine, rows: int = 3000) -> None:
    """About 3,000 pages of the log: SQLite's automatic checkpoint would run at 1,000."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS bulk (n INTEGER, filler BLOB)")
        connection.exec_driver_sql(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?)"
            " INSERT INTO bulk SELECT n, randomblob(4000) FROM s",
            (rows,),
        )


def _rows_in_the_database_file(path: Path, tmp_path: Path) -> int:
    """The rows of ``bulk`` in the database file alone (a copy without its log)."""
    copy = tmp_path / "file-only.db"
    for leftover in (copy, tmp_path / "file-only.db-wal", tmp_path / "file-only.db-shm"):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        return int(connection.execute("SELECT count(*) FROM bulk").fetchone()[0])
    except sqlite3.OperationalError:  # no such table: not copied yet
        return 0
    except sqlite3.DatabaseError:  # copied in the middle of a checkpoint
        return -1
    finally:
        connection.close()


def test_a_commit_never_runs_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that takes the log far past 1,000 pages returns without copying it into
    the database file (an emergency's commit took 20-23 ms when it was the one)."""
    monkeypatch.setattr(db, "CHECKPOINT_EVERY_S", 3600.0)  # the thread stays asleep
    path = tmp_path / "commits.db"
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        _write_past_the_autocheckpoint(engine)
        assert (tmp_path / "commits.db-wal").stat().st_size > 1000 * 4096
        assert _rows_in_the_database_file(path, tmp_path) == 0
    finally:
        engine.dispose()
    # the last connection to close checkpoints what is left
    assert _rows_in_the_database_file(path, tmp_path) == 3000


def test_the_engines_thread_checkpoints_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "thread.db"
    engine = db.make_engine(f"sqlite:///{path}")
    checkpointer = db.wal_checkpointer(engine)
    assert checkpointer is not None
    try:
        _write_past_the_autocheckpoint(engine)
        assert checkpointer.running
        # the pool keeps its connections open: only the thread can have copied the rows
        wait_until(
            lambda: (
                checkpointer.checkpoints >= 1 and _rows_in_the_database_file(path, tmp_path) == 3000
            ),
            timeout_s=30,
            what="the log checkpointed into the database file",
        )
        time.sleep(1.5 * db.CHECKPOINT_EVERY_S)  # a pass under way ends
        passes = checkpointer.checkpoints
        time.sleep(3 * db.CHECKPOINT_EVERY_S)
        assert checkpointer.checkpoints == passes  # nothing committed since: no pass
    finally:
        engine.dispose()
    assert not checkpointer.running  # stopped with the engine
