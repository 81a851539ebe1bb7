"""Fault injection: which stations misbehave, and how.

A fault is given as ``KIND``, ``KIND:FRACTION`` (a share of the fleet, picked with the
fleet's seeded RNG) or ``KIND:sid1,sid2`` (named stations). ``KIND`` alone means every
station. Kinds:

========  ================================================================
power     vanishes without DISCONNECT (socket frozen; the broker fires the
          will after the keep-alive), then boots again after an outage
mains     mains lost: battery takes over (supply drops, ``on_battery``,
          ``fault.raised on_battery``), restored after a while
flap      the link drops (no DISCONNECT) every now and then and reconnects
slow      media downloads are throttled
corrupt   downloaded media is damaged: SHA-256 mismatch, ``media.corrupt``
clock     the station clock is off by tens of seconds (``clock_unsynced``)
overheat  the amplifier runs hot until ``amp_overheat`` is raised
warm      the amplifier runs warm (about 69 °C): above an alarm's warning
          threshold, below the station's own ``amp_overheat`` (75 °C)
speaker   speaker-line fault (``speaker_ok`` false, ``speaker_line``)
storage   storage nearly full (``storage_low``)
flat      mains lost with a run-down battery (``on_battery``, supply 11.4 V)
stall     applying a new plan stalls (its media downloads never finish; the
          ``reported`` version stays behind) until the fault is removed
deaf      commands are silently ignored (no acknowledgement at all), while
          telemetry and events go on (a hung command handler)
========  ================================================================

Timings live in :class:`FaultSettings`; connection faults (power, flap) count real
seconds, the others station seconds.  ``Station.inject`` switches every fault but
``power`` and ``slow`` on or off while the station runs (`RUNTIME`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from firmware_bridge.errors import ConfigError
from firmware_bridge.topics import is_valid_id

__all__ = ["RUNTIME", "Fault", "FaultSettings", "FaultSpec", "assign_faults"]


class Fault(StrEnum):
    """A kind of injected fault."""

    POWER = "power"
    MAINS = "mains"
    FLAP = "flap"
    SLOW = "slow"
    CORRUPT = "corrupt"
    CLOCK = "clock"
    OVERHEAT = "overheat"
    SPEAKER = "speaker"
    STORAGE = "storage"
    WARM = "warm"
    FLAT = "flat"
    STALL = "stall"
    DEAF = "deaf"


#: Faults a running station can be given or rid of (`Station.inject`).
RUNTIME = frozenset(Fault) - {Fault.POWER, Fault.SLOW}


_ALIASES = {
    "power_loss": Fault.POWER,
    "power-loss": Fault.POWER,
    "mains_loss": Fault.MAINS,
    "battery": Fault.MAINS,
    "link_flap": Fault.FLAP,
    "link-flap": Fault.FLAP,
    "slow_download": Fault.SLOW,
    "corrupt_download": Fault.CORRUPT,
    "clock_offset": Fault.CLOCK,
    "amp_overheat": Fault.OVERHEAT,
    "speaker_line": Fault.SPEAKER,
    "storage_low": Fault.STORAGE,
    "amp_warm": Fault.WARM,
    "battery_low": Fault.FLAT,
    "stalled_download": Fault.STALL,
    "no_ack": Fault.DEAF,
}


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Timings and magnitudes of injected faults."""

    power_after_s: tuple[float, float] = (20.0, 120.0)
    power_outage_s: tuple[float, float] = (30.0, 180.0)
    flap_every_s: tuple[float, float] = (30.0, 120.0)
    mains_after_s: tuple[float, float] = (30.0, 300.0)
    mains_outage_s: tuple[float, float] = (300.0, 1800.0)
    slow_bytes_per_s: int = 32 * 1024
    clock_offset_s: tuple[float, float] = (20.0, 120.0)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault and the stations it hits (a fraction of the fleet, or named sids)."""

    kind: Fault
    fraction: float | None = None
    sids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``KIND[:FRACTION | :sid1,sid2]``."""
        name, _, target = text.strip().partition(":")
        name = name.strip().lower()
        try:
            kind = _ALIASES.get(name) or Fault(name)
        except ValueError as exc:
            kinds = ", ".join(f.value for f in Fault)
            raise ConfigError(f"unknown fault {name!r} (one of {kinds})") from exc
        target = target.strip()
        if not target:
            return cls(kind, fraction=1.0)
        try:
            fraction = float(target)
        except ValueError:
            sids = tuple(s.strip() for s in target.split(",") if s.strip())
            bad = [s for s in sids if not is_valid_id(s)]
            if not sids or bad:
                raise ConfigError(f"invalid station ids in fault {text!r}: {bad}") from None
            return cls(kind, sids=sids)
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"fault fraction must be within 0..1, got {fraction}")
        return cls(kind, fraction=fraction)


def assign_faults(
    specs: Iterable[FaultSpec], sids: Sequence[str], rng: random.Random
) -> dict[str, set[Fault]]:
    """Map each station to its faults (stations without faults are left out)."""
    assigned: dict[str, set[Fault]] = {}
    known = set(sids)
    for spec in specs:
        if spec.sids:
            chosen = [sid for sid in spec.sids if sid in known]
        else:
            count = round(len(sids) * (spec.fraction if spec.fraction is not None else 1.0))
            chosen = rng.sample(list(sids), count)
        for sid in chosen:
            assigned.setdefault(sid, set()).add(spec.kind)
    return assigned
