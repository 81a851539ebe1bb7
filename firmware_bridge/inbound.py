"""What the server bridge receives: the records it hands over, and the bounded queue
between paho's network thread and the handlers.

paho's callback only parses and offers a :class:`QueuedItem` to the
:class:`InboundQueue`; the queue's consumer thread hands batches to ``on_inbound`` /
``on_rejected`` and acknowledges each QoS 1 message to the broker only once it was
handled (see :mod:`firmware_bridge.client` for the whole design).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from firmware_bridge.bridge_state import BridgeConfig, Counters, LogLimiter
from firmware_bridge.errors import RetryLater
from firmware_bridge.messages import Ack, Event, Reported, StationState, Telemetry
from firmware_bridge.topics import TopicKind

__all__ = [
    "REJECTED_PREFIX_BYTES",
    "Inbound",
    "InboundQueue",
    "QueuedItem",
    "Rejected",
    "StationMessage",
]

log = logging.getLogger(__name__)

#: The payloads a station publishes.
StationMessage: TypeAlias = StationState | Reported | Ack | Event | Telemetry

#: Bytes of a rejected payload kept for the dead-letter record.
REJECTED_PREFIX_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Inbound:
    """A valid message from a station, as handed (in a batch) to ``on_inbound``."""

    sid: str
    kind: TopicKind
    message: StationMessage
    topic: str
    received_at: datetime
    retained: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the bridge could not take, as handed to ``on_rejected`` (quarantine).

    ``payload`` is at most :data:`REJECTED_PREFIX_BYTES` of the original; ``size`` is
    the original's length.  ``sid``/``kind`` are None when the topic itself was wrong.
    """

    topic: str
    sid: str | None
    kind: str | None
    category: str
    reason: str
    size: int
    payload: bytes
    received_at: datetime
    qos: int = 0
    retained: bool = False

    @classmethod
    def of(
        cls,
        topic: str,
        payload: bytes,
        *,
        category: str,
        reason: str | BaseException,
        received_at: datetime,
        sid: str | None = None,
        kind: str | None = None,
        qos: int = 0,
        retained: bool = False,
        size: int | None = None,
    ) -> Rejected:
        """The record of ``payload`` (kept up to :data:`REJECTED_PREFIX_BYTES`; its size
        is ``size`` when only a prefix is given); an exception reason reads
        ``Type: message``."""
        if isinstance(reason, BaseException):
            reason = f"{type(reason).__name__}: {reason}"
        return cls(
            topic=topic,
            sid=sid,
            kind=kind,
            category=category,
            reason=reason[:500],
            size=len(payload) if size is None else size,
            payload=payload[:REJECTED_PREFIX_BYTES],
            received_at=received_at,
            qos=qos,
            retained=retained,
        )


@dataclass(slots=True)
class QueuedItem:
    """One queued delivery: what to hand over, and how to acknowledge it."""

    inbound: Inbound | None
    rejected: Rejected | None
    topic: str
    payload_prefix: bytes
    size: int
    received_at: datetime
    qos: int
    mid: int
    generation: int
    retained: bool
    done: bool = False  # handed over successfully (a retry skips it)

    @classmethod
    def of(
        cls,
        inbound: Inbound | None,
        rejected: Rejected | None,
        mid: int,
        generation: int,
        *,
        payload: bytes = b"",
        qos: int | None = None,
    ) -> QueuedItem:
        source = inbound or rejected
        assert source is not None
        return cls(
            inbound=inbound,
            rejected=rejected,
            topic=source.topic,
            payload_prefix=(rejected.payload if rejected else payload[:REJECTED_PREFIX_BYTES]),
            size=rejected.size if rejected else len(payload),
            received_at=source.received_at,
            qos=qos if qos is not None else (rejected.qos if rejected else 0),
            mid=mid,
            generation=generation,
            retained=source.retained,
        )

    def as_rejected(self, exc: BaseException) -> Rejected:
        """This message quarantined because the handler failed on it."""
        inbound = self.inbound
        return Rejected.of(
            self.topic,
            self.payload_prefix,
            size=self.size,
            category="handler",
            reason=exc,
            received_at=self.received_at,
            sid=None if inbound is None else inbound.sid,
            kind=None if inbound is None else inbound.kind.value,
            qos=self.qos,
            retained=self.retained,
        )


def lower_thread_priority(by: int) -> None:
    """Raise the calling thread's niceness by ``by`` (at most to 19), so that the
    machine's other work gets the cores first when they are all busy.  Linux keeps a
    niceness per thread; elsewhere, or with ``by`` 0, nothing changes.  Lowering a
    priority needs no privilege; a failure is logged, never raised."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError as exc:
        log.warning("could not lower the priority of thread %d: %s", tid, exc)


class InboundQueue:
    """The queue between paho's thread and the handlers, and its consumer.

    Shares the bridge's lock and counters.  ``ack(qos, mid, generation)`` sends a PUBACK
    if the message's connection is still up; ``clear_retained(topic)`` deletes a
    quarantined retained message on the broker.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        lock: threading.Lock,
        counters: Counters,
        limiter: LogLimiter,
        stopping: threading.Event,
        on_inbound: Callable[[list[Inbound]], None],
        on_rejected: Callable[[list[Rejected]], None] | None,
        ack: Callable[[int, int, int], None],
        clear_retained: Callable[[str], object],
    ) -> None:
        self.config = config
        self._queue: queue.Queue[QueuedItem] = queue.Queue()  # bounded by `offer`
        self._lock = lock
        self._counters = counters
        self._limiter = limiter
        self._stopping = stopping
        self._on_inbound = on_inbound
        self._on_rejected = on_rejected
        self._ack = ack
        self._clear_retained = clear_retained
        self.unacked = 0  # QoS 1 messages queued or being handled (under the lock)

    def depth(self) -> int:
        return self._queue.qsize()

    def offer(self, item: QueuedItem) -> bool:
        """Queue ``item`` unless the queue is over its limit for that kind of message.

        Past ``queue_size`` only QoS 1 messages other than telemetry are taken (counted
        as ``overflow``); a dropped one is acknowledged at once (telemetry: the next
        report supersedes it).  Past ``queue_hard_limit`` a QoS 1 message is left
        unacknowledged (``deferred``): the broker delivers it again on the next
        connection.
        """
        depth = self._queue.qsize()
        if depth >= self.config.queue_size:
            telemetry = item.inbound is not None and item.inbound.kind == TopicKind.TELEMETRY
            if item.qos == 0 or telemetry:
                with self._lock:
                    self._counters.dropped += 1
                if self._limiter.allow("dropped"):
                    log.warning("inbound queue full; dropped a message on %s", item.topic[:200])
                self._ack(item.qos, item.mid, item.generation)
                return False
            if depth >= self.config.queue_hard_limit:
                with self._lock:
                    self._counters.deferred += 1
                if self._limiter.allow("deferred"):
                    log.warning("inbound queue full; %s left for redelivery", item.topic[:200])
                return False
            with self._lock:
                self._counters.overflow += 1
        self.put(item)
        return True

    def put(self, item: QueuedItem) -> None:
        """Queue ``item`` whatever the depth (a quarantined failure of our own)."""
        with self._lock:
            if item.qos > 0:
                self.unacked += 1
        self._queue.put_nowait(item)

    def consume(self) -> None:
        """Hand queued messages to the handlers in batches (whatever has queued up, at
        most ``batch_max``), then acknowledge them, in the order they came.  Runs until
        the bridge stops."""
        lower_thread_priority(self.config.consumer_nice)
        while True:
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            while len(batch) < self.config.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                delivered = self._deliver(batch)
            except Exception:  # never let the consumer die
                log.exception("bridge consumer failed on a batch of %d message(s)", len(batch))
                delivered = False
            if delivered:  # else stopping: leave them to the broker's redelivery
                self._acknowledge(batch)
            with self._lock:
                self.unacked -= sum(1 for item in batch if item.qos > 0)

    def _acknowledge(self, batch: list[QueuedItem]) -> None:
        for item in batch:
            try:
                self._ack(item.qos, item.mid, item.generation)
                if item.rejected is not None and item.retained:
                    # a retained message we cannot take would come back on every
                    # subscription: it is quarantined, so clear it on the broker
                    self._clear_retained(item.topic)
            except Exception:
                log.exception("could not acknowledge a message on %s", item.topic[:200])

    def _deliver(self, batch: list[QueuedItem]) -> bool:
        """Hand ``batch`` over; True once every item is handled or quarantined.

        Retries on :class:`RetryLater` with backoff (False if the bridge stops first);
        splits the batch on any other error until the one message that fails is found.
        """
        delay = self.config.retry_min_s
        while True:
            failure: Exception | None = None
            try:
                self._hand_over(batch)
                return True
            except RetryLater as exc:
                with self._lock:
                    self._counters.retries += 1
                if self._limiter.allow("retry"):
                    log.warning("handler busy (%s); retrying in %.2f s", exc, delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            except Exception as exc:
                failure = exc
            pending = [item for item in batch if not item.done]
            if not pending:
                return True
            if len(pending) > 1:
                middle = len(pending) // 2
                return self._deliver(pending[:middle]) and self._deliver(pending[middle:])
            item = pending[0]
            with self._lock:
                self._counters.handler_errors += 1
            log.error(
                "inbound handler failed on %s; quarantining it",
                item.topic[:200],
                exc_info=failure,
            )
            if item.rejected is not None:
                item.done = True  # the quarantine itself fails: counted, logged, given up
                return True
            item.inbound, item.rejected = None, item.as_rejected(failure)
            delay = self.config.retry_min_s

    def _hand_over(self, batch: list[QueuedItem]) -> None:
        rejected = [item for item in batch if item.rejected is not None and not item.done]
        if rejected:
            if self._on_rejected is not None:
                self._on_rejected([item.rejected for item in rejected if item.rejected])
            with self._lock:
                for item in rejected:
                    self._counters.quarantined[item.rejected.category if item.rejected else ""] += 1
            for item in rejected:
                item.done = True
        valid = [item for item in batch if item.inbound is not None and not item.done]
        if valid:
            self._on_inbound([item.inbound for item in valid if item.inbound])
            for item in valid:
                item.done = True
            with self._lock:
                self._counters.handled += len(valid)
