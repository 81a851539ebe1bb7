"""Database engine, sessions and migrations.

SQLite (the default) runs with WAL, foreign keys on and a busy timeout, and its
write-ahead log is checkpointed by a thread of the engine's own, not by whichever
transaction commits (`WalCheckpointer`); PostgreSQL
(``postgresql://`` or ``postgresql+psycopg://``) through psycopg 3.  Migrations are
Alembic's, applied by ``broadcaster db upgrade`` and at service start-up.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from alembic import command
from kernel.db import READ_ONLY, WRITE_FIRST

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"

log = logging.getLogger(__name__)

#: Longest a writer waits for its turn before it goes to SQLite's own busy wait anyway
#: (SQLite's busy timeout is as long): a thread that opened a second writing session
#: inside its first must not wait for itself for good.
WRITE_TURN_TIMEOUT_S = 30.0

#: How often the checkpointer copies what was committed since its last pass from the
#: write-ahead log into the database file.
CHECKPOINT_EVERY_S = 1.0
#: A write-ahead log that grew past this in a burst is cut back to it when it restarts.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not pysqlite, starts transactions (see `_sqlite_begin`)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # the engine's checkpointer does it (`WalCheckpointer`)
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


class WalCheckpointer:
    """Copies the write-ahead log into the database file off every writer's path.

    SQLite's automatic checkpoint runs inside the commit that takes the log past 1,000
    pages, whichever it is: an operator's emergency to 1,000 stations, committed after
    rounds of acks had filled the log, took 20–23 ms to commit instead of 1.5–3 ms (the
    checkpoint syncs the database file).  Connections here turn it off; this thread runs
    a PASSIVE checkpoint every CHECKPOINT_EVERY_S when something was committed since its
    last pass.  A passive checkpoint waits for nobody: readers and writers carry on, and
    what a reader still needs is copied on a later pass.  The thread starts with the
    engine's first connection, stops when the engine is disposed (and starts again if it
    is used after), and ends by itself once the engine is gone.  A failed pass is logged
    and tried again on the next; the last connection to close checkpoints what is left.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._failing = False
        #: passes run, for tests and diagnostics
        self.checkpoints = 0

    def committed(self) -> None:
        self._dirty = True

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="sqlite-checkpoint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(CHECKPOINT_EVERY_S + 30)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(CHECKPOINT_EVERY_S) and self._pass():
            pass

    def _pass(self) -> bool:
        """Checkpoint if something was committed since the last pass; False once the
        engine is gone (the engine is held only while a pass runs)."""
        engine = self._engine()
        if engine is None:
            return False
        if not self._dirty:
            return True
        self._dirty = False  # a commit from now on is copied on the next pass
        try:
            frames, copied = self.checkpoint(engine)
        except Exception as exc:
            self._dirty = True
            if not self._failing:
                log.warning(
                    "SQLite checkpoint failed (tried again in %.0f s): %s", CHECKPOINT_EVERY_S, exc
                )
            self._failing = True
            return True
        self._failing = False
        if copied < frames:
            self._dirty = True  # a reader still needed the rest
        return True

    def checkpoint(self, engine: Engine) -> tuple[int, int]:
        """One passive checkpoint: (frames in the log, frames now in the database)."""
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                _busy, frames, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()
        self.checkpoints += 1
        return int(frames), int(copied)


_CHECKPOINTERS: weakref.WeakKeyDictionary[Engine, WalCheckpointer] = weakref.WeakKeyDictionary()


def wal_checkpointer(engine: Engine) -> WalCheckpointer | None:
    """The checkpointer of a SQLite file database's engine (None for any other)."""
    return _CHECKPOINTERS.get(engine)


class WriteTurns:
    """First come, first served turns for this process's SQLite writers.

    SQLite's busy handler does not queue: a waiting writer sleeps and polls, while the
    writer that just committed starts its next transaction at once.  Under a steady ack
    ingest (one transaction per batch, back to back) an operator's emergency then waited
    seconds for the write lock (4 s in the spoken-emergency benchmark at 1,000 stations).
    Writers take a turn here before ``BEGIN IMMEDIATE``, in the order they asked, and
    give it back when their transaction ends, so the emergency is next after the batch
    being written.  A writer someone waits on (``first``: an API request) goes before the
    background writers already waiting (the ingest's next batch, a worker's job), after
    the other ``first`` ones.  Read-only sessions take no turn.  PostgreSQL needs none
    (row locks).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        #: how many of the first waiting are ``first`` writers
        self._first = 0
        self._held = False

    def take(self, *, first: bool = False) -> bool:
        """Wait for this caller's turn; False when it gave up (see WRITE_TURN_TIMEOUT_S)."""
        me = object()
        with self._changed:
            if first:
                self._waiting.insert(self._first, me)
                self._first += 1
            else:
                self._waiting.append(me)
            got = self._changed.wait_for(
                lambda: not self._held and self._waiting[0] is me, timeout=WRITE_TURN_TIMEOUT_S
            )
            if first:
                self._first -= 1
            if not got:
                self._waiting.remove(me)
                self._changed.notify_all()
                return False
            self._waiting.popleft()
            self._held = True
            return True

    def give_back(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()


_TURN = "broadcaster_write_turn"


def _sqlite_begin(turns: WriteTurns, connection: Any) -> None:
    """Take the write lock when a transaction starts, unless it only reads.

    With SQLite's default deferred transactions, a transaction that read first and
    writes later fails at once ("database is locked") if another writer got in between;
    the busy timeout cannot help.  BEGIN IMMEDIATE makes writers queue up (for at most
    the busy timeout) instead.  Every transaction here is short, and SQLite is the
    single-process default; production runs PostgreSQL.  A read-only session begins
    deferred: in WAL mode a reader sees the last commit at once and never waits for
    the writer (a dashboard following a broadcast while thousands of acks are stored).
    """
    options = connection.get_execution_options()
    if options.get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
        return
    if turns.take(first=bool(options.get(WRITE_FIRST))):
        connection.info[_TURN] = turns
    else:
        log.warning("no write turn after %.0f s; waiting on SQLite itself", WRITE_TURN_TIMEOUT_S)
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        _sqlite_end(connection)
        raise


def _sqlite_end(connection: Any, *_: Any) -> None:
    """The transaction ended (committed or rolled back), or its connection went back to
    the pool: the next writer's turn."""
    turns = connection.info.pop(_TURN, None)
    if turns is not None:
        turns.give_back()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=10,
            max_overflow=20,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        turns = WriteTurns()
        if parsed.database and parsed.database != ":memory:":
            checkpointer = WalCheckpointer(engine)
            _CHECKPOINTERS[engine] = checkpointer
            event.listen(engine, "connect", lambda *_: checkpointer.ensure_running())
            event.listen(engine, "commit", lambda *_: checkpointer.committed())
            event.listen(engine, "engine_disposed", lambda *_: checkpointer.stop())

        def begin(connection: Any) -> None:
            _sqlite_begin(turns, connection)

        def checkin(_dbapi_connection: Any, record: Any) -> None:
            _sqlite_end(record)  # an invalidated connection's transaction ended too

        event.listen(engine, "begin", begin)
        event.listen(engine, "commit", _sqlite_end)
        event.listen(engine, "rollback", _sqlite_end)
        event.listen(engine, "checkin", checkin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session for one job: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads only: on SQLite it does not queue behind writers."""
    with factory() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Apply every migration up to `revision`."""
    command.upgrade(alembic_config(engine), revision)
