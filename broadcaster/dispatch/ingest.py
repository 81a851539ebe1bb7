"""What stations send, stored: one transaction per batch from the bridge.

Each message is applied inside a savepoint, so one bad message never loses the rest of
its batch.  Messages from stations the registry does not know are not stored; they are
counted and logged once per station connection (a new birth starts a new connection).
Acks and events that name unknown commands or plan items are counted and logged, not
stored as if valid.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox, playlog
from firmware_bridge.client import Inbound
from firmware_bridge.messages import Ack, Event, Reported, StationState, Telemetry
from stations import live

log = logging.getLogger(__name__)


class Ingestor:
    """The bridge's inbound handler (called from the bridge's consumer thread)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        on_ack: Callable[[str], None] | None = None,
    ) -> None:
        self._factory = factory
        self._on_ack = on_ack
        self._sids: dict[str, int] = {}
        self._unknown_reported: set[str] = set()
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def _station_id(self, session: Session, sid: str) -> int | None:
        station_id = self._sids.get(sid)
        if station_id is None:
            self._sids = live.sid_index(session)
            station_id = self._sids.get(sid)
        return station_id

    def __call__(self, batch: list[Inbound]) -> None:
        acked: list[str] = []
        with self._factory() as session:
            telemetry: list[live.TelemetryRow] = []
            for inbound in batch:
                station_id = self._station_id(session, inbound.sid)
                if station_id is None:
                    self._unknown(inbound)
                    continue
                if isinstance(inbound.message, Telemetry):
                    telemetry.append(_telemetry_row(station_id, inbound))
                    continue
                try:
                    with session.begin_nested():
                        outcome = self._apply(session, station_id, inbound)
                except Exception:
                    self._count("errors")
                    log.exception("could not store %s from %s", inbound.kind.value, inbound.sid)
                    continue
                self._count(outcome)
                if outcome == "ack" and isinstance(inbound.message, Ack):
                    acked.append(inbound.message.cmd_id)
            if telemetry:
                live.record_telemetry(session, telemetry)
                self._count("telemetry", len(telemetry))
            session.commit()
        if self._on_ack is not None:
            for cmd_id in dict.fromkeys(acked):
                self._on_ack(cmd_id)

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
                live.record_birth(
                    session,
                    station_id,
                    bdseq=message.bdseq,
                    received_at=now,
                    firmware=message.firmware,
                    model=message.model,
                    capabilities=list(message.capabilities or []),
                    held_version=message.desired_version,
                )
                return "birth"
            applied = live.record_death(session, station_id, bdseq=message.bdseq, received_at=now)
            return "death" if applied else "stale_death"
        if isinstance(message, Reported):
            live.record_reported(
                session,
                station_id,
                applied_version=message.desired_version,
                missing=message.missing,
                received_at=now,
                cache_bytes=message.cache_bytes,
                volume=message.volume,
            )
            return "reported"
        if isinstance(message, Ack):
            if not inbound.retained:
                live.touch(session, station_id, now)
            result = outbox.apply_ack(
                session,
                station_id=station_id,
                cmd_id=message.cmd_id,
                status=message.status,
                at=message.at,
                received_at=now,
                reason=message.reason,
                station_time=message.station_time,
            )
            if result in ("unknown_command", "not_target"):
                log.info(
                    "ack %s for %s from %s: %s", message.status, message.cmd_id, inbound.sid, result
                )
                return f"ack_{result}"
            return "ack" if result == "ok" else "ack_stale"
        if isinstance(message, Event):
            return self._event(session, station_id, inbound, message)
        return "ignored"

    def _event(self, session: Session, station_id: int, inbound: Inbound, message: Event) -> str:
        event = playlog.EventIn(
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
        live.touch(session, station_id, inbound.received_at)
        play = None
        if event.item_id is not None or event.cmd_id is not None:
            play = playlog.play_for(session, event)
            if play is None:
                log.info(
                    "event %s from %s names an unknown item/command (%s)",
                    event.type,
                    inbound.sid,
                    event.item_id or event.cmd_id,
                )
                return "event_unknown_item"
        if not playlog.store_event(session, event):
            return "event_duplicate"
        if play is not None:
            playlog.apply_event(play, event)
        if event.type in ("fault.raised", "fault.cleared") and event.fault:
            live.record_fault(session, station_id, event.fault, raised=event.type == "fault.raised")
        return "event"


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
