"""Dead letters: station messages quarantined instead of stored (see `DeadLetter`).

A station is untrusted input.  Whatever it sends that cannot be used is recorded here
(bounded: a prefix of the payload, and at most `PER_STATION_PER_MINUTE` records per
station and minute, the rest only counted) and then acknowledged to the broker.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.orm import Session

from broadcaster.dispatch.models import DeadLetter
from kernel.db import paginate
from stations.models import Station

PER_STATION_PER_MINUTE = 60
PAYLOAD_PREFIX_BYTES = 2048


@dataclass(frozen=True, slots=True)
class LetterIn:
    received_at: dt.datetime
    sid: str | None
    topic: str
    kind: str | None
    category: str
    reason: str
    size: int
    payload: bytes


def _text(payload: bytes) -> str:
    """A printable, storable rendering of (a prefix of) raw bytes: UTF-8 where it is,
    backslash escapes elsewhere; no NUL (PostgreSQL text cannot hold it)."""
    text = payload[:PAYLOAD_PREFIX_BYTES].decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


class Throttle:
    """At most ``per_minute`` records per station per minute (the rest are counted)."""

    def __init__(self, per_minute: int = PER_STATION_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def allow(self, sid: str | None) -> bool:
        key = sid or ""
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= 60:
                start, count = now, 0
            self._windows[key] = (start, count + 1)
            if len(self._windows) > 100_000:  # forget idle stations
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 60}
            return count < self.per_minute


def record(session: Session, letters: Iterable[LetterIn]) -> int:
    """Insert dead letters (no commit); returns how many."""
    rows = [
        {
            "received_at": letter.received_at,
            "sid": letter.sid[:64] if letter.sid else None,
            "topic": letter.topic.encode("utf-8", "replace").decode("utf-8")[:300],
            "kind": letter.kind[:16] if letter.kind else None,
            "category": letter.category[:16],
            "reason": letter.reason.replace("\x00", "\\x00")[:500],
            "size": min(letter.size, 2**31 - 1),
            "payload": _text(letter.payload),
        }
        for letter in letters
    ]
    if rows:
        session.execute(insert(DeadLetter), rows)
    return len(rows)


def query(
    *,
    sid: str | None = None,
    category: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    scope: frozenset[int] | None = None,
) -> Select[DeadLetter]:
    """Newest first; ``scope`` (area ids) limits it to stations there."""
    stmt = select(DeadLetter)
    if sid is not None:
        stmt = stmt.where(DeadLetter.sid == sid)
    if category is not None:
        stmt = stmt.where(DeadLetter.category == category)
    if since is not None:
        stmt = stmt.where(DeadLetter.received_at >= since)
    if until is not None:
        stmt = stmt.where(DeadLetter.received_at < until)
    if scope is not None:
        stmt = stmt.where(DeadLetter.sid.in_(select(Station.sid).where(Station.area_id.in_(scope))))
    return stmt.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())


def page(
    session: Session, stmt: Select[DeadLetter], *, limit: int, offset: int
) -> tuple[list[DeadLetter], int]:
    return paginate(session, stmt, limit, offset)


def purge(session: Session, *, older_than: dt.datetime) -> int:
    result = session.execute(delete(DeadLetter).where(DeadLetter.received_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)
