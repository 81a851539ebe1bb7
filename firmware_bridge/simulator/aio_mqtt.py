"""paho-mqtt clients driven by one asyncio event loop.

Why not one ``loop_start`` thread per station: a thousand stations would mean a
thousand threads each waking every second, which two cores cannot carry. Why not
aiomqtt: it is a thin layer over exactly this mechanism, it is not a declared
dependency, and the simulator needs two things it hides: dropping a connection
without a DISCONNECT (link flap) and freezing a socket so the broker only notices
through the keep-alive (power loss). So this module drives plain paho clients through
paho's external-loop API: the socket is registered with ``loop.add_reader`` /
``add_writer`` (paho's ``on_socket_*`` callbacks keep the writer registration in
step), a fleet-wide ticker calls :meth:`AioMqttClient.tick` (``loop_misc``, the
keep-alive) once a second, and every paho callback therefore runs on the event loop
thread. Only the blocking TCP/TLS connect runs in a thread pool; the socket is
registered with the loop when it returns, so no paho state is touched from two
threads.

What paho queues is written as soon as the call that queued it returns (``publish``,
or the read that delivered a command and so queued its ack and PUBACK), not on the
loop's next pass: a station acknowledges a command at once, as its firmware would,
instead of after every other station of the process has handled it, and the socket is
registered for writing only while the kernel's buffer is full.

One :class:`AioMqttClient` is one network connection: a station builds a fresh one for
every connect. Its session state lives in the broker (clean start false), and
anything unacknowledged is owned by the station's spool, not by paho's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from functools import partial
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["AioMqttClient", "ConnectFailed"]

log = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL = 132
# paho's Properties constructor is unannotated; give it a type once.
_properties = cast(Callable[[int], Properties], Properties)
_MAX_READS_PER_WAKEUP = 64


class ConnectFailed(Exception):
    """The connection could not be established (socket error, refusal, no CONNACK)."""

    def __init__(self, reason: str, *, protocol_refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.protocol_refused = protocol_refused


def _noop_message(message: mqtt.MQTTMessage) -> None:
    return None


class AioMqttClient:
    """One MQTT connection whose I/O runs on the current asyncio loop."""

    def __init__(
        self,
        *,
        client_id: str,
        protocol: MQTTProtocolVersion,
        keepalive: int,
        executor: Executor,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes] | None = None,
        will_delay_s: int = 0,
        session_expiry_s: int = 0,
        clean_start: bool = False,
        tls: ssl.SSLContext | None = None,
        on_message: Callable[[mqtt.MQTTMessage], None] = _noop_message,
        on_published: Callable[[int], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = executor
        self.client_id = client_id
        self.protocol = protocol
        self._v5 = protocol == MQTTProtocolVersion.MQTTv5
        self._keepalive = keepalive
        self._session_expiry_s = session_expiry_s
        self._clean_start = clean_start
        self._on_message_cb = on_message
        self._on_published_cb = on_published
        self._on_lost_cb = on_lost
        self._registered = False
        self._frozen = False
        #: inside a paho call whose queued packets `_flush` writes when it returns
        self._batching = False
        self.connected = False
        self._connack: asyncio.Future[bool] | None = None
        self._closed = asyncio.Event()
        self._sub_waiters: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._pub_waiters: dict[int, asyncio.Future[None]] = {}

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if self._v5 else clean_start,
        )
        client.suppress_exceptions = True
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set_context(tls)
        if will is not None:
            will_props = None
            if self._v5 and will_delay_s > 0:
                will_props = _properties(PacketTypes.WILLMESSAGE)
                will_props.WillDelayInterval = will_delay_s
            client.will_set(will[0], will[1], qos=1, retain=True, properties=will_props)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_socket_close = self._on_socket_close
        self._client = client

    # ---------------------------------------------------------------- connection

    async def connect(self, host: str, port: int, *, timeout_s: float = 10.0) -> bool:
        """Connect and wait for the CONNACK; returns the session-present flag."""
        client = self._client
        client.connect_timeout = timeout_s
        props = None
        if self._v5:
            props = _properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._session_expiry_s
        self._connack = self._loop.create_future()
        opening = self._loop.run_in_executor(
            self._executor,
            partial(
                client.connect,
                host,
                port,
                self._keepalive,
                clean_start=self._clean_start if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            ),
        )
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread finishes the TCP connect anyway; close whatever it opens.
            opening.add_done_callback(self._dispose_late)
            raise
        except (OSError, ValueError) as exc:
            self._closed.set()
            raise ConnectFailed(f"cannot reach {host}:{port}: {exc}") from exc
        self._register()
        try:
            return await asyncio.wait_for(self._connack, timeout_s)
        except TimeoutError as exc:
            self.abort()
            raise ConnectFailed("no CONNACK from broker") from exc
        except asyncio.CancelledError:
            self.abort()
            raise

    def _dispose_late(self, opening: asyncio.Future[Any]) -> None:
        if not opening.cancelled():
            opening.exception()  # retrieved: the caller is gone
        self.dispose()

    def _register(self) -> None:
        sock = self._client.socket()
        if sock is None:
            raise ConnectFailed("socket closed during connect")
        self._registered = True
        self._loop.add_reader(sock, self._readable)
        if self._client.want_write():
            self._loop.add_writer(sock, self._writable)

    def tick(self) -> None:
        """Keep-alive housekeeping; the fleet calls this about once a second."""
        if self._registered and not self._frozen:
            with self._batch():
                self._client.loop_misc()

    async def subscribe(
        self, topics: list[tuple[str, int]], *, timeout_s: float = 10.0
    ) -> list[str]:
        """Subscribe and wait for the SUBACK; return the refused reason codes."""
        if not topics:
            return []
        rc, mid = self._client.subscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectFailed(f"subscribe failed: {mqtt.error_string(rc)}")
        waiter: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._sub_waiters[mid] = waiter
        try:
            codes = await asyncio.wait_for(waiter, timeout_s)
        finally:
            self._sub_waiters.pop(mid, None)
        refused = [str(code) for code in codes if code.is_failure]
        if refused:
            log.warning("%s: broker refused subscriptions: %s", self.client_id, refused)
        return refused

    def unsubscribe(self, topics: list[str]) -> None:
        """Unsubscribe without waiting."""
        if topics:
            self._client.unsubscribe(topics)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> int:
        """Publish (written at once, or when the paho callback this runs in returns);
        returns its message id (PUBACK reported via ``on_published``)."""
        with self._batch():
            mid = self._client.publish(topic, payload, qos=qos, retain=retain).mid
        return mid

    async def publish_wait(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 5.0,
    ) -> bool:
        """Publish and wait for the PUBACK; False on timeout or connection loss."""
        if not self.connected:
            return False
        waiter: asyncio.Future[None] = self._loop.create_future()
        mid = self.publish(topic, payload, qos=qos, retain=retain)
        self._pub_waiters[mid] = waiter
        try:
            await asyncio.wait({waiter}, timeout=timeout_s)
        finally:
            self._pub_waiters.pop(mid, None)
        return waiter.done() and not waiter.cancelled()

    async def disconnect(self, *, timeout_s: float = 5.0) -> None:
        """Send DISCONNECT (the broker drops the will) and wait for the socket to close."""
        self._on_lost_cb = None
        if not self._registered:
            self.dispose()
            return
        self._client.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout_s)
        self.dispose()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a lost link does (the will fires)."""
        sock = self._client.socket()
        if not isinstance(sock, socket.socket) or not self._registered:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self._readable()

    def freeze(self) -> None:
        """Go silent with the socket left open: the broker notices only by keep-alive."""
        self._frozen = True
        self._on_lost_cb = None
        self._on_message_cb = _noop_message
        self._on_published_cb = None
        self._unregister()
        self.connected = False

    def dispose(self) -> None:
        """Release the socket (whatever state it is in) without calling back the owner."""
        self._on_lost_cb = None
        self._on_message_cb = _noop_message
        self._on_published_cb = None
        self._unregister()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._client.loop_read()
            if self._client.socket() is not None:
                # loop_read handled a packet still buffered (e.g. one that reached a frozen
                # socket) instead of seeing EOF, so paho kept the socket open: close it, or
                # every power cycle of a station leaks a file descriptor.
                sock.close()
        self._fail_waiters("disposed")
        self.connected = False
        self._closed.set()

    # ---------------------------------------------------------------- loop glue

    def _unregister(self) -> None:
        if not self._registered:
            return
        self._registered = False
        sock = self._client.socket()
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Make paho calls whose queued packets are written when the outermost returns
        (`_flush`), never from inside paho: a QoS 0 packet's write calls ``on_publish``
        under paho's callback lock, which a callback running it would already hold."""
        outer, self._batching = self._batching, True
        try:
            yield
        finally:
            self._batching = outer
        if not outer:
            self._flush()

    def _readable(self) -> None:
        with self._batch():
            self._read()

    def _read(self) -> None:
        for _ in range(_MAX_READS_PER_WAKEUP):
            rc = self._client.loop_read()
            sock = self._client.socket()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or sock is None:
                return
            pending = getattr(sock, "pending", None)
            if pending is None or not pending():
                return

    def _writable(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write what paho has queued; wait for the socket to be writable only for what
        the kernel would not take now."""
        client = self._client
        if not self._registered or not client.want_write():
            return
        batching, self._batching = self._batching, True  # a publish from on_publish waits
        try:
            client.loop_write()
        finally:
            self._batching = batching
        sock = client.socket()
        # paho believes the writer registered since it queued the packet (its callback
        # ran while batching), so it will not ask again: register it here
        if self._registered and sock is not None and client.want_write():
            self._loop.add_writer(sock, self._writable)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._registered and not self._batching:
            self._loop.add_writer(sock, self._writable)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._registered:
            self._loop.remove_writer(sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._registered:
            self._registered = False
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self._closed.set()

    # ---------------------------------------------------------------- paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        waiter = self._connack
        if reason_code.is_failure:
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ConnectFailed(
                        f"broker refused: {reason_code}",
                        protocol_refused=reason_code.value == _UNSUPPORTED_PROTOCOL,
                    )
                )
            return
        self.connected = True
        if waiter is not None and not waiter.done():
            waiter.set_result(bool(flags.session_present))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected
        self.connected = False
        self._closed.set()
        waiter = self._connack
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectFailed(f"connection closed before CONNACK: {reason_code}"))
        self._fail_waiters(str(reason_code))
        callback = self._on_lost_cb
        self._on_lost_cb = None
        if was_connected and callback is not None:
            callback(str(reason_code))

    def _fail_waiters(self, reason: str) -> None:
        for sub in self._sub_waiters.values():
            if not sub.done():
                sub.set_exception(ConnectFailed(f"connection lost: {reason}"))
        for pub in self._pub_waiters.values():
            if not pub.done():
                pub.cancel()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message_cb(message)
        except Exception:
            log.exception("%s: message handler failed on %s", self.client_id, message.topic)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        waiter = self._pub_waiters.get(mid)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._on_published_cb is not None:
            try:
                self._on_published_cb(mid)
            except Exception:
                log.exception("%s: publish callback failed", self.client_id)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        waiter = self._sub_waiters.get(mid)
        if waiter is not None and not waiter.done():
            waiter.set_result(reason_codes)
