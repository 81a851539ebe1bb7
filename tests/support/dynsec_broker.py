"""A real Mosquitto with the dynamic-security plugin, configured by our own bootstrap.

:func:`start_dynsec_broker` runs ``broadcaster.broker.bootstrap`` into a directory and
starts a :class:`~support.mosquitto.Mosquitto` on a free port with anonymous access off
and the plugin loaded from the generated dynamic-security file, so the tests exercise
exactly the service account and roles the bootstrap writes.

:class:`Peer` is a blocking MQTT test client that reports CONNACK, SUBACK and PUBACK
reason codes and records what it receives.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from broadcaster.broker import dynsec as ds
from broadcaster.broker.bootstrap import BootstrapResult, bootstrap
from broadcaster.broker.dynsec import Acl, AclType, DynsecClient
from firmware_bridge import paho_loop
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.topics import Topics
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder

__all__ = ["DynsecBroker", "Peer", "start_dynsec_broker"]


#: The test-only account that may read everything under loa/v1 (for the Recorder).
OBSERVER = "observer"


@dataclass
class DynsecBroker:
    server: Mosquitto
    setup: BootstrapResult
    observer_password: str | None = None

    @property
    def url(self) -> str:
        """The service account's ``mqtt://user:password@127.0.0.1:port``."""
        return self.setup.mqtt_url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def service(self) -> MqttUrl:
        return MqttUrl.parse(self.url)

    def peer(
        self,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        protocol: int = mqtt.MQTTv5,
        clean: bool = True,
    ) -> Peer:
        return Peer(
            self.host,
            self.port,
            username=username,
            password=password,
            client_id=client_id or f"peer-{time.monotonic_ns()}",
            protocol=protocol,
            clean=clean,
        )

    def recorder(self) -> Recorder:
        """A recorder (not started) signed in as the observer account."""
        assert self.observer_password is not None, "started without the observer"
        return Recorder(
            self.host,
            self.port,
            username=OBSERVER,
            password=self.observer_password,
            client_id=f"rec-{secrets.token_hex(4)}",
        )

    def stop(self) -> None:
        self.server.stop()


def _add_observer(url: str) -> str:
    """Create the observer account and role; return its password."""
    password = secrets.token_urlsafe(16)
    with DynsecClient(url) as client:
        ds.run(
            client,
            [
                ds.create_role("test-observer", [Acl(AclType.SUBSCRIBE_PATTERN, "loa/v1/#")]),
                ds.create_client(OBSERVER, password, roles=["test-observer"]),
            ],
        )
    return password


def start_dynsec_broker(
    directory: Path, *, topics: Topics | None = None, observer: bool = True
) -> DynsecBroker:
    """Bootstrap into ``directory`` and start a broker on a free port (with the observer
    account unless ``observer`` is false)."""
    server = Mosquitto(directory / "run", allow_anonymous=False)
    setup = bootstrap(directory / "conf", port=server.port, topics=topics)
    plugin = next(
        line.split(" ", 1)[1]
        for line in setup.config_path.read_text().splitlines()
        if line.startswith("plugin ")
    )
    server.extra_config = [f"plugin {plugin}", f"plugin_opt_config_file {setup.dynsec_path}"]
    server.start()
    started = DynsecBroker(server=server, setup=setup)
    if observer:
        started.observer_password = _add_observer(started.url)
    return started


class Peer:
    """A blocking MQTT client for assertions about what the broker allows."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None,
        password: str | None,
        client_id: str,
        protocol: int = mqtt.MQTTv5,
        clean: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.protocol = protocol
        self.clean = clean
        self._cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        if username is not None:
            client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client

    # --- actions -----------------------------------------------------------------------

    def connect(self, timeout_s: float = 5.0) -> ReasonCode:
        """Connect once (no automatic reconnects) and return the CONNACK reason."""
        self.client.reconnect_delay_set(60, 60)
        if self.protocol == mqtt.MQTTv5:
            self.client.connect(self.host, self.port, keepalive=30, clean_start=self.clean)
        else:
            self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        reason = self._wait(lambda: self.connack, timeout_s, "CONNACK")
        assert reason is not None
        return reason

    def ok(self) -> Peer:
        """Connect and require success."""
        reason = self.connect()
        assert not reason.is_failure, f"connection refused: {reason}"
        return self

    def subscribe(self, topic: str, timeout_s: float = 5.0) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        return self._wait(lambda: self._subacks.get(mid), timeout_s, f"SUBACK {topic}")

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> ReasonCode | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason (MQTT 5)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        return self._wait(lambda: self._pubacks.get(info.mid), 5.0, f"PUBACK {topic}")

    def received(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p in self.messages if t == topic]

    def wait_message(self, topic: str, timeout_s: float = 5.0) -> bytes:
        found = self._wait(lambda: self.received(topic), timeout_s, f"a message on {topic}")
        return found[-1]

    def close(self) -> None:
        paho_loop.close(self.client)

    # --- callbacks ---------------------------------------------------------------------

    def _wait(self, probe: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                value = probe()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._cond.wait(min(remaining, 0.1))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            self.connack = reason
            self._cond.notify_all()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.disconnected.set()
        with self._cond:
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = list(codes)
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self._pubacks[mid] = reason
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()
