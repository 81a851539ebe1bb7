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
* After a command for many stations, its sender may open a quiet moment (:attr:`Bridge.quiet`,
  :mod:`firmware_bridge.quiet`): the paho thread leaves what stations send in the broker
  until it ends (a few tens of milliseconds), so the broker beside the service fans the
  command out first. Any publish ends it, so nothing the server sends waits on it.
* A supervisor thread restarts the network loop (with a fresh client on the same
  persistent session) if it ever stops, and swaps in an MQTT 3.1.1 client when the
  broker refuses MQTT 5. :meth:`Bridge.health` tells the truth about all of it (loop
  alive, connected, last message time).
* :meth:`Bridge.publish` serialises through :func:`dump_message`, which validates the
  payload, so the server cannot publish an invalid message. It refuses (returns
  ``False``) while disconnected instead of letting paho queue without bound: the
  server's command outbox owns retries.

All public methods are thread-safe.

The settings and counters live in :mod:`firmware_bridge.bridge_state`, the inbound
records and the queue with its consumer in :mod:`firmware_bridge.inbound`; this module
re-exports what callers use.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_bridge import paho_loop
from firmware_bridge.bridge_state import (
    BridgeConfig,
    BridgeHealth,
    BridgeStats,
    Counters,
    LogLimiter,
)
from firmware_bridge.errors import ProtocolError
from firmware_bridge.inbound import (
    REJECTED_PREFIX_BYTES,
    Inbound,
    InboundQueue,
    QueuedItem,
    Rejected,
    StationMessage,
)
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
from firmware_bridge.quiet import QuietWindow
from firmware_bridge.topics import STATION_INBOUND, TopicKind, Topics

__all__ = [
    "REJECTED_PREFIX_BYTES",
    "Bridge",
    "BridgeConfig",
    "BridgeHealth",
    "BridgeStats",
    "Inbound",
    "Rejected",
    "StationMessage",
]

log = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL = 132  # CONNACK reason "Unsupported protocol version"
_RESUBSCRIBE_S = 1.0  # after a SUBACK refusal on a clustered broker


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
        self._lock = threading.Lock()
        self._counters = Counters()
        self._limiter = LogLimiter()
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
        #: opened by whoever sent a command for many stations (`firmware_bridge.quiet`):
        #: the network thread reads nothing the stations send until it ends; every
        #: publish ends it
        self.quiet = QuietWindow()
        self._inbound = InboundQueue(
            config,
            lock=self._lock,
            counters=self._counters,
            limiter=self._limiter,
            stopping=self._stopping,
            on_inbound=on_inbound,
            on_rejected=on_rejected,
            ack=self._ack_now,
            clear_retained=lambda topic: self.clear_retained(topic, wait_s=None),
        )

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
                target=self._inbound.consume, name=f"{self.config.client_id}-consumer", daemon=True
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
        self.quiet.end()
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
            paho_loop.close(client)
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
                and paho_loop.loop_alive(client),
                connected=self._connected,
                last_message_at=self._last_message_at,
                loop_restarts=self._counters.loop_restarts,
                unacked=self._inbound.unacked,
            )

    def stats(self) -> BridgeStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return self._counters.stats(
                connected=self._connected,
                protocol=_protocol_name(self._protocol) if self._ever_connected else None,
                queue_depth=self._inbound.depth(),
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
        return self.publish_prepared([(topic, payload) for topic in topics], qos=qos, wait_s=wait_s)

    def publish_prepared(
        self,
        payloads: Sequence[tuple[str, bytes]],
        *,
        qos: int = 1,
        retain: bool = False,
        wait_s: float = 10.0,
    ) -> list[str]:
        """Publish already serialised and validated payloads (``messages.DesiredPlan``
        builds them), one per topic; like :meth:`publish_to_many`, queues them all, then
        waits (at most ``wait_s`` in all) and returns the acknowledged topics."""
        pending: list[tuple[str, mqtt.MQTTMessageInfo]] = []
        self.quiet.end()  # the network thread writes them and reads their PUBACKs
        with self._lock:
            client = self._client
            if client is None or not self._connected:
                return []
            for topic, payload in payloads:
                info = client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    pending.append((topic, info))
        deadline = time.monotonic() + wait_s
        return [
            topic
            for topic, info in pending
            if _wait_published(info, max(0.0, deadline - time.monotonic()))
        ]

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
        self.quiet.end()  # the network thread writes it and reads its PUBACK
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
        client.on_connect_fail = self._on_connect_fail
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
                if client is not None and not paho_loop.loop_alive(client):
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
                paho_loop.close(old)
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
        self._subscribe_stations_now(client)
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
        if refused and self._url.clustered:
            # A cluster that lost a node answers 0x80 until it elected new leaders.
            timer = threading.Timer(_RESUBSCRIBE_S, self._subscribe_stations, args=(client,))
            timer.daemon = True
            timer.start()

    def _subscribe_stations(self, client: mqtt.Client) -> None:
        with self._lock:
            if client is not self._client or self._stopping.is_set() or not self._connected:
                return
        self._subscribe_stations_now(client)

    def _subscribe_stations_now(self, client: mqtt.Client) -> None:
        _, mid = client.subscribe(
            [(self.topics.station_filter(kind), 1) for kind in STATION_INBOUND]
        )
        with self._lock:
            self._subscribe_mid = mid

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
        self._next_broker(client)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._next_broker(client)

    def _next_broker(self, client: mqtt.Client) -> None:
        """On a clustered broker, let paho's next reconnect try the next address.

        The persistent session lives in the cluster (JetStream on NATS), so the next node
        resumes it: what was not acknowledged is delivered again there.
        """
        if not self._url.clustered:
            return
        host, port = self._url.after(client.host, client.port)
        # paho's setters refuse while a lost connection is being retried; its reconnect
        # reads these two attributes.
        client._host, client._port = host, port
        log.info("bridge will reconnect to %s:%d", host, port)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """The barrier: nothing a station sends may escape into paho's network thread.

        In a quiet moment after a command fanned out (`quiet`), it first waits for the
        moment to end: the rest stays in the broker meanwhile."""
        try:
            self.quiet.wait()
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
        rejected = Rejected.of(
            _safe_topic(message),
            bytes(message.payload),
            category="internal",
            reason=exc,
            received_at=utcnow(),
            qos=int(message.qos),
            retained=bool(message.retain),
        )
        self._inbound.put(QueuedItem.of(None, rejected, int(message.mid), generation))

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
            rejected = Rejected.of(
                topic,
                payload,
                category=exc.category,
                reason=exc.reason,
                received_at=received_at,
                sid=sid,
                kind=None if kind is None else kind.value,
                qos=qos,
                retained=retained,
            )
            self._inbound.offer(QueuedItem.of(None, rejected, mid, generation))
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
        item = QueuedItem.of(inbound, None, mid, generation, payload=payload, qos=qos)
        if self._inbound.offer(item):
            with self._lock:
                self._counters.accepted += 1

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
