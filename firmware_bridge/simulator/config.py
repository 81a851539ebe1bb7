"""The simulator's settings and value types: what a station is, how every station of a
fleet behaves, what the fleet shares, and a station's status snapshot."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from firmware_bridge.messages import SMART_CAPABILITIES, Capability
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.simulator.clock import SimClock
from firmware_bridge.simulator.faults import FaultSettings
from firmware_bridge.simulator.media import MediaFetcher
from firmware_bridge.simulator.player import PlayRecord
from firmware_bridge.topics import Topics

__all__ = ["FleetContext", "SimSettings", "StationSpec", "StationStatus"]


@dataclass(frozen=True, slots=True)
class StationSpec:
    """A station to simulate: its id and optional MQTT password (the station secret)."""

    sid: str
    password: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Behaviour settings shared by every station of a fleet."""

    keepalive: int = 30
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    session_expiry_s: int = 7200
    will_delay_s: int = 10
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    connect_timeout_s: float = 10.0
    default_play_s: float = 60.0
    relay_open_timeout_s: float = 10.0
    """A stream that cannot be opened, or stays dead (ended, error status, no bytes), this
    long is given up: fallback media if any, else the play fails (PROTOCOL.md: 10 s)."""
    stream_tap: Callable[[str, str, bytes], None] | None = None
    """Called with (sid, play ref, bytes) for every chunk a station reads of a stream it
    plays (measurements: e.g. a benchmark decoding the audio to time a marker tone)."""
    firmware: str = "sim-0.1.0"
    model: str = "loa-sim"
    capabilities: tuple[Capability, ...] = SMART_CAPABILITIES
    faults: FaultSettings = field(default_factory=FaultSettings)


@dataclass(slots=True)
class FleetContext:
    """What every station of a fleet shares."""

    settings: SimSettings
    topics: Topics
    url: MqttUrl
    clock: SimClock
    state_dir: Path
    fetcher: MediaFetcher
    executor: Executor
    connect_slots: asyncio.Semaphore
    tls: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class StationStatus:
    """A snapshot of one station, safe to read from any thread."""

    sid: str
    alive: bool
    online: bool
    bdseq: int | None
    connects: int
    protocol: str | None
    desired_version: int | None
    missing: tuple[str, ...]
    volume: int | None
    groups: tuple[str, ...]
    playing: PlayRecord | None
    plays: tuple[PlayRecord, ...]
    acks: dict[str, str]
    faults: tuple[str, ...]
    active_faults: tuple[str, ...]
    events_sent: int
    spooled: int
    telemetry_seq: int
    clock_offset_s: float
