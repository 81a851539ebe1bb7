"""A small physical model behind a station's telemetry.

* Amplifier temperature relaxes exponentially (time constant 5 min) towards
  ``ambient + 30 °C x duty x volume``, so it follows the duty cycle; the ``overheat``
  fault adds 60 °C (a blocked fan), the ``warm`` fault 38 °C (a dusty heat sink).
  ``amp_overheat`` is raised above 75 °C and cleared below 65 °C.
* Supply: 13.6 V on mains; on mains loss the battery takes over, the voltage sags
  towards 11.2 V while discharging, and ``on_battery`` is raised (cleared on return);
  the ``flat`` fault is a mains loss with a battery already run down (11.4 V).
* RSSI does a bounded random walk around its starting value.
* The ``speaker`` and ``storage`` faults are static conditions raised once.

:meth:`Health.step` advances the model by a span of station time and returns the
fault transitions to report as events.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from firmware_bridge.messages import FaultKind

__all__ = ["FaultChange", "Health"]

_AMBIENT_C = 31.0
_TAU_S = 300.0
_OVERHEAT_ON_C = 75.0
_OVERHEAT_OFF_C = 65.0
_OVERHEAT_RISE_C = 60.0
_WARM_RISE_C = 38.0
_FLAT_V = 11.4


@dataclass(frozen=True, slots=True)
class FaultChange:
    """A fault that was raised (``raised``) or cleared."""

    fault: FaultKind
    raised: bool
    reason: str


class Health:
    """Telemetry state of one station."""

    def __init__(
        self,
        rng: random.Random,
        *,
        overheat: bool = False,
        speaker_fault: bool = False,
        storage_low: bool = False,
        clock_unsynced: bool = False,
    ) -> None:
        self._rng = rng
        self.overheat = overheat
        self.warm = False
        self.amp_temp_c = _AMBIENT_C + rng.uniform(-2.0, 2.0)
        self.rssi_dbm = rng.uniform(-95.0, -65.0)
        self._mains = True
        self.supply_v = 13.6
        self.speaker_ok = not speaker_fault
        self.storage_free_mb = (
            rng.uniform(40.0, 80.0) if storage_low else rng.uniform(2500.0, 3800.0)
        )
        self._clock_unsynced = clock_unsynced
        self.active: set[FaultKind] = set()

    @property
    def mains(self) -> bool:
        """True while mains power is present."""
        return self._mains

    @mains.setter
    def mains(self, present: bool) -> None:
        if present != self._mains:
            self._mains = present
            self.supply_v = 13.6 if present else 12.7  # the battery takes over at once

    @property
    def on_battery(self) -> bool:
        """True while the battery powers the station."""
        return not self._mains

    def _rise_c(self) -> float:
        if self.overheat:
            return _OVERHEAT_RISE_C
        return _WARM_RISE_C if self.warm else 0.0

    def set_overheat(self, on: bool) -> None:
        """Switch the blocked-fan fault; the temperature jumps to where it would settle."""
        self.overheat = on
        self.amp_temp_c = _AMBIENT_C + self._rise_c()

    def set_warm(self, on: bool) -> None:
        """Switch the warm-amplifier fault (the temperature jumps as with overheat)."""
        self.warm = on
        self.amp_temp_c = _AMBIENT_C + self._rise_c()

    def set_flat(self, on: bool) -> None:
        """Mains lost with a run-down battery (on), or mains back (off)."""
        self.mains = not on
        if on:
            self.supply_v = _FLAT_V

    @property
    def clock_unsynced(self) -> bool:
        return self._clock_unsynced

    @clock_unsynced.setter
    def clock_unsynced(self, value: bool) -> None:
        self._clock_unsynced = value

    def step(self, dt_s: float, *, playing: bool, volume: int) -> list[FaultChange]:
        """Advance the model by ``dt_s`` station seconds."""
        dt_s = max(dt_s, 0.0)
        duty = (volume / 100.0) if playing else 0.0
        target = _AMBIENT_C + 30.0 * duty + self._rise_c()
        self.amp_temp_c = target + (self.amp_temp_c - target) * math.exp(-dt_s / _TAU_S)
        self.rssi_dbm = min(-50.0, max(-113.0, self.rssi_dbm + self._rng.gauss(0.0, 1.5)))
        if self.mains:
            self.supply_v = 13.6 + self._rng.uniform(-0.1, 0.1)
        else:
            self.supply_v = max(11.2, self.supply_v - dt_s * 0.0004) + self._rng.uniform(
                -0.02, 0.02
            )
        changes: list[FaultChange] = []
        self._track(
            changes, "amp_overheat", self._overheated(), f"amplifier {self.amp_temp_c:.0f} °C"
        )
        self._track(changes, "on_battery", not self.mains, "mains lost, running on battery")
        self._track(changes, "speaker_line", not self.speaker_ok, "speaker line open circuit")
        self._track(
            changes,
            "storage_low",
            self.storage_free_mb < 100.0,
            f"{self.storage_free_mb:.0f} MB free",
        )
        self._track(
            changes, "clock_unsynced", self._clock_unsynced, "NTP unreachable, clock drifted"
        )
        return changes

    def _overheated(self) -> bool:
        if "amp_overheat" in self.active:
            return self.amp_temp_c > _OVERHEAT_OFF_C
        return self.amp_temp_c > _OVERHEAT_ON_C

    def _track(self, changes: list[FaultChange], fault: FaultKind, now: bool, reason: str) -> None:
        if now and fault not in self.active:
            self.active.add(fault)
            changes.append(FaultChange(fault, raised=True, reason=reason))
        elif not now and fault in self.active:
            self.active.discard(fault)
            changes.append(FaultChange(fault, raised=False, reason="back to normal"))
