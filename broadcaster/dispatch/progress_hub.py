"""Live broadcast progress for the server-sent event streams: one hub per API process.

Each open progress stream (`GET /api/v1/broadcasts/{id}/events`, the dashboard's
broadcast page) used to read the database twice a second in the request threadpool:
a hundred open pages made a hundred readers and starved every other request.  Now

- one poller thread per process reads the progress of every broadcast some stream is
  watching, in one short read session, when it is woken (`notify`: the in-process
  worker after it stored acknowledgements, published or expired commands; a route
  after it stopped a broadcast) or at least every ``poll_s`` (changes committed by
  another process: the active worker of another API replica on PostgreSQL);
- a stream waits on the hub (asyncio), never on the database, and is handed the
  latest snapshot when it changed: progress is a state, not a log, so a slow client
  skips intermediate states instead of queueing them;
- a snapshot's id is a digest of what it says, the same in every process, so a client
  that reconnects with ``Last-Event-ID`` (the browser does it by itself) gets the
  current state only if it changed since the event it last saw, whichever replica
  answers.

The cost of N streams watching one broadcast is one progress read per change or
``poll_s``, whatever N is.  No FastAPI here: the route adapts it (`dispatch.router`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.db import read_session
from broadcaster.dispatch import reports
from broadcaster.dispatch.models import Broadcast, BroadcastStatus
from broadcaster.dispatch.schemas import Progress

log = logging.getLogger(__name__)

#: Fallback poll for changes another process committed (seconds).
POLL_S = 1.0
#: Reads are at least this far apart: a burst of acks makes one read, not one per ack.
MIN_GAP_S = 0.1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A broadcast's progress at one moment, as the stream sends it."""

    broadcast_id: int
    progress: Progress
    status: str
    event_id: str

    @property
    def settled(self) -> bool:
        """Nothing will change any more: the broadcast ended (the worker finishes it once
        every target has settled, or an operator stopped it), so `done` and the API agree."""
        return self.status != BroadcastStatus.ACTIVE.value


def snapshot(session: Session, broadcast: Broadcast) -> Snapshot:
    """The broadcast's progress now (reads only)."""
    read = reports.broadcast_read(session, broadcast, with_stations=False)
    payload = read.progress.model_dump_json() + "|" + read.status
    digest = hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()
    return Snapshot(
        broadcast_id=broadcast.id,
        progress=read.progress,
        status=read.status,
        event_id=f"{broadcast.id}-{digest}",
    )


class Watch:
    """One stream's subscription: `changed` wakes when the hub has a new snapshot."""

    def __init__(self, hub: ProgressHub, broadcast_id: int) -> None:
        self.hub = hub
        self.broadcast_id = broadcast_id
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def _signal(self) -> None:  # from the poller thread
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._event.set)

    async def changed(self, timeout_s: float) -> bool:
        """Wait until the snapshot changed (True) or `timeout_s` passed (False)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def latest(self) -> Snapshot:
        return self.hub.latest(self.broadcast_id)


class ProgressHub:
    """Holds the latest snapshot of every watched broadcast and refreshes them together."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        poll_s: float = POLL_S,
        min_gap_s: float = MIN_GAP_S,
        quiet: Callable[[], None] | None = None,
    ) -> None:
        self._factory = factory
        #: waits out the quiet moment after a command's fan-out (`firmware_bridge.quiet`)
        #: before a read: the broker's copies to the stations go first
        self._quiet = quiet or (lambda: None)
        self.poll_s = poll_s
        self.min_gap_s = min_gap_s
        self._lock = threading.Lock()
        self._watches: dict[int, set[Watch]] = {}
        self._latest: dict[int, Snapshot] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: progress reads made by the poller (each covers every watched broadcast)
        self.refreshes = 0

    # ------------------------------------------------------------------ streams

    def subscribe(self, first: Snapshot) -> Watch:
        """Watch `first`'s broadcast (call on the event loop); `first` is what the caller
        just read, kept unless the hub already holds a snapshot of it."""
        watch = Watch(self, first.broadcast_id)
        with self._lock:
            self._watches.setdefault(first.broadcast_id, set()).add(watch)
            self._latest.setdefault(first.broadcast_id, first)
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="progress-hub", daemon=True)
                self._thread.start()
        return watch

    def unsubscribe(self, watch: Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.broadcast_id)
            if watches is None:
                return
            watches.discard(watch)
            if not watches:
                del self._watches[watch.broadcast_id]
                self._latest.pop(watch.broadcast_id, None)

    def latest(self, broadcast_id: int) -> Snapshot:
        with self._lock:
            return self._latest[broadcast_id]

    def watching(self) -> dict[int, int]:
        """Open streams per watched broadcast."""
        with self._lock:
            return {bid: len(w) for bid, w in self._watches.items()}

    # ------------------------------------------------------------------ producers

    def notify(self) -> None:
        """Something that may move a broadcast's progress was committed (thread-safe,
        cheap: it only wakes the poller)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    # ------------------------------------------------------------------ the poller

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            if self._stopping.is_set():
                return
            # let a burst of notifications settle into one read
            time.sleep(self.min_gap_s)
            self._quiet()
            self._wake.clear()
            with self._lock:
                ids = list(self._watches)
            if not ids:
                continue
            try:
                self.refresh(ids)
            except Exception:
                log.exception("reading broadcast progress failed; retrying")
                self._stopping.wait(self.poll_s)

    def refresh(self, broadcast_ids: Collection[int]) -> None:
        """Read the watched broadcasts' progress in one session; wake the streams of
        those that changed."""
        fresh: list[Snapshot] = []
        with read_session(self._factory) as session:
            for broadcast_id in broadcast_ids:
                broadcast = session.get(Broadcast, broadcast_id)
                if broadcast is not None:
                    fresh.append(snapshot(session, broadcast))
        self.refreshes += 1
        woken: list[Watch] = []
        with self._lock:
            for snap in fresh:
                watches = self._watches.get(snap.broadcast_id)
                if not watches:
                    continue
                old = self._latest.get(snap.broadcast_id)
                if old is not None and old.event_id == snap.event_id:
                    continue
                self._latest[snap.broadcast_id] = snap
                woken.extend(watches)
        for watch in woken:
            watch._signal()
