"""When each token was last used, written in the background, not on every request.

Authenticating a request only reads.  A token's ``last_used_at`` (shown in the token
list so an administrator can spot an unused integration) is noted in memory at most
once a minute per token and written by a small background thread in one short
transaction every `FLUSH_EVERY_S` seconds (and at shutdown).  A request therefore
never takes the database's write lock to authenticate (with SQLite, that lock is
shared with the ingest of what stations send).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.auth.models import Token
from kernel.db import utcnow

log = logging.getLogger(__name__)

RESOLUTION = dt.timedelta(minutes=1)
FLUSH_EVERY_S = 15.0


class UsedToken(Protocol):
    """A token as authentication saw it (the row, or a cached sign-in)."""

    @property
    def id(self) -> int: ...
    @property
    def last_used_at(self) -> dt.datetime | None: ...


class TokenUsage:
    """Pending ``last_used_at`` updates, flushed by a background thread."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._pending: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, token: UsedToken, now: dt.datetime | None = None) -> None:
        """Remember that ``token`` was used now (if its stored time is over a minute old)."""
        now = now or utcnow()
        if token.last_used_at is not None and now - token.last_used_at < RESOLUTION:
            return
        with self._lock:
            self._pending[token.id] = now

    def flush(self) -> int:
        """Write what is pending (one transaction); returns how many tokens."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with self._factory() as session:
                for token_id, at in pending.items():
                    session.execute(
                        update(Token).where(Token.id == token_id).values(last_used_at=at)
                    )
                session.commit()
        except Exception:
            log.warning("could not record token use; will retry", exc_info=True)
            with self._lock:
                for token_id, at in pending.items():
                    self._pending.setdefault(token_id, at)
            return 0
        return len(pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="token-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_EVERY_S):
            self.flush()
