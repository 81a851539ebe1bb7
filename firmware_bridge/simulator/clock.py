"""Station time for the simulator.

A :class:`SimClock` maps the process's monotonic clock to station time:
``origin + elapsed_real * speed + offset``. With ``speed`` 1 and no offset it is the
real UTC time. A demo can run the fleet ``speed`` times faster from the simulator's
start; playback, command timers, telemetry intervals and the health model all sleep
through the clock, so they stay consistent with each other. Connection-level timers
(MQTT keep-alive, reconnect backoff, link flaps, power outages) are real time, since
the broker counts them in real seconds. ``offset_s`` models a station whose clock is
wrong (the ``clock`` fault): it shifts what that station believes the time is.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from firmware_bridge.messages import utcnow

__all__ = ["SimClock"]

_MAX_SLEEP_S = 3600.0


class SimClock:
    """Station time running ``speed`` times faster than real time, plus an offset."""

    def __init__(
        self,
        speed: float = 1.0,
        *,
        origin: datetime | None = None,
        offset_s: float = 0.0,
        _mono0: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.offset_s = offset_s
        self._origin = origin or utcnow()
        self._mono0 = time.monotonic() if _mono0 is None else _mono0

    def now(self) -> datetime:
        """The current station time (aware, UTC)."""
        elapsed = (time.monotonic() - self._mono0) * self.speed
        return self._origin + timedelta(seconds=elapsed + self.offset_s)

    def with_offset(self, offset_s: float) -> SimClock:
        """A clock sharing this one's origin and speed, shifted by ``offset_s`` seconds."""
        return SimClock(self.speed, origin=self._origin, offset_s=offset_s, _mono0=self._mono0)

    def real_seconds(self, station_seconds: float) -> float:
        """How many real seconds ``station_seconds`` of station time take."""
        return station_seconds / self.speed

    async def sleep(self, station_seconds: float) -> None:
        """Sleep for a span of station time."""
        await self.sleep_until(self.now() + timedelta(seconds=station_seconds))

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until the station clock reads ``when`` (returns at once if past)."""
        while True:
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(min(self.real_seconds(remaining), _MAX_SLEEP_S))
