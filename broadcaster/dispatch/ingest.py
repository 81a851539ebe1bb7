"""What stations send, stored: one transaction per batch from the bridge.

The bridge acknowledges a QoS 1 message to the broker only after this handler has
returned, so storing it is the last step before the station may forget it:

- values no column can hold (an integer past 64 bits, a timestamp in year 10000) are
  found before anything is written (`kernel.bounds`) and the message is quarantined as
  a dead letter, with the reason;
- each message is applied inside a savepoint, telemetry included (one batched insert,
  then row by row if that fails), so one station's bad message never rolls back
  another's; the births, reported states, telemetry, acknowledgements and play events
  of stations that sent nothing else in the batch (a broadcast's thousands, a reconnect
  storm) are applied with a few statements for all, in one savepoint, and one by one if
  that fails (`Ingestor._batched`);
- a station's telemetry is stored before its next message that reads it (a birth or a
  death: was the station on battery, so did the last connection end with the mains? a
  report: the volume), the rest of a batch's telemetry with one insert at its end;
- a busy or unreachable database (SQLite locked by another process, PostgreSQL
  failing over) raises `RetryLater`: the bridge offers the same batch again with
  backoff, unacknowledged meanwhile, so nothing is dropped;
- what the bridge itself refused (bad topic, bad JSON, schema) arrives in `rejected`
  and is quarantined the same way.

Messages from stations the registry does not know are not stored; they are counted and
logged once per station connection (a new birth starts a new connection).  Acks and
events that name unknown commands or plan items are counted and logged, not stored as
if valid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import deadletters, outbox, playlog, staged
from firmware_bridge.client import Inbound, Rejected
from firmware_bridge.errors import RetryLater
from firmware_bridge.messages import Ack, Event, Reported, StationState, Telemetry
from kernel.bounds import MAX_INT32, walk_problem
from stations import live

log = logging.getLogger(__name__)

#: How much ingest work runs between two offers of the GIL to other threads.
YIELD_EVERY_S = 0.002


def _transient(exc: BaseException) -> bool:
    """A database error that goes away by waiting (locked, connection lost, failover)."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@contextmanager
def _retry_later_on_busy_database() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _transient(exc):
            raise RetryLater(f"database busy or unreachable: {exc}"[:300]) from exc
        raise


def unstorable(inbound: Inbound) -> str | None:
    """Why ``inbound`` holds a value no column can hold, or None."""
    message = inbound.message
    version = getattr(message, "desired_version", None)
    if isinstance(version, int) and version > MAX_INT32:
        return f"desired_version {str(version)[:40]} is out of range"
    return walk_problem(message)


class Ingestor:
    """The bridge's inbound handlers (called from the bridge's consumer thread)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        on_ack: Callable[[str], None] | None = None,
        on_late: Callable[[], None] | None = None,
        throttle: deadletters.Throttle | None = None,
        after_batch: Callable[[Session, set[int]], None] | None = None,
    ) -> None:
        self._factory = factory
        self._on_ack = on_ack
        self._after_batch = after_batch  # in the batch's transaction (alarm rules)
        self._on_late = on_late  # a station came back with broadcasts still to reach it
        self._sids: dict[str, int] = {}
        self._unknown_reported: set[str] = set()
        self._lock = threading.Lock()
        self._throttle = throttle or deadletters.Throttle()
        self.counters: Counter[str] = Counter()
        #: this thread's tally of the transaction being written (`_counted`)
        self._tally = threading.local()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _count(self, key: str, n: int = 1) -> None:
        if not n:
            return
        pending: Counter[str] | None = getattr(self._tally, "pending", None)
        if pending is not None:
            pending[key] += n
            return
        with self._lock:
            self.counters[key] += n

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """Count what the enclosed transaction stores only once it has committed: a
        reader who sees a count sees the rows behind it, and a batch that is rolled back
        and offered again (`RetryLater`) is not counted twice."""
        pending: Counter[str] = Counter()
        self._tally.pending = pending
        try:
            yield
        finally:
            self._tally.pending = None
        with self._lock:
            self.counters.update(pending)

    def _station_id(self, session: Session, sid: str) -> int | None:
        station_id = self._sids.get(sid)
        if station_id is None:
            self._sids = live.sid_index(session)
            station_id = self._sids.get(sid)
        return station_id

    # ------------------------------------------------------------------ quarantine

    def rejected(self, batch: list[Rejected]) -> None:
        """Quarantine what the bridge refused (its ``on_rejected`` handler)."""
        letters = [
            deadletters.LetterIn(
                received_at=r.received_at,
                sid=r.sid,
                topic=r.topic,
                kind=r.kind,
                category=r.category,
                reason=r.reason,
                size=r.size,
                payload=r.payload,
            )
            for r in batch
        ]
        with self._counted(), _retry_later_on_busy_database(), self._factory() as session:
            self._quarantine(session, letters)
            session.commit()

    def _quarantine(self, session: Session, letters: list[deadletters.LetterIn]) -> None:
        kept = [letter for letter in letters if self._throttle.allow(letter.sid)]
        self._count("dead_letters", len(kept))
        if len(kept) < len(letters):
            self._count("dead_letters_suppressed", len(letters) - len(kept))
        deadletters.record(session, kept)

    def _quarantine_inbound(
        self, session: Session, inbound: Inbound, category: str, reason: str
    ) -> None:
        log.warning("quarantined %s from %s: %s", inbound.kind.value, inbound.sid, reason)
        try:
            payload = json.dumps(inbound.message.model_dump(mode="json")).encode()
        except Exception:  # a value even the serialiser refuses
            payload = repr(inbound.message).encode("utf-8", "replace")
        letter = deadletters.LetterIn(
            received_at=inbound.received_at,
            sid=inbound.sid,
            topic=inbound.topic,
            kind=inbound.kind.value,
            category=category,
            reason=reason,
            size=len(payload),
            payload=payload,
        )
        with session.begin_nested():
            self._quarantine(session, [letter])

    # ------------------------------------------------------------------ storing

    def __call__(self, batch: list[Inbound]) -> None:
        acked: list[str] = []
        late = False
        with self._counted(), _retry_later_on_busy_database(), self._factory() as session:
            telemetry: list[tuple[Inbound, live.TelemetryRow]] = []
            #: stations whose alarm rules may now judge differently (not an ack's or a
            #: play event's: neither changes what the rules look at)
            touched: set[int] = set()
            # the rows of commands just sent may still be staged (written right after
            # the publish by the request that sent them): a station's ack or play event
            # can be here first, and then writes them (`broadcaster.dispatch.staged`)
            staged.write_for_cmd_ids(
                session,
                {
                    cmd_id
                    for inbound in batch
                    if isinstance(inbound.message, Ack | Event)
                    and (cmd_id := inbound.message.cmd_id) is not None
                },
            )
            station_ids = {
                inbound.sid: station_id
                for inbound in batch
                if (station_id := self._station_id(session, inbound.sid)) is not None
            }
            # A station that sent only births, reported states, telemetry,
            # acknowledgements and play events in this batch (every station during a
            # broadcast, or starting up after a broker restart) takes the batched path:
            # its births and reports applied to rows read at once with one flush for
            # the batch, its telemetry with the batch's (one INSERT), its acks
            # applied with one read and one UPDATE (`outbox.apply_acks`), its events
            # stored with one INSERT and their plays read with one SELECT
            # (`playlog.record_events`), its last_seen with one more statement
            # (`live.touch_many`).  Any other message of a station (a death, a fault
            # event...) sends all of its batch through the path below, in order; so does
            # telemetry before a birth or report of its station (the batched path stores
            # telemetry after the batch's other messages: a birth would not see the
            # ``on_battery`` that came before it, nor a report the volume).
            others = {inbound.sid for inbound in batch if not _batchable(inbound)}
            others.update(_telemetry_then_state(batch))
            fast: list[Inbound] = []
            slow: list[Inbound] = []
            for inbound in batch:
                sid = inbound.sid
                (fast if sid in station_ids and sid not in others else slow).append(inbound)
            #: the stations whose birth was stored, and when it arrived
            born: dict[int, dt.datetime] = {}
            if fast:
                acked.extend(self._batched(session, fast, station_ids, born, touched, telemetry))
            # The session's identity map holds objects weakly: a station's state row,
            # clean again after each message's savepoint, would be dropped and selected
            # anew for every message of a burst.  Hold each one for the batch.
            # The rows a batch needs are read up front, one statement per kind: every
            # state row of its stations and every command and target its acks name.
            held: dict[int, object] = dict(
                live.load_states(
                    session, sorted({station_ids[i.sid] for i in slow if i.sid in station_ids})
                )
            )
            acks = outbox.load_ack_targets(
                session,
                (
                    (inbound.message.cmd_id, station_ids[inbound.sid])
                    for inbound in slow
                    if isinstance(inbound.message, Ack) and inbound.sid in station_ids
                ),
            )
            #: the telemetry of the path in order not stored yet, by station: stored
            #: before the station's next message that is not an ack, else with the batch's
            waiting: dict[int, list[tuple[Inbound, live.TelemetryRow]]] = {}
            yielded = time.monotonic()
            for inbound in slow:
                # A burst is pure Python work between short SQLite calls: offer the GIL
                # to a waiting API thread every YIELD_EVERY_S of it (it would otherwise
                # wait for the 5 ms switch interval on every return from I/O).  Not after
                # every message: each offer waits for the GIL to come back, which the
                # profile of a 1,000-station broadcast showed as the ingest thread's
                # largest single cost (40 % of its samples).
                if time.monotonic() - yielded >= YIELD_EVERY_S:
                    time.sleep(0)
                    yielded = time.monotonic()
                station_id = station_ids.get(inbound.sid)
                if station_id is None:
                    self._unknown(inbound)
                    continue
                if _judged(inbound):
                    touched.add(station_id)
                problem = unstorable(inbound)
                if problem is not None:
                    self._quarantine_inbound(session, inbound, "range", problem)
                    continue
                if isinstance(inbound.message, Telemetry):
                    row = _telemetry_row(station_id, inbound)
                    waiting.setdefault(station_id, []).append((inbound, row))
                    continue
                if station_id not in held:
                    held[station_id] = live.state_of(session, station_id)
                if not isinstance(inbound.message, Ack) and station_id in waiting:
                    # what it reported before this message is what this message reads
                    # (mains lost, the cause of a connection's end; the volume)
                    self._telemetry(session, waiting.pop(station_id))
                outcome = self._one(session, station_id, inbound, acks)
                if outcome is None:
                    continue
                if outcome == "birth":
                    born[station_id] = inbound.received_at
                if outcome == "ack" and isinstance(inbound.message, Ack):
                    acked.append(inbound.message.cmd_id)
            for rows in waiting.values():
                telemetry.extend(rows)
            if born:
                late = self._redeliver(session, born)
            if telemetry:
                self._telemetry(session, telemetry)
            if self._after_batch is not None and touched:
                self._after_batch(session, touched)
            session.commit()
        if late and self._on_late is not None:
            self._on_late()
        if self._on_ack is not None:
            for cmd_id in dict.fromkeys(acked):
                self._on_ack(cmd_id)

    def _one(
        self,
        session: Session,
        station_id: int,
        inbound: Inbound,
        acks: outbox.AckTargets | None,
    ) -> str | None:
        """Store one message in its own savepoint (an ack needs none: its changes are
        assignments to loaded rows after every check); a message that cannot be stored
        is quarantined (None)."""
        try:
            if isinstance(inbound.message, Ack):
                outcome = self._ack(session, station_id, inbound, inbound.message, acks)
            else:
                with session.begin_nested():
                    outcome = self._apply(session, station_id, inbound)
        except Exception as exc:
            if _transient(exc):
                raise
            self._count("errors")
            log.exception("could not store %s from %s", inbound.kind.value, inbound.sid)
            self._quarantine_inbound(session, inbound, "store", _reason(exc))
            return None
        self._count(outcome)
        return outcome

    def _batched(
        self,
        session: Session,
        batch: list[Inbound],
        station_ids: dict[str, int],
        born: dict[int, dt.datetime],
        touched: set[int],
        telemetry: list[tuple[Inbound, live.TelemetryRow]],
    ) -> list[str]:
        """The births, reported states, acknowledgements and play events of stations that
        sent nothing else in the batch, each kind with a few statements for all
        (`live.record_birth`, `live.record_reported` on rows read at once by
        `live.load_states` and `live.last_connections`, one flush; `outbox.apply_acks`,
        `playlog.record_events`, `live.touch_many`); the cmd_ids of the acks applied.
        The stations born go in ``born``, with those whose alarm rules may judge anew in
        ``touched``; telemetry goes in ``telemetry``, stored after the batch's other
        messages (`_telemetry`: none of them reads it, as a station whose telemetry came
        before its birth or report takes the path in order).  Should the batched statements
        fail, each message is stored alone, so a bad one is quarantined and loses no
        other."""
        storable: list[Inbound] = []
        for inbound in batch:
            problem = unstorable(inbound)
            if problem is not None:
                self._quarantine_inbound(session, inbound, "range", problem)
            else:
                storable.append(inbound)
        if not storable:
            return []
        seen: dict[int, dt.datetime] = {}
        #: births and reported states, in the order they came
        states_in: list[tuple[Inbound, int]] = []
        acks: list[tuple[Inbound, Ack]] = []
        events: list[tuple[Inbound, playlog.EventIn]] = []
        for inbound in storable:
            station_id = station_ids[inbound.sid]
            if isinstance(inbound.message, Telemetry):  # it moves last_seen itself
                telemetry.append((inbound, _telemetry_row(station_id, inbound)))
                touched.add(station_id)
                continue
            seen[station_id] = max(inbound.received_at, seen.get(station_id, inbound.received_at))
            if isinstance(inbound.message, StationState | Reported):
                states_in.append((inbound, station_id))
            elif isinstance(inbound.message, Ack):
                acks.append((inbound, inbound.message))
            elif isinstance(inbound.message, Event):
                events.append((inbound, _event_in(station_id, inbound, inbound.message)))
        if not seen:
            return []
        births = [(i, sid_id) for i, sid_id in states_in if isinstance(i.message, StationState)]
        # held for the batch: the session keeps its rows only weakly
        states = live.load_states(session, [station_id for _, station_id in states_in])
        connections = live.last_connections(session, [station_id for _, station_id in births])
        try:
            with session.begin_nested():
                for inbound, station_id in states_in:
                    if isinstance(inbound.message, StationState):
                        _record_birth(session, station_id, inbound, inbound.message, connections)
                    elif isinstance(inbound.message, Reported):
                        _record_reported(session, station_id, inbound, inbound.message)
                    states[station_id] = live.state_of(session, station_id)
                for station_id in dict.fromkeys(station_id for _, station_id in states_in):
                    # its birth or report moved last_seen; an ack of the batch may be later
                    state, latest = states[station_id], seen.pop(station_id)
                    if state.last_seen is None or state.last_seen < latest:
                        state.last_seen = latest
                session.flush()
                results = outbox.apply_acks(
                    session, [_ack_in(station_ids[i.sid], i, ack) for i, ack in acks]
                )
                outcomes = playlog.record_events(session, [event for _, event in events])
                live.touch_many(session, seen)
        except Exception as exc:
            if _transient(exc):
                raise
            log.exception("a batch of births, acks and events failed; storing each alone")
            acked = []
            for inbound in storable:
                if isinstance(inbound.message, Telemetry):
                    continue  # in ``telemetry`` already
                station_id = station_ids[inbound.sid]
                live.state_of(session, station_id)
                outcome = self._one(session, station_id, inbound, None)
                if outcome == "birth":
                    born[station_id] = inbound.received_at
                if outcome in ("birth", "reported"):
                    touched.add(station_id)
                if outcome == "ack" and isinstance(inbound.message, Ack):
                    acked.append(inbound.message.cmd_id)
            return acked
        for inbound, station_id in births:
            born[station_id] = inbound.received_at
        touched.update(station_id for _, station_id in states_in)
        self._count("birth", len(births))
        self._count("reported", len(states_in) - len(births))
        acked = []
        for (inbound, ack), result in zip(acks, results, strict=True):
            outcome = self._ack_outcome(inbound, ack, result)
            self._count(outcome)
            if outcome == "ack":
                acked.append(ack.cmd_id)
        for (inbound, event), outcome in zip(events, outcomes, strict=True):
            if outcome == "event_unknown_item":
                _log_unknown_item(inbound, event)
            self._count(outcome)
        return acked

    def _redeliver(self, session: Session, born: dict[int, dt.datetime]) -> bool:
        """The still-valid broadcast plays the stations born in this batch missed while
        offline go to them now, for the whole batch at once (`outbox.redeliver_on_births`);
        whether any has something to take.  Should it fail, the births stay stored and the
        stations get those plays at their next birth."""
        try:
            with session.begin_nested():
                late = outbox.redeliver_on_births(session, born)
        except Exception as exc:
            if _transient(exc):
                raise
            self._count("errors")
            log.exception("could not send the missed broadcasts to %d stations", len(born))
            return False
        self._count("birth_late", len(late))
        return bool(late)

    def _telemetry(self, session: Session, rows: list[tuple[Inbound, live.TelemetryRow]]) -> None:
        """One batched insert; if it fails, row by row, quarantining the bad ones."""
        try:
            with session.begin_nested():
                live.record_telemetry(session, [row for _, row in rows])
            self._count("telemetry", len(rows))
            return
        except Exception as exc:
            if _transient(exc):
                raise
        for inbound, row in rows:
            try:
                with session.begin_nested():
                    live.record_telemetry(session, [row])
                self._count("telemetry")
            except Exception as exc:
                if _transient(exc):
                    raise
                self._count("errors")
                self._quarantine_inbound(session, inbound, "store", _reason(exc))

    def _unknown(self, inbound: Inbound) -> None:
        self._count("unknown_station")
        message = inbound.message
        fresh_connection = isinstance(message, StationState) and message.online
        with self._lock:
            first = inbound.sid not in self._unknown_reported
            if fresh_connection:
                self._unknown_reported.discard(inbound.sid)
                first = True
            self._unknown_reported.add(inbound.sid)
        if first:
            log.warning(
                "station %r is not in the registry; ignoring its messages (%s)",
                inbound.sid,
                inbound.kind.value,
            )

    def _apply(self, session: Session, station_id: int, inbound: Inbound) -> str:
        message = inbound.message
        now = inbound.received_at
        if isinstance(message, StationState):
            if message.online:
                _record_birth(session, station_id, inbound, message)
                # still-valid broadcasts it missed while offline go to it once the
                # batch's messages are stored (`_redeliver`)
                return "birth"
            applied = live.record_death(session, station_id, bdseq=message.bdseq, received_at=now)
            return "death" if applied else "stale_death"
        if isinstance(message, Reported):
            _record_reported(session, station_id, inbound, message)
            return "reported"
        if isinstance(message, Ack):
            return self._ack(session, station_id, inbound, message, None)
        if isinstance(message, Event):
            return self._event(session, station_id, inbound, message)
        return "ignored"

    def _ack(
        self,
        session: Session,
        station_id: int,
        inbound: Inbound,
        message: Ack,
        loaded: outbox.AckTargets | None,
    ) -> str:
        if not inbound.retained:
            live.touch(session, station_id, inbound.received_at)
        result = outbox.apply_ack_in(session, _ack_in(station_id, inbound, message), loaded)
        return self._ack_outcome(inbound, message, result)

    @staticmethod
    def _ack_outcome(inbound: Inbound, message: Ack, result: str) -> str:
        """The counter an acknowledgement's `outbox.apply_ack` result counts in."""
        if result in ("unknown_command", "not_target"):
            log.info(
                "ack %s for %s from %s: %s", message.status, message.cmd_id, inbound.sid, result
            )
            return f"ack_{result}"
        return "ack" if result == "ok" else "ack_stale"

    def _event(self, session: Session, station_id: int, inbound: Inbound, message: Event) -> str:
        event = _event_in(station_id, inbound, message)
        live.touch(session, station_id, inbound.received_at)
        play = None
        if event.item_id is not None or event.cmd_id is not None:
            play = playlog.play_for(session, event)
            if play is None:
                _log_unknown_item(inbound, event)
                return "event_unknown_item"
        if not playlog.store_event(session, event):
            return "event_duplicate"
        if play is not None:
            playlog.apply_event(play, event)
            playlog.reconcile_hearing(session, play)
        if event.type in ("fault.raised", "fault.cleared") and event.fault:
            live.record_fault(session, station_id, event.fault, raised=event.type == "fault.raised")
        return "event"


def _record_birth(
    session: Session,
    station_id: int,
    inbound: Inbound,
    message: StationState,
    connections: live.Connections | None = None,
) -> None:
    live.record_birth(
        session,
        station_id,
        bdseq=message.bdseq,
        received_at=inbound.received_at,
        firmware=message.firmware,
        model=message.model,
        capabilities=list(message.capabilities or []),
        held_version=message.desired_version,
        connections=connections,
    )


def _record_reported(
    session: Session, station_id: int, inbound: Inbound, message: Reported
) -> None:
    live.record_reported(
        session,
        station_id,
        applied_version=message.desired_version,
        missing=message.missing,
        received_at=inbound.received_at,
        cache_bytes=message.cache_bytes,
        volume=message.volume,
    )


def _telemetry_then_state(batch: list[Inbound]) -> set[str]:
    """The stations whose batch holds telemetry followed by a birth or a report."""
    reported: set[str] = set()
    found: set[str] = set()
    for inbound in batch:
        if isinstance(inbound.message, Telemetry):
            reported.add(inbound.sid)
        elif inbound.sid in reported and isinstance(inbound.message, StationState | Reported):
            found.add(inbound.sid)
    return found


def _batchable(inbound: Inbound) -> bool:
    """A birth, a reported state or telemetry (retained or not), an acknowledgement or a
    play event (not retained): `Ingestor._batched` takes it."""
    message = inbound.message
    if isinstance(message, StationState):
        return message.online
    if isinstance(message, Reported | Telemetry):
        return True
    if inbound.retained:
        return False
    return isinstance(message, Ack) or (
        isinstance(message, Event) and not message.type.startswith("fault.")
    )


def _ack_in(station_id: int, inbound: Inbound, message: Ack) -> outbox.AckIn:
    return outbox.AckIn(
        station_id=station_id,
        cmd_id=message.cmd_id,
        status=message.status,
        at=message.at,
        received_at=inbound.received_at,
        reason=message.reason,
        station_time=message.station_time,
    )


def _event_in(station_id: int, inbound: Inbound, message: Event) -> playlog.EventIn:
    return playlog.EventIn(
        station_id=station_id,
        event_id=message.event_id,
        type=message.type,
        at=message.at,
        received_at=inbound.received_at,
        item_id=message.item_id,
        cmd_id=message.cmd_id,
        desired_version=message.desired_version,
        position_ms=message.position_ms,
        reason=message.reason,
        fault=message.fault,
        sha256=message.sha256,
    )


def _log_unknown_item(inbound: Inbound, event: playlog.EventIn) -> None:
    log.info(
        "event %s from %s names an unknown item/command (%s)",
        event.type,
        inbound.sid,
        event.item_id or event.cmd_id,
    )


def _judged(inbound: Inbound) -> bool:
    """Whether the message may change what the alarm rules judge (`alarms.evaluate`
    reads the station's connection, telemetry, faults and desired/applied state): not an
    acknowledgement, nor a play event."""
    message = inbound.message
    if isinstance(message, Ack):
        return False
    return not isinstance(message, Event) or message.type.startswith("fault.")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def _telemetry_row(station_id: int, inbound: Inbound) -> live.TelemetryRow:
    message = inbound.message
    assert isinstance(message, Telemetry)
    data = message.model_dump(mode="json", exclude_none=True)
    return live.TelemetryRow(
        station_id=station_id,
        at=message.at,
        received_at=inbound.received_at,
        seq=message.seq,
        data=data,
    )
