"""Helpers for loa/v1 tests: polling, desired-state builders, fleets, raw publishing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge import paho_loop
from firmware_bridge.client import Bridge, BridgeConfig, Inbound
from firmware_bridge.messages import (
    Ack,
    Config,
    Desired,
    PlaylistItem,
    Window,
    dump_message,
    utcnow,
)
from firmware_bridge.simulator import FaultSpec, FleetConfig, FleetThread, SimSettings, StationSpec
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder

__all__ = [
    "FAST",
    "FleetFactory",
    "Inbox",
    "RawPublisher",
    "SimRig",
    "desired",
    "file_item",
    "make_bridge",
    "poll",
    "wait_until",
]

#: Quick reconnects and short default plays for tests.
FAST = SimSettings(reconnect_min_s=0.2, reconnect_max_s=1.0, default_play_s=5.0)


def poll(predicate: Callable[[], Any], timeout_s: float, every_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; that, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)


def wait_until(
    predicate: Callable[[], Any],
    timeout_s: float = 15.0,
    what: str = "condition",
    every_s: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    value = poll(predicate, timeout_s, every_s)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


class Inbox:
    """Collects what the bridge hands to ``on_inbound``."""

    def __init__(self) -> None:
        self.items: list[Inbound] = []
        self._lock = threading.Lock()

    def __call__(self, batch: list[Inbound]) -> None:
        with self._lock:
            self.items.extend(batch)

    def select(self, kind: str | None = None, sid: str | None = None) -> list[Inbound]:
        """Received messages by topic kind (``state``, ``ack``...) and station."""
        with self._lock:
            return [
                i
                for i in self.items
                if (kind is None or i.kind.value == kind) and (sid is None or i.sid == sid)
            ]


def ack_payload(cmd_id: str) -> bytes:
    """A station's RECEIVED ack of ``cmd_id``, as it goes on the wire."""
    return dump_message(Ack(cmd_id=cmd_id, status="RECEIVED", at=utcnow()))


def make_bridge(
    server: Mosquitto, handler: Callable[[list[Inbound]], None], **kwargs: Any
) -> Bridge:
    """A bridge to ``server`` with one-second reconnects."""
    config = BridgeConfig(url=server.url, reconnect_min_s=1, reconnect_max_s=1, **kwargs)
    return Bridge(config, handler)


class FleetFactory:
    """Starts fleets for a test and stops them at teardown."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.fleets: list[FleetThread] = []

    def __call__(
        self,
        server: Mosquitto,
        sids: Sequence[str] = ("st-1",),
        *,
        faults: Sequence[str] = (),
        speed: float = 1.0,
        settings: SimSettings = FAST,
        passwords: dict[str, str] | None = None,
        wait_online: bool = True,
        seed: int = 7,
    ) -> FleetThread:
        config = FleetConfig(
            mqtt_url=server.url,
            state_dir=self.state_dir,
            speed=speed,
            seed=seed,
            settings=settings,
        )
        specs = [StationSpec(sid, password=(passwords or {}).get(sid)) for sid in sids]
        fleet = FleetThread(config, specs, [FaultSpec.parse(f) for f in faults])
        self.fleets.append(fleet)
        fleet.start(wait_online=wait_online, timeout_s=20)
        return fleet

    def stop_all(self) -> None:
        """Stop every fleet started by this factory."""
        for fleet in self.fleets:
            fleet.stop()


def desired(
    version: int,
    items: Sequence[dict[str, Any]] = (),
    *,
    now: datetime,
    groups: Sequence[str] = (),
    telemetry_interval_s: int = 60,
    volume: int = 70,
) -> Desired:
    """A desired state around ``now`` with the given playlist items."""
    return Desired(
        version=version,
        generated_at=now,
        config=Config(
            volume=volume,
            telemetry_interval_s=telemetry_interval_s,
            groups=list(groups),
            timezone="Asia/Ho_Chi_Minh",
        ),
        window=Window.model_validate(
            {"from": now - timedelta(hours=1), "to": now + timedelta(days=2)}
        ),
        playlist=[PlaylistItem.model_validate(item) for item in items],
    )


def file_item(
    item_id: str,
    media: dict[str, Any],
    start: datetime,
    *,
    length_s: float = 30.0,
    priority: int = 3,
    **extra: Any,
) -> dict[str, Any]:
    """A ``kind: file`` playlist item starting at ``start``."""
    return {
        "item_id": item_id,
        "kind": "file",
        "title": f"Bản tin {item_id}",
        "start_at": start,
        "end_at": start + timedelta(seconds=length_s),
        "priority": priority,
        "media": media,
        **extra,
    }


class RawPublisher:
    """A plain MQTT client for hand-made (possibly invalid) payloads."""

    def __init__(self, server: Mosquitto, client_id: str = "test-raw") -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.connect(server.host, server.port)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """Publish and wait for the broker's acknowledgement."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def stop(self) -> None:
        """Disconnect."""
        paho_loop.close(self._client)


@dataclass
class SimRig:
    """A broker with its recorder, the server-side bridge and what it received, a media
    server, and simulated fleets on the broker (the ``sim`` fixture)."""

    broker: Mosquitto
    recorder: Recorder
    bridge: Bridge
    inbox: Inbox
    media: MediaServer
    make_fleet: FleetFactory

    def fleet(self, sids: Sequence[str] = ("st-1",), **kwargs: Any) -> FleetThread:
        """``make_fleet(broker, sids, **kwargs)``: a running fleet, stopped at teardown."""
        return self.make_fleet(self.broker, sids, **kwargs)
