"""Exactly one active worker.

- PostgreSQL: a session-level advisory lock held on a dedicated connection.  If the
  active worker dies its connection closes and the lock is free; a standby polling
  every `POLL_S` takes over (well inside 15 s).  The holder checks its connection
  every poll too and steps down at once if it is lost (the lock may be gone).
  Advisory locks are per database, so the key is derived from the schema the service
  works in (its ``search_path``): deployments sharing a database, one schema each (as
  parallel test sessions do), each elect their own worker.
- SQLite: one process only (SQLite is the single-machine default); an exclusive
  `flock` next to the database file stops a second worker on the same database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

POLL_S = 2.0
LOCK_NAME = "loa/v1 worker"


def schema_key(conn: Connection) -> int:
    """The advisory-lock key of the schema ``conn`` works in (a signed 64-bit int)."""
    schema = conn.execute(text("SELECT current_schema()")).scalar() or ""
    digest = hashlib.sha256(f"{LOCK_NAME}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class AdvisoryLock:
    def __init__(self, engine: Engine, key: int | None = None) -> None:
        self.engine = engine
        self.key = key  # default: `schema_key` of the engine's connections
        self._conn: Connection | None = None
        self._held: int | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn: Connection | None = None
        try:
            conn = self.engine.connect()
            key = self.key if self.key is not None else schema_key(conn)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
        except SQLAlchemyError as exc:
            log.warning("leader election: database unreachable (%s)", exc.__class__.__name__)
            if conn is not None:
                with contextlib.suppress(SQLAlchemyError):
                    conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        self._held = key
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except SQLAlchemyError:
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._held})
                self._conn.commit()
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
            self._held = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("ab")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.truncate(0)
        fh.write(str(os.getpid()).encode())
        fh.flush()
        self._fh = fh
        return True

    def still_held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def lock_for(engine: Engine) -> LeaderLock:
    url = make_url(engine.url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(engine)
    database = url.database or "memory"
    return FileLock(Path(f"{database}.worker.lock"))
