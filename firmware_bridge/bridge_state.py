"""The server bridge's settings, counters and the snapshots it reports (health, stats)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from firmware_bridge.topics import DEFAULT_PREFIX

__all__ = ["BridgeConfig", "BridgeHealth", "BridgeStats", "Counters", "LogLimiter"]


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
    #: how much lower than the rest of the process the consumer thread (the one that
    #: hands batches to the handler) runs: its niceness is raised by this much (Linux
    #: threads have their own; 0 leaves it, elsewhere it is ignored)
    consumer_nice: int = 0

    @property
    def client_id(self) -> str:
        """``srv-{instance}``."""
        return f"srv-{self.instance}"


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
class Counters:
    """What the bridge counted since it started (see :class:`BridgeStats`)."""

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

    def stats(self, *, connected: bool, protocol: str | None, queue_depth: int) -> BridgeStats:
        """A snapshot: every counter (copies of the per-category ones) and the state given."""
        counted: dict[str, Any] = {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Counter) else value
            for f in fields(self)
        }
        return BridgeStats(
            connected=connected, protocol=protocol, queue_depth=queue_depth, **counted
        )


class LogLimiter:
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
