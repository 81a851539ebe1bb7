"""Recent sign-ins, so a request with a known token skips the database (and a hop to
the thread pool) on its way to the route.

Every protected request resolves its bearer token or session cookie: the token's row,
its user, the user's areas and their subtree.  An operator's dashboard and its progress
streams send the same token again and again, and an emergency broadcast should not
wait for that read.  `SignInCache` keeps what a token resolved to for ``ttl_s``
seconds (``BROADCASTER_AUTH_CACHE_S``, 5 by default; 0 turns it off).

What can change a sign-in takes effect at once in this process: a commit that changed
a user, a token, a user's areas or the area tree (signing out, revoking a token,
deactivating an account, changing a role, the emergency permission or the areas, a
reorganisation) empties every cache of the process (the session event listeners at the
end of this module: whatever the path, API, page, CLI code or import).  In another
process (a second API replica, a CLI command) it takes effect within ``ttl_s``.  A
token's expiry is checked on every hit.  A new token or account (a login) changes no
cached sign-in, nor does a change of what does not decide who may do what: a token's
``last_used_at``, a user's failed-login count, lock-out and ``updated_at``.  Raw SQL
text is not watched: nothing in the service writes these tables that way.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from broadcaster.auth.models import Token, User, user_areas
from kernel.security import Principal
from stations.models import Area

#: how many sign-ins a process keeps (least recently used out first)
MAX_ENTRIES = 10_000

#: attributes whose change leaves every sign-in as it was
_IGNORED: dict[type, frozenset[str]] = {
    Token: frozenset({"last_used_at"}),
    User: frozenset({"failed_logins", "locked_until", "updated_at"}),
}
_WATCHED_CLASSES = (Token, User, Area)
_WATCHED_TABLES = frozenset(
    {Token.__tablename__, User.__tablename__, Area.__tablename__, user_areas.name}
)
_CHANGED = "broadcaster.auth.signin_cache.changed"


@dataclass(frozen=True, slots=True)
class SignIn:
    """What a token resolved to: the principal, and what `TokenUsage` needs of the token."""

    principal: Principal
    id: int  # the token's (`broadcaster.auth.usage.UsedToken`)
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None


class SignInCache:
    """Token hash -> `SignIn`, each for ``ttl_s`` seconds; thread-safe."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, SignIn]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        _CACHES.add(self)

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def generation(self) -> int:
        """Taken before reading a sign-in from the database: `put` stores the read only
        if nothing was invalidated meanwhile (a revocation committed during the read)."""
        with self._lock:
            return self._generation

    def get(self, token_hash: str, now: dt.datetime) -> SignIn | None:
        if not self.enabled:
            return None
        with self._lock:
            found = self._entries.get(token_hash)
            if found is None:
                return None
            stored_at, sign_in = found
            if time.monotonic() - stored_at > self.ttl_s or (
                sign_in.expires_at is not None and sign_in.expires_at <= now
            ):
                del self._entries[token_hash]
                return None
            self._entries.move_to_end(token_hash)
            return sign_in

    def put(self, token_hash: str, sign_in: SignIn, generation: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            if generation != self._generation:
                return  # something changed while it was read: the next request reads again
            self._entries[token_hash] = (time.monotonic(), sign_in)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


#: every cache of the process, emptied together when a commit changed a sign-in
_CACHES: weakref.WeakSet[SignInCache] = weakref.WeakSet()


def _changes_sign_ins(instance: object) -> bool:
    ignored = _IGNORED.get(type(instance), frozenset())
    state = inspect(instance)
    return any(attr.key not in ignored and attr.history.has_changes() for attr in state.attrs)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    if session.info.get(_CHANGED):
        return
    # a new token or user is in no cache yet; a new area may belong to a cached scope
    if any(isinstance(i, Area) for i in session.new) or any(
        isinstance(i, _WATCHED_CLASSES) for i in session.deleted
    ):
        session.info[_CHANGED] = True
        return
    for instance in session.dirty:
        if isinstance(instance, _WATCHED_CLASSES) and _changes_sign_ins(instance):
            session.info[_CHANGED] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    """A statement that writes one of the tables straight (``update(User)``, the
    reorganisation's ``delete(user_areas)``), not through the unit of work.  (Also
    `TokenUsage.flush`'s ``last_used_at``, every few seconds at most: a few more reads,
    not worth telling apart.)"""
    if state.is_update or state.is_delete or state.is_insert:
        table: Any = getattr(state.statement, "table", None)
        if isinstance(table, Table) and table.name in _WATCHED_TABLES:
            state.session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        for cache in list(_CACHES):
            cache.clear()
