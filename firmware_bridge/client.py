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
* paho callbacks only parse and hand off: topic and payload are validated strictly
  (:func:`firmware_bridge.messages.parse_message`) and the result is put on a bounded
  queue. A consumer thread calls the user's ``on_inbound`` handler with batches of what
  has queued up (one transaction per batch on the server side). Past ``queue_size``
  queued messages, telemetry (QoS 0, the next report supersedes it) is dropped and
  counted; births, deaths, ``reported``, acks and events (QoS 1, each one matters) are
  still taken, up to ``queue_hard_limit``: a burst of 10,000 acks is stored late, not
  lost. The paho thread never waits for storage, so what the server publishes (an
  emergency command) never queues behind what it ingests. Invalid messages are counted
  by category and logged with the station id and the reason (rate-limited); a handler
  exception is logged and
  counted and the consumer goes on. Nothing received can crash or stall the bridge.
* :meth:`Bridge.publish` serialises through :func:`dump_message`, which validates the
  payload, so the server cannot publish an invalid message. It refuses (returns
  ``False``) while disconnected instead of letting paho queue without bound: the
  server's command outbox owns retries.

All public methods are thread-safe.
"""

from __future__ import annotations

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

from firmware_bridge.errors import ProtocolError
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

__all__ = ["Bridge", "BridgeConfig", "BridgeStats", "Inbound", "StationMessage"]

log = logging.getLogger(__name__)

#: The payloads a station publishes.
StationMessage: TypeAlias = StationState | Reported | Ack | Event | Telemetry

_UNSUPPORTED_PROTOCOL = 132  # CONNACK reason "Unsupported protocol version"


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
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._url = MqttUrl.parse(config.url)
        self._on_inbound = on_inbound
        self._queue: queue.Queue[Inbound] = queue.Queue()  # bounded by `_enqueue`
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
        self._subscribe_mid: int | None = None
        self._started = False
        self._stopping = threading.Event()
        self._fallback = threading.Event()
        self._threads: list[threading.Thread] = []

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
        """Publish ``{"online": false}`` retained, disconnect cleanly and stop all threads."""
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
        """Swap in an MQTT 3.1.1 client when the broker refused MQTT 5."""
        while not self._stopping.is_set():
            if not self._fallback.wait(0.2):
                continue
            self._fallback.clear()
            with self._lock:
                old = self._client
            if old is not None:
                old.disconnect()
                old.loop_stop()
            with self._lock:
                if self._stopping.is_set():
                    return
                self._protocol = MQTTProtocolVersion.MQTTv311
                log.warning("broker refused MQTT 5; falling back to MQTT 3.1.1")
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
        if was_connected and not self._stopping.is_set():
            log.warning("bridge lost its broker connection: %s", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.handle_raw(message.topic, bytes(message.payload), retained=bool(message.retain))

    def handle_raw(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Parse one received message and queue it (what the paho callback does)."""
        received_at = utcnow()
        with self._lock:
            self._counters.received += 1
        try:
            ref = self.topics.parse(topic)
            if ref.kind not in STATION_INBOUND or ref.sid is None:
                raise ProtocolError(f"unexpected topic {topic!r}", category="topic")
            sid = ref.sid
            if not payload:
                with self._lock:
                    self._counters.empty += 1
                return
            message = parse_message(ref.kind.message_kind, payload)
        except ProtocolError as exc:
            with self._lock:
                self._counters.invalid[exc.category] += 1
            if self._limiter.allow(exc.category):
                log.warning("invalid message on %s: %s", topic, exc.reason)
            return
        assert isinstance(message, StationState | Reported | Ack | Event | Telemetry)
        inbound = Inbound(
            sid=sid,
            kind=ref.kind,
            message=message,
            topic=topic,
            received_at=received_at,
            retained=retained,
        )
        if not self._enqueue(inbound):
            with self._lock:
                self._counters.dropped += 1
            if self._limiter.allow("dropped"):
                log.warning("inbound queue full; dropped %s from %s", ref.kind.value, sid)
            return
        with self._lock:
            self._counters.accepted += 1

    def _enqueue(self, inbound: Inbound) -> bool:
        """Queue ``inbound`` unless the queue is over its limit for that kind."""
        depth = self._queue.qsize()
        if depth >= self.config.queue_size:
            if inbound.kind == TopicKind.TELEMETRY or depth >= self.config.queue_hard_limit:
                return False
            with self._lock:
                self._counters.overflow += 1
        self._queue.put_nowait(inbound)
        return True

    # ------------------------------------------------------------------ consumer

    def _consume(self) -> None:
        """Hand inbound messages to the handler in batches (whatever has queued up,
        at most ``batch_max``), so the handler can store them in one transaction."""
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
                self._on_inbound(batch)
            except Exception:
                with self._lock:
                    self._counters.handler_errors += len(batch)
                log.exception("inbound handler failed on a batch of %d message(s)", len(batch))
            else:
                with self._lock:
                    self._counters.handled += len(batch)


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
