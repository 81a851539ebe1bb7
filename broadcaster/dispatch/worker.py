"""The active worker: MQTT bridge, outbox publisher and scheduled jobs (APScheduler 3).

Threads and jobs, each with its own database session:

- the bridge's consumer thread stores what stations send (`Ingestor`);
- the publisher thread publishes stored commands as soon as it is woken (the API wakes
  it in-process) or at least every `PUBLISH_POLL_S` (commands written by another
  process); a command handed over with the wake-up (`wake`) is sent without a read of
  the outbox, which waits for the next poll unless a wake-up without one asked for it;
  after every (re)connection it first republishes unacknowledged commands under their
  own `cmd_id`;
- jobs: plan watch (rebuild desired states when the plan signal moves, debounced),
  the daily roll, command expiry, play-log reconciliation, convergence (`sync` for
  stations missing media), telemetry retention and the alarm rules (per ingested
  batch, and every ``alarm_eval_interval_s`` for time-based rules); the alarm
  notifier thread sends what the rules queued; the reorganisations whose effective
  date has come (local midnight, and every 5 minutes to catch up).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audio_library.service import MediaLibrary
from broadcaster.alarms import service as alarms
from broadcaster.alarms.notify import Notifier, NotifyConfig
from broadcaster.db import read_session
from broadcaster.dispatch import broadcasts, deadletters, desired, outbox, playlog, staged
from broadcaster.dispatch.ingest import Ingestor
from broadcaster.dispatch.models import Command
from broadcaster.reorg import jobs as reorg_jobs
from broadcaster.settings import Settings
from firmware_bridge.client import Bridge, BridgeConfig
from kernel import signals
from kernel.db import commit_retrying, utcnow
from stations import live

log = logging.getLogger(__name__)

PUBLISH_POLL_S = 0.25
#: commands handed over by requests and not yet taken (more wait in the outbox table)
READY_MAX = 1000
#: a hand-over older than this (the broker was away) is left to the outbox's read, which
#: skips what expired or was stopped meanwhile
READY_FRESH_S = 2.0
#: how many of the commands it sent the publisher remembers, so that one it has already
#: read from the outbox and sent is not sent again when its hand-over comes after
SENT_MEMORY = 1000
PLAN_DEBOUNCE = dt.timedelta(seconds=1.5)
PLAN_MAX_WAIT = dt.timedelta(seconds=10)
SYNC_EVERY = dt.timedelta(minutes=5)
#: After this long without the broker, stations are shown offline (their wills cannot
#: reach us); a shorter blip changes nothing.
BROKER_DOWN_GRACE_S = 10.0
#: A command for this many stations or more (or for a group) opens a quiet moment after
#: its publish (`Settings.fanout_quiet_for`, `firmware_bridge.quiet`); one for a few stations
#: (a ping, a copy for a station back online) does not, so a ping's round trip is not
#: lengthened by it.
QUIET_MIN_STATIONS = 20


class Worker:
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        library: MediaLibrary,
        *,
        after_plan: Callable[[Session], None] | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        # commands' progress moved (acks stored, commands published or expired): the
        # progress streams of this process read it now instead of polling
        self._progress = on_progress or (lambda: None)
        self.factory = factory
        self.library = library
        self.tz = ZoneInfo(settings.timezone)
        self.after_plan = after_plan
        self.ingestor = Ingestor(
            factory,
            on_ack=lambda _cmd: self._progress(),
            on_late=self.wake,
            after_batch=self._evaluate_alarms,
        )
        self.notifier = Notifier(factory, NotifyConfig.from_settings(settings))
        self.bridge = Bridge(
            BridgeConfig(
                url=settings.mqtt_url,
                instance=settings.mqtt_instance,
                topic_prefix=settings.mqtt_topic_prefix,
                consumer_nice=settings.ingest_nice,
            ),
            self.ingestor,
            on_rejected=self.ingestor.rejected,
        )
        self.scheduler = BackgroundScheduler(timezone=self.tz)
        # a job still running at its next tick is skipped on purpose (coalesced)
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        self._wake = threading.Event()
        #: the next pass reads the outbox (`publish_pending`): set by a wake-up without a
        #: hand-over (a command committed elsewhere in this process) and by a hand-over
        #: dropped unsent; a pass for hand-overs alone sends them and reads nothing, so the
        #: reads do not take a core from the broker's fan-out (the poll reads anyway)
        self._read_due = False
        self._ready: deque[tuple[float, outbox.Outgoing]] = deque(maxlen=READY_MAX)
        self._sent: OrderedDict[int, None] = OrderedDict()
        #: the commands handed over with a wake-up, each set once its publish is over
        #: (done or failed) or it was dropped: `wait_sent`
        self._handed: OrderedDict[int, threading.Event] = OrderedDict()
        self._handed_lock = threading.Lock()
        self._stopping = threading.Event()
        self._rebuild_lock = threading.Lock()
        self._publisher: threading.Thread | None = None
        self._rebuilder: threading.Thread | None = None
        self._rebuild_request_lock = threading.Lock()
        self._rebuild_requested = False
        self._plan_generation: int | None = None
        self._last_sync: dict[int, dt.datetime] = {}
        self.last_rebuild: desired.ApplyResult | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.bridge.start()
        self._publisher = threading.Thread(target=self._publish_loop, name="outbox", daemon=True)
        self._publisher.start()
        jobs: list[tuple[Callable[[], Any], dict[str, Any]]] = [
            (self._plan_watch, {"trigger": "interval", "seconds": 1}),
            (self.rebuild_desired, {"trigger": "cron", "hour": 0, "minute": 0, "second": 10}),
            (self.rebuild_desired, {"trigger": "interval", "minutes": 15}),
            (self._expire, {"trigger": "interval", "seconds": 1}),
            (self._reconcile, {"trigger": "interval", "seconds": 30}),
            (self._converge, {"trigger": "interval", "seconds": 60}),
            (self._purge, {"trigger": "cron", "hour": 3, "minute": 17}),
            # reorganisations due today: at local midnight, and after in case we were down
            (self._reorganise, {"trigger": "cron", "hour": 0, "minute": 0, "second": 0}),
            (self._reorganise, {"trigger": "interval", "minutes": 5}),
            (self._alarms, {"trigger": "interval", "seconds": self.settings.alarm_eval_interval_s}),
        ]
        for func, trigger in jobs:
            self.scheduler.add_job(func, max_instances=1, coalesce=True, **trigger)
        self.scheduler.start()
        self.notifier.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.scheduler.shutdown(wait=True)
        self.notifier.stop()
        if self._publisher is not None:
            self._publisher.join(10)
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join(60)  # it uses the bridge and the database: let it finish
        self.bridge.stop()

    def wake(self, ready: Iterable[outbox.Outgoing] = ()) -> None:
        """Publish stored commands now (called after an API request commits one).

        ``ready``: what the request read for publishing before it committed; the
        publisher sends it without reading it again (an emergency's way out).  Only
        committed commands: one dropped here (more than `READY_MAX` waiting, or older
        than `READY_FRESH_S`) or not sent is still in the outbox, and the next read
        sends it."""
        handed = time.monotonic()
        self.bridge.quiet.end()  # what comes next goes out through the network thread
        ready = list(ready)
        with self._handed_lock:
            for out in ready:
                self._handed.setdefault(out.command_id, threading.Event())
            while len(self._handed) > READY_MAX:  # dropped from the full queue: let go
                self._handed.popitem(last=False)[1].set()
            if not ready or len(self._ready) + len(ready) > READY_MAX:
                self._read_due = True
        self._ready.extend((handed, out) for out in ready)
        self._wake.set()

    def wait_sent(self, command_ids: Iterable[int], timeout_s: float) -> None:
        """Wait (at most ``timeout_s`` in all) until the publisher is through with these
        commands handed over by `wake`: published (the broker acknowledged them), failed
        or dropped.  A request then writes their per-station rows
        (`broadcaster.dispatch.staged`) without taking the GIL and the write turn from
        the publish.  Commands never handed over are not waited for."""
        deadline = time.monotonic() + timeout_s
        for command_id in command_ids:
            event = self.handed_over(command_id)
            if event is not None:
                event.wait(max(0.0, deadline - time.monotonic()))

    def handed_over(self, command_id: int) -> threading.Event | None:
        """The command's hand-over the publisher is not through with yet, if any."""
        with self._handed_lock:
            return self._handed.get(command_id)

    def _through_with(self, command_id: int) -> None:
        with self._handed_lock:
            event = self._handed.pop(command_id, None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------------ outbox

    def _publish_loop(self) -> None:
        was_connected = False
        down_since: float | None = None
        marked_offline = False
        while not self._stopping.is_set():
            woken = self._wake.wait(PUBLISH_POLL_S)
            self._wake.clear()
            with self._handed_lock:
                read = self._read_due or not woken
                self._read_due = False
            connected = self.bridge.connected
            if connected:
                down_since, marked_offline = None, False
            elif was_connected or down_since is None:
                down_since = time.monotonic() if down_since is None else down_since
            if (
                not connected
                and not marked_offline
                and down_since is not None
                and time.monotonic() - down_since > BROKER_DOWN_GRACE_S
            ):
                marked_offline = self._mark_stations_offline()
            try:
                if connected and not was_connected:
                    read = True
                    self._write_staged()
                    self._republish_unacknowledged()
                    self._rebuild_in_background()
                if connected and self.publish_pending(read=read):
                    self._progress()
            except Exception:
                log.exception("outbox publisher failed; retrying")
                connected = False  # the next connected pass reads, as after a reconnection
            was_connected = connected

    def _mark_stations_offline(self) -> bool:
        """The broker has been unreachable for a while: no station can be vouched for."""
        try:
            with self.factory() as session:
                changed = live.mark_all_offline(session, at=utcnow())
                session.commit()
        except Exception:
            log.exception("could not mark stations offline while the broker is down")
            return False
        log.warning(
            "MQTT broker unreachable: %d station(s) shown offline until it is back", changed
        )
        return True

    def _rebuild_in_background(self) -> None:
        """Rebuild every station's desired state off the publisher thread (after a
        reconnect: what changed while we were away, or what could not be sent). One
        thread at a time; a request while it runs makes it go once more. `stop` waits."""
        with self._rebuild_request_lock:
            self._rebuild_requested = True
            if self._rebuilder is not None and self._rebuilder.is_alive():
                return
            self._rebuilder = threading.Thread(
                target=self._rebuild_loop, name="rebuild", daemon=True
            )
            self._rebuilder.start()

    def _rebuild_loop(self) -> None:
        while not self._stopping.is_set():
            with self._rebuild_request_lock:
                if not self._rebuild_requested:
                    self._rebuilder = None
                    return
                self._rebuild_requested = False
            try:
                self.rebuild_desired()
            except Exception:
                log.exception("rebuilding desired states after reconnecting failed")

    def _publish(self, out: outbox.Outgoing) -> bool:
        ok = all(
            self.bridge.publish_command_to_group(gid, out.message, wait_s=5.0) for gid in out.groups
        )
        if out.sids:
            topics = [self.bridge.topics.cmd(sid) for sid in out.sids]
            acked = self.bridge.publish_to_many(topics, out.message, wait_s=10.0)
            ok = ok and len(acked) == len(topics)
        if ok and not out.late and (out.groups or len(out.sids) >= QUIET_MIN_STATIONS):
            # the broker has it and copies it to every station now: our records of it,
            # and the acks coming back, wait a moment, as long as that takes for so many
            # stations (`firmware_bridge.quiet`, `Settings.fanout_quiet_for`)
            self.bridge.quiet.open(self.settings.fanout_quiet_for(out.stations))
        return ok

    def wait_quiet(self) -> None:
        """Return once no quiet moment after a fan-out is open (`firmware_bridge.quiet`)."""
        self.bridge.quiet.wait()

    def _send_all(self, outgoing: list[outbox.Outgoing]) -> int:
        """Publish each command, holding no transaction (on SQLite a write transaction
        held across the broker's acknowledgement would stop the ack ingest, and an
        emergency would wait for the write lock behind it), then record them as sent,
        once the quiet moment after the last fan-out is over (`firmware_bridge.quiet`):
        the commands of one pass (a morning's relays to every commune) all go out first,
        one after the other, with no quiet moment between them."""
        sent: list[tuple[outbox.Outgoing, dt.datetime]] = []
        for out in outgoing:
            sent_at = utcnow()  # when it left (a ping's clock offset is measured from it)
            published = self._publish(out)
            if not out.late:
                self._through_with(out.command_id)
            if not published:
                continue
            sent.append((out, sent_at))
            if not out.late:
                self._sent[out.command_id] = None
                while len(self._sent) > SENT_MEMORY:
                    self._sent.popitem(last=False)
        if sent:
            self.wait_quiet()  # the fan-out first; a hand-over ends the wait (`wake`)
        for out, sent_at in sent:
            with self.factory() as session:
                commit_retrying(
                    session, functools.partial(self._mark_published, session, out, sent_at)
                )
        return len(sent)

    @staticmethod
    def _mark_published(session: Session, out: outbox.Outgoing, sent_at: dt.datetime) -> None:
        command = session.get(Command, out.command_id)
        if command is not None:
            outbox.mark_published(
                session, command, sent_at, only_sids=out.sids if out.late else None
            )

    def _take_ready(self) -> list[outbox.Outgoing]:
        """The commands handed over since the last pass, less those already sent and
        those too old to trust without reading them again."""
        taken = []
        fresh_from = time.monotonic() - READY_FRESH_S
        while self._ready:
            handed, out = self._ready.popleft()
            if handed >= fresh_from and out.command_id not in self._sent:
                taken.append(out)
            else:
                self._through_with(out.command_id)
                if handed < fresh_from:  # left to the outbox's read, which checks it
                    with self._handed_lock:
                        self._read_due = True
        return taken

    def publish_pending(self, *, read: bool = True) -> int:
        """Send the commands handed over, then (``read``) those the outbox holds and the
        late copies for stations back online; how many were sent."""
        count = self._send_all(self._take_ready())
        if not read:  # unless a hand-over was dropped, or a wake-up asked for it, meanwhile
            with self._handed_lock:
                read, self._read_due = self._read_due, False
            if not read:
                return count
        with read_session(self.factory) as reader:
            pending = [outbox.outgoing(reader, c) for c in outbox.to_publish(reader, utcnow())]
        count += self._send_all(pending)
        with read_session(self.factory) as reader:
            late = []
            for command, sids in outbox.late_deliveries(reader, utcnow()):
                log.info("sending %s to %d station(s) back online", command.cmd_id, len(sids))
                late.append(outbox.outgoing(reader, command, late=sids))
        return count + self._send_all(late)

    def _write_staged(self) -> None:
        """Rows a request staged and did not write (it died between its commit and the
        write: `broadcaster.dispatch.staged`): written before anything is sent again."""
        with self.factory() as session:
            if staged.write_all(session):
                session.commit()

    def _republish_unacknowledged(self) -> None:
        with read_session(self.factory) as reader:
            again = []
            for command in outbox.unacknowledged(reader, utcnow()):
                if command.published_at is None:
                    continue  # publish_pending sends it
                log.info("republishing %s (%s) after (re)connecting", command.cmd_id, command.type)
                again.append(outbox.outgoing(reader, command))
        self._send_all(again)

    # ------------------------------------------------------------------ desired state

    def rebuild_desired(self, station_ids: set[int] | None = None) -> desired.ApplyResult:
        with self._rebuild_lock:
            started = time.monotonic()
            with self.factory() as session:
                now = utcnow()
                docs = desired.build(
                    session, self.library, tz=self.tz, now=now, station_ids=station_ids
                )
                result = desired.apply(session, self.bridge, docs, tz=self.tz, now=now)
                session.commit()
            if self.after_plan is not None:
                # the broker account sync waits on the network: it reads in a session
                # that holds no write lock (SQLite) while it waits
                with read_session(self.factory) as reader:
                    self.after_plan(reader)
            self.last_rebuild = result
            log.info(
                "desired states: %d changed, %d published, %d unchanged, %d not sent (%.2f s)",
                result.changed,
                result.published,
                result.unchanged,
                result.failed,
                time.monotonic() - started,
            )
            return result

    def _plan_watch(self) -> None:
        with self.factory() as session:
            generation, changed_at = signals.current(session)
        if self._plan_generation is not None:
            if generation == self._plan_generation:
                return
            now = utcnow()
            if changed_at is not None and now - changed_at < PLAN_DEBOUNCE:
                return  # still changing; wait for it to settle
        try:
            self.rebuild_desired()
        except OperationalError as exc:
            # a deadlock with the ingest (both create a new station's state row), a lost
            # connection: the generation stays unseen, so the next tick rebuilds again
            log.warning("desired states not rebuilt, retried next tick: %s", str(exc)[:300])
            return
        self._plan_generation = generation

    # ------------------------------------------------------------------ upkeep

    def _expire(self) -> None:
        with self.factory() as session:
            # a command settled before its not_after is only marked done (and its
            # broadcast finished): counted as a change too
            if outbox.expire_due(session, utcnow()):
                session.commit()
                self._progress()

    def _reconcile(self) -> None:
        with self.factory() as session:
            playlog.mark_missed(session, utcnow())
            session.commit()

    def _converge(self) -> None:
        """Ask stations that applied their plan but miss media to fetch it again (each
        at most every `SYNC_EVERY`).  The stations are looked at in a session that only
        reads, and the few to ask are written in a transaction of their own: on SQLite
        the write lock is not held while thousands of stations are looked at (at 10,000
        an emergency waited 0.8 s behind it once a minute)."""
        now = utcnow()
        with read_session(self.factory) as session:
            missing = live.missing_media(session)
        due = [
            station_id
            for station_id in missing
            if (last := self._last_sync.get(station_id)) is None or now - last >= SYNC_EVERY
        ]
        if not due:
            return
        with self.factory() as session:
            for station_id in due:
                broadcasts.command_station(
                    session, station_id, type="sync", body={}, created_by="system:convergence"
                )
            session.commit()
        self._last_sync.update(dict.fromkeys(due, now))
        self.wake()

    def _evaluate_alarms(self, session: Session, station_ids: set[int]) -> None:
        """The alarm rules for the stations of an ingested batch (in its transaction);
        a rule that fails never loses the batch."""
        try:
            with session.begin_nested():
                alarms.evaluate(
                    session,
                    utcnow(),
                    station_ids,
                    window_s=self.settings.alarm_count_window_s,
                )
        except OperationalError:
            raise  # the batch is offered again (RetryLater)
        except Exception:
            log.exception("alarm evaluation of %d station(s) failed", len(station_ids))

    def _alarms(self) -> None:
        """Time-based rules (offline too long...), held clears, and the rules on what
        dispatch saw in the counting window (plays missed, commands unacknowledged; an
        hour unless ``alarm_count_window_s`` says otherwise)."""
        with self.factory() as session:
            now = utcnow()
            window_s = self.settings.alarm_count_window_s
            since = now - dt.timedelta(seconds=window_s)
            facts = alarms.DispatchFacts(
                plays_missed=playlog.missed_by_station(session, since),
                unacknowledged=outbox.unacknowledged_by_station(session, since),
            )
            alarms.evaluate(session, now, due_only=True, dispatch=facts, window_s=window_s)
            session.commit()

    def _reorganise(self) -> None:
        reorg_jobs.apply_due(self.factory, self.tz)

    def _purge(self) -> None:
        cutoff = utcnow() - dt.timedelta(days=self.settings.telemetry_retention_days)
        with self.factory() as session:
            removed = live.purge_telemetry(session, older_than=cutoff)
            deadletters.purge(session, older_than=cutoff)
            playlog.purge_cancelled(session, utcnow() - dt.timedelta(days=7))
            session.commit()
        log.info("telemetry retention: %d old samples removed", removed)

    def status(self) -> dict[str, Any]:
        stats = self.bridge.stats()
        health = self.bridge.health()
        return {
            "mqtt_connected": stats.connected,
            "mqtt_loop_alive": health.loop_alive,
            "mqtt_loop_restarts": health.loop_restarts,
            "last_message_at": health.last_message_at,
            "unacked": health.unacked,
            "mqtt_protocol": stats.protocol,
            "received": stats.received,
            "invalid": stats.invalid,
            "quarantined": stats.quarantined,
            "dropped": stats.dropped,
            "overflow": stats.overflow,
            "deferred": stats.deferred,
            "store_retries": stats.retries,
            "handler_errors": stats.handler_errors,
            "reconnects": stats.reconnects,
            "queue_depth": stats.queue_depth,
            "ingest": self.ingestor.stats(),
            "alarm_notifications": {"sent": self.notifier.sent, "failed": self.notifier.failed},
            "last_rebuild": None if self.last_rebuild is None else vars(self.last_rebuild),
        }
