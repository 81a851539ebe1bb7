"""The server side of loa/v1: one MQTT connection for the central service.

Design:

* paho-mqtt 2 (``CallbackAPIVersion.VERSION2``) with its own network thread
  (``loop_start``), which reconnects with exponential backoff capped at
  ``reconnect_max_s`` and keeps retrying when the broker is down at start, so
  :meth:`Bridge.start` never blocks or fails.
* MQTT 5 first; if the broker refuses the protocol level (CONNACK "unsupported
  protocol version"), a small supervisor thread swaps in a 3.1.1 client.
* ``on_connect`` publishes the retained birth ``{"online": true, "at": ...}`` on
  ``server/state`` (the will is ``{"online": false}``, retained, QoS 1) and
  (re)subscribes to every station's state/reported/ack/event/telemetry.
* The session is persistent (clean start false, expiry ``session_expiry_s`` on MQTT 5):
  while the server is disconnected, restarting or failing over to a standby (same
  client id), the broker queues what stations send at QoS 1 (acks, proof-of-play
  events, births) instead of dropping it, and delivers it on the next connect. With a
  clean session, a station that reconnected before the server after a broker restart
  published its spooled events to nobody.
* paho callbacks only parse and hand off, behind a barrier that catches everything:
  topic and payload are validated strictly (:func:`firmware_bridge.messages.parse_message`,
  which bounds size and nesting depth before ``json.loads``) and the result is put on a
  queue. What fails (a bad topic, bad JSON, a schema violation, even a bug in our own
  code) becomes a :class:`Rejected` record, counted by category and handed to
  ``on_rejected`` (the server quarantines it in a dead-letter table), so one station's
  poison message never stops the bridge.
* **QoS 1 messages are acknowledged to the broker only once handled** (paho's manual
  acknowledgement, MQTT 5 and 3.1.1 alike): a consumer thread hands batches to
  ``on_inbound`` (one transaction per batch on the server side) and sends the PUBACKs,
  in the order received, after it returned. A crash, a full queue or a busy database
  therefore means redelivery (the session is persistent), never loss. On MQTT 5 the
  bridge's Receive Maximum caps what the broker sends before we acknowledge, so the
  broker, not our memory, holds a burst.
* The handler may raise :class:`~firmware_bridge.errors.RetryLater` (a busy database):
  the same batch is offered again with exponential backoff, unacknowledged meanwhile.
  Any other exception is counted and the batch is split until the one message that
  fails is found; it is handed to ``on_rejected`` and acknowledged, so a poison message
  is never redelivered forever and never takes its neighbours with it (a retained one
  is also cleared on the broker, or every new subscription would bring it back).
* Past ``queue_size`` queued messages, telemetry (QoS 0, the next report supersedes it)
  is dropped and counted; QoS 1 messages are still taken, up to ``queue_hard_limit``;
  past it they are left unacknowledged (the broker redelivers them on the next
  connection). The paho thread never waits for storage, so what the server publishes
  (an emergency command) never queues behind what it ingests.
* A supervisor thread restarts the network loop (with a fresh client on the same
  persistent session) if it ever stops, and swaps in an MQTT 3.1.1 client when the
  broker refuses MQTT 5. :meth:`Bridge.health` tells the truth about all of it (loop
  alive, connected, last message time).
* :meth:`Bridge.publish` serialises through :func:`dump_message`, which validates the
  payload, so the server cannot publish an invalid message. It refuses (returns
  ``False``) while disconnected instead of letting paho queue without bound: the
  server's command outbox owns retries.

All public methods are thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_bridge.errors import ProtocolError, RetryLater
from firmware_bridge.messages import (
    Ack,
    Command,
    Desired,
    Event,
    Message,
    Reported,
    ServerState,
    StationState,
    Telemetry,
    dump_message,
    parse_message,
    utcnow,
)
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.topics import DEFAULT_PREFIX, STATION_INBOUND, TopicKind, Topics

__all__ = [
    "Bridge",
    "BridgeConfig",
    "BridgeHealth",
    "BridgeStats",
    "Inbound",
    "Rejected",
    "StationMessage",
]

log = logging.getLogger(__name__)

#: The payloads a station publishes.
StationMessage: TypeAlias = StationState | Reported | Ack | Event | Telemetry

_UNSUPPORTED_PROTOCOL = 132  # CONNACK reason "Unsupported protocol version"
#: Bytes of a rejected payload kept for the dead-letter record.
REJECTED_PREFIX_BYTES = 2048


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Connection settings of the server bridge."""

    url: str = "mqtt://127.0.0.1:1883"
    instance: str = "main"
    topic_prefix: str = DEFAULT_PREFIX
    keepalive: int = 30
    queue_size: int = 10_000
    batch_max: int = 500
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    ca_file: str | None = None
    session_expiry_s: int = 3600
    queue_hard_limit: int = 100_000  # QoS 1 messages queued at most (memory bound)
    receive_maximum: int = 1000  # MQTT 5: unacknowledged QoS 1 messages the broker may send
    retry_min_s: float = 0.05  # backoff of a batch the handler could not take (RetryLater)
    retry_max_s: float = 5.0
    supervise_every_s: float = 0.2

    @property
    def client_id(self) -> str:
        """``srv-{instance}``."""
        return f"srv-{self.instance}"


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


@dataclass(frozen=True, slots=True)
class BridgeHealth:
    """What `/readyz` and `/dispatch/status` need to tell the truth about the bridge."""

    loop_alive: bool
    connected: bool
    last_message_at: datetime | None
    loop_restarts: int
    unacked: int

    @property
    def ok(self) -> bool:
        return self.loop_alive and self.connected


@dataclass(frozen=True, slots=True)
class BridgeStats:
    """A snapshot of the bridge's counters, for health endpoints and tests."""

    connected: bool
    protocol: str | None
    received: int
    accepted: int
    handled: int
    empty: int
    invalid: dict[str, int]
    dropped: int
    overflow: int
    handler_errors: int
    reconnects: int
    queue_depth: int
    quarantined: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    retries: int = 0
    loop_restarts: int = 0
    acked: int = 0

    @property
    def invalid_total(self) -> int:
        """All invalid messages, whatever the reason."""
        return sum(self.invalid.values())


@dataclass
class _Counters:
    received: int = 0
    accepted: int = 0
    handled: int = 0
    empty: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    overflow: int = 0  # QoS 1 messages taken past `queue_size`
    handler_errors: int = 0
    reconnects: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    deferred: int = 0  # QoS 1 messages left unacknowledged past the hard limit
    retries: int = 0  # batches offered again after RetryLater
    loop_restarts: int = 0
    acked: int = 0


@dataclass(slots=True)
class _Item:
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


class _LogLimiter:
    """Lets at most ``burst`` warnings per ``period_s`` through, per key."""

    def __init__(self, burst: int = 10, period_s: float = 10.0) -> None:
        self._burst = burst
        self._period_s = period_s
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self._period_s:
            start, count = now, 0
        self._windows[key] = (start, count + 1)
        return count < self._burst


class Bridge:
    """The server's MQTT connection: births, subscriptions, strict inbound, publishing."""

    def __init__(
        self,
        config: BridgeConfig,
        on_inbound: Callable[[list[Inbound]], None],
        *,
        on_rejected: Callable[[list[Rejected]], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._url = MqttUrl.parse(config.url)
        self._on_inbound = on_inbound
        self._on_rejected = on_rejected
        self._queue: queue.Queue[_Item] = queue.Queue()  # bounded by `_enqueue`
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._limiter = _LogLimiter()
        self._client: mqtt.Client | None = None
        self._protocol = (
            MQTTProtocolVersion.MQTTv311
            if config.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        self._connected = False
        self._ever_connected = False
        self._generation = 0  # one per accepted connection: a PUBACK only goes back on it
        self._subscribe_mid: int | None = None
        self._started = False
        self._stopping = threading.Event()
        self._fallback = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_message_at: datetime | None = None
        self._unacked = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in the background; returns at once, even if the broker is down."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._client = self._new_client()
        self._threads = [
            threading.Thread(
                target=self._consume, name=f"{self.config.client_id}-consumer", daemon=True
            ),
            threading.Thread(
                target=self._supervise, name=f"{self.config.client_id}-supervisor", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        log.info("bridge %s connecting to %s", self.config.client_id, self._url.redacted())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish ``{"online": false}`` retained, disconnect cleanly and stop all threads.

        Messages still queued or being handled are not acknowledged: the broker keeps
        them in our persistent session and delivers them to the next connection.
        """
        with self._lock:
            if not self._started or self._stopping.is_set():
                return
            self._stopping.set()
            client = self._client
            connected = self._connected
        if client is not None:
            if connected:
                payload = dump_message(ServerState(online=False, at=utcnow()))
                info = client.publish(self.topics.server_state(), payload, qos=1, retain=True)
                _wait_published(info, timeout_s)
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._connected = False
        for thread in self._threads:
            thread.join(timeout_s)
        log.info("bridge %s stopped", self.config.client_id)

    def __enter__(self) -> Bridge:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """True while the broker connection is up (CONNACK accepted, subscribed)."""
        with self._lock:
            return self._connected

    def health(self) -> BridgeHealth:
        """Is the network loop running, is it connected, when did a message last come?"""
        with self._lock:
            client = self._client
            return BridgeHealth(
                loop_alive=self._started
                and not self._stopping.is_set()
                and client is not None
                and _loop_alive(client),
                connected=self._connected,
                last_message_at=self._last_message_at,
                loop_restarts=self._counters.loop_restarts,
                unacked=self._unacked,
            )

    def stats(self) -> BridgeStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            c = self._counters
            return BridgeStats(
                connected=self._connected,
                protocol=_protocol_name(self._protocol) if self._ever_connected else None,
                received=c.received,
                accepted=c.accepted,
                handled=c.handled,
                empty=c.empty,
                invalid=dict(c.invalid),
                dropped=c.dropped,
                overflow=c.overflow,
                handler_errors=c.handler_errors,
                reconnects=c.reconnects,
                queue_depth=self._queue.qsize(),
                quarantined=dict(c.quarantined),
                deferred=c.deferred,
                retries=c.retries,
                loop_restarts=c.loop_restarts,
                acked=c.acked,
            )

    # ------------------------------------------------------------------ publishing

    def publish(
        self,
        topic: str,
        message: Message,
        *,
        qos: int = 1,
        retain: bool = False,
        wait_s: float | None = 5.0,
    ) -> bool:
        """Publish a validated message.

        Returns True when the broker acknowledged it within ``wait_s`` (QoS 1) or it was
        written (QoS 0). With ``wait_s=None`` it does not wait and returns whether the
        message is already acknowledged. Returns False while disconnected (nothing is
        queued). Raises :class:`ProtocolError` if ``message`` is not schema-valid.
        """
        return self._publish_bytes(
            topic, dump_message(message), qos=qos, retain=retain, wait_s=wait_s
        )

    def publish_to_many(
        self, topics: Sequence[str], message: Message, *, qos: int = 1, wait_s: float = 10.0
    ) -> list[str]:
        """Publish one message on many topics (serialised and validated once).

        Queues every publish first, then waits (at most ``wait_s`` in all) for the
        broker's acknowledgements; returns the topics that were acknowledged.  Used to
        send one command to thousands of station topics quickly.
        """
        payload = dump_message(message)
        pending: list[tuple[str, mqtt.MQTTMessageInfo]] = []
        with self._lock:
            client = self._client
            if client is None or not self._connected:
                return []
            for topic in topics:
                info = client.publish(topic, payload, qos=qos)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    pending.append((topic, info))
        deadline = time.monotonic() + wait_s
        acked = []
        for topic, info in pending:
            if _wait_published(info, max(0.0, deadline - time.monotonic())):
                acked.append(topic)
        return acked

    def publish_desired(self, sid: str, desired: Desired, *, wait_s: float | None = 5.0) -> bool:
        """Publish a station's desired state (retained, QoS 1)."""
        return self.publish(self.topics.desired(sid), desired, retain=True, wait_s=wait_s)

    def publish_command_to_station(
        self, sid: str, command: Command, *, wait_s: float | None = 5.0
    ) -> bool:
        """Publish a command on ``st/{sid}/cmd`` (QoS 1, not retained)."""
        return self.publish(self.topics.cmd(sid), command, wait_s=wait_s)

    def publish_command_to_group(
        self, gid: str, command: Command, *, wait_s: float | None = 5.0
    ) -> bool:
        """Publish a command on ``grp/{gid}/cmd``; the broker fans it out."""
        return self.publish(self.topics.group_cmd(gid), command, wait_s=wait_s)

    def clear_retained(self, topic: str, *, wait_s: float | None = 5.0) -> bool:
        """Delete the retained message on ``topic`` (empty retained payload)."""
        return self._publish_bytes(topic, b"", qos=1, retain=True, wait_s=wait_s)

    def _publish_bytes(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, wait_s: float | None
    ) -> bool:
        with self._lock:
            client = self._client
            if client is None or not self._connected:
                return False
            info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        if wait_s is not None:
            return _wait_published(info, wait_s)
        return _is_published(info)

    # ------------------------------------------------------------------ paho side

    def _new_client(self) -> mqtt.Client:
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=self._protocol,
            clean_session=None if v5 else False,
            manual_ack=True,  # PUBACK only once stored (see `_consume`)
        )
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            client.tls_set(ca_certs=self.config.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(
            self.topics.server_state(), dump_message(ServerState(online=False)), qos=1, retain=True
        )
        client.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        # fan-out to thousands of station topics: keep many QoS 1 publishes in flight
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.config.session_expiry_s
            properties.ReceiveMaximum = max(
                1, min(self.config.receive_maximum, self.config.queue_hard_limit, 65535)
            )
        client.connect_async(
            self._url.host,
            self._url.port,
            keepalive=self.config.keepalive,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        client.loop_start()
        return client

    def _supervise(self) -> None:
        """Restart the network loop if it died; fall back to 3.1.1 if MQTT 5 is refused."""
        while not self._stopping.is_set():
            fallback = self._fallback.wait(self.config.supervise_every_s)
            if self._stopping.is_set():
                return
            try:
                if fallback:
                    self._fallback.clear()
                    self._replace_client(
                        "broker refused MQTT 5; falling back to MQTT 3.1.1", fallback=True
                    )
                    continue
                with self._lock:
                    client = self._client
                if client is not None and not _loop_alive(client):
                    with self._lock:
                        self._counters.loop_restarts += 1
                    self._replace_client("the MQTT network loop stopped; restarting it")
            except Exception:  # the supervisor itself must not die either
                log.exception("bridge supervisor failed; retrying")
                self._stopping.wait(1.0)

    def _replace_client(self, why: str, *, fallback: bool = False) -> None:
        """A fresh paho client on the same persistent session (what was not acknowledged
        on the old connection is delivered again on the new one)."""
        log.warning("%s", why)
        with self._lock:
            old = self._client
            self._connected = False
            self._generation += 1  # nothing received on the old connection is acked
        if old is not None:
            with contextlib.suppress(Exception):
                old.disconnect()
            with contextlib.suppress(Exception):
                old.loop_stop()
            with contextlib.suppress(Exception):
                sock = old.socket()
                if sock is not None:
                    sock.close()
        with self._lock:
            if self._stopping.is_set():
                return
            if fallback:
                self._protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._new_client()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            if (
                self.config.protocol == "auto"
                and self._protocol == MQTTProtocolVersion.MQTTv5
                and reason_code.value == _UNSUPPORTED_PROTOCOL
            ):
                self._fallback.set()
            log.warning("broker refused connection: %s", reason_code)
            return
        with self._lock:
            if client is not self._client or self._stopping.is_set():
                return
            if self._ever_connected:
                self._counters.reconnects += 1
            self._ever_connected = True
            self._generation += 1
        client.publish(
            self.topics.server_state(),
            dump_message(ServerState(online=True, at=utcnow())),
            qos=1,
            retain=True,
        )
        _, mid = client.subscribe(
            [(self.topics.station_filter(kind), 1) for kind in STATION_INBOUND]
        )
        with self._lock:
            self._subscribe_mid = mid
        log.info("bridge connected (%s)", _protocol_name(self._protocol))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """`connected` once the broker confirmed the subscriptions: before that, what a
        station sends may not reach us (on a first connect nothing is kept for us)."""
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused the station subscriptions: %s", ", ".join(refused))
        with self._lock:
            if client is not self._client or mid != self._subscribe_mid:
                return
            if not self._stopping.is_set():
                self._connected = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if client is not self._client:
                return
            was_connected = self._connected
            self._connected = False
            self._generation += 1  # what came on that connection cannot be acked any more
        if was_connected and not self._stopping.is_set():
            log.warning("bridge lost its broker connection: %s", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """The barrier: nothing a station sends may escape into paho's network thread."""
        try:
            with self._lock:
                generation = self._generation if client is self._client else -1
            self.handle_raw(
                message.topic,
                bytes(message.payload),
                retained=bool(message.retain),
                qos=int(message.qos),
                mid=int(message.mid),
                generation=generation,
            )
        except Exception as exc:  # a bug of ours, or MemoryError: never kill the loop
            log.exception("bridge barrier caught an error on %r", _safe_topic(message))
            try:
                self._quarantine_failure(client, message, exc)
            except Exception:
                log.exception("could not even quarantine a message; acknowledging it")
                if message.qos > 0:
                    with contextlib.suppress(Exception):
                        client.ack(message.mid, message.qos)

    def _quarantine_failure(
        self, client: mqtt.Client, message: mqtt.MQTTMessage, exc: BaseException
    ) -> None:
        with self._lock:
            self._counters.invalid["internal"] += 1
            generation = self._generation if client is self._client else -1
        payload = bytes(message.payload)
        topic = _safe_topic(message)
        rejected = Rejected(
            topic=topic,
            sid=None,
            kind=None,
            category="internal",
            reason=f"{type(exc).__name__}: {exc}"[:500],
            size=len(payload),
            payload=payload[:REJECTED_PREFIX_BYTES],
            received_at=utcnow(),
            qos=int(message.qos),
            retained=bool(message.retain),
        )
        self._put(self._item(None, rejected, int(message.mid), generation))

    def handle_raw(
        self,
        topic: str,
        payload: bytes,
        *,
        retained: bool = False,
        qos: int = 0,
        mid: int = 0,
        generation: int = -1,
    ) -> None:
        """Parse one received message and queue it (what the paho callback does)."""
        received_at = utcnow()
        with self._lock:
            self._counters.received += 1
            self._last_message_at = received_at
        sid: str | None = None
        kind: TopicKind | None = None
        try:
            ref = self.topics.parse(topic)
            if ref.kind not in STATION_INBOUND or ref.sid is None:
                raise ProtocolError(f"unexpected topic {topic!r}", category="topic")
            sid, kind = ref.sid, ref.kind
            if not payload:
                with self._lock:
                    self._counters.empty += 1
                self._ack_now(qos, mid, generation)
                return
            message = parse_message(ref.kind.message_kind, payload)
        except ProtocolError as exc:
            with self._lock:
                self._counters.invalid[exc.category] += 1
            if self._limiter.allow(exc.category):
                log.warning("invalid message on %s: %s", topic[:200], exc.reason)
            rejected = Rejected(
                topic=topic,
                sid=sid,
                kind=None if kind is None else kind.value,
                category=exc.category,
                reason=exc.reason[:500],
                size=len(payload),
                payload=payload[:REJECTED_PREFIX_BYTES],
                received_at=received_at,
                qos=qos,
                retained=retained,
            )
            self._offer(self._item(None, rejected, mid, generation))
            return
        assert isinstance(message, StationState | Reported | Ack | Event | Telemetry)
        inbound = Inbound(
            sid=ref.sid,
            kind=ref.kind,
            message=message,
            topic=topic,
            received_at=received_at,
            retained=retained,
        )
        item = self._item(inbound, None, mid, generation, payload=payload, qos=qos)
        if self._offer(item):
            with self._lock:
                self._counters.accepted += 1

    def _item(
        self,
        inbound: Inbound | None,
        rejected: Rejected | None,
        mid: int,
        generation: int,
        *,
        payload: bytes = b"",
        qos: int | None = None,
    ) -> _Item:
        source = inbound or rejected
        assert source is not None
        return _Item(
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

    def _offer(self, item: _Item) -> bool:
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
                self._ack_now(item.qos, item.mid, item.generation)
                return False
            if depth >= self.config.queue_hard_limit:
                with self._lock:
                    self._counters.deferred += 1
                if self._limiter.allow("deferred"):
                    log.warning("inbound queue full; %s left for redelivery", item.topic[:200])
                return False
            with self._lock:
                self._counters.overflow += 1
        self._put(item)
        return True

    def _put(self, item: _Item) -> None:
        with self._lock:
            if item.qos > 0:
                self._unacked += 1
        self._queue.put_nowait(item)

    def _ack_now(self, qos: int, mid: int, generation: int) -> None:
        """Acknowledge a message we are done with (nothing to store)."""
        if qos <= 0:
            return
        with self._lock:
            client = self._client
            # the connection it came on, still up (a persistent session delivers what
            # waited for us right after CONNACK, before our SUBACK: `connected` is not
            # the test, or those messages would never be acknowledged)
            same = generation == self._generation
        if client is not None and same:
            client.ack(mid, qos)
            with self._lock:
                self._counters.acked += 1

    # ------------------------------------------------------------------ consumer

    def _consume(self) -> None:
        """Hand queued messages to the handlers in batches (whatever has queued up, at
        most ``batch_max``), then acknowledge them, in the order they came."""
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
            if not delivered:  # stopping: leave them to the broker's redelivery
                with self._lock:
                    self._unacked -= sum(1 for item in batch if item.qos > 0)
                continue
            for item in batch:
                try:
                    self._ack_now(item.qos, item.mid, item.generation)
                    if item.rejected is not None and item.retained:
                        # a retained message we cannot take would come back on every
                        # subscription: it is quarantined, so clear it on the broker
                        self.clear_retained(item.topic, wait_s=None)
                except Exception:
                    log.exception("could not acknowledge a message on %s", item.topic[:200])
            with self._lock:
                self._unacked -= sum(1 for item in batch if item.qos > 0)

    def _deliver(self, batch: list[_Item]) -> bool:
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
            item.inbound, item.rejected = None, self._as_rejected(item, failure)
            delay = self.config.retry_min_s

    def _hand_over(self, batch: list[_Item]) -> None:
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

    @staticmethod
    def _as_rejected(item: _Item, exc: BaseException) -> Rejected:
        inbound = item.inbound
        return Rejected(
            topic=item.topic,
            sid=None if inbound is None else inbound.sid,
            kind=None if inbound is None else inbound.kind.value,
            category="handler",
            reason=f"{type(exc).__name__}: {exc}"[:500],
            size=item.size,
            payload=item.payload_prefix,
            received_at=item.received_at,
            qos=item.qos,
            retained=item.retained,
        )


def _loop_alive(client: mqtt.Client) -> bool:
    """Is paho's network thread (``loop_start``) still running?

    paho keeps the thread in a private attribute and has no public accessor; a thread
    killed by an exception escaping a callback leaves it set but dead.
    """
    thread = getattr(client, "_thread", None)
    return isinstance(thread, threading.Thread) and thread.is_alive()


def _safe_topic(message: mqtt.MQTTMessage) -> str:
    try:
        return str(message.topic)
    except Exception:  # undecodable topic bytes
        return repr(getattr(message, "_topic", b""))[:200]


def _protocol_name(protocol: MQTTProtocolVersion) -> str:
    return "5" if protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"


def _is_published(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float) -> bool:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError):
        return False
    return _is_published(info)
