"""Bulletin tiers: the one vocabulary for priorities, tier names and their Vietnamese labels.

The numbers are the protocol's (`firmware_bridge.messages.Priority`, loa/v1): ``0`` filler,
``3`` normal (*thông thường*), ``5`` priority (*ưu tiên*), ``7`` live operator (*trực
tiếp*), ``9`` emergency (*khẩn cấp*) — the three tiers of Circular 39/2020/TT-BTTTT plus
filler and live.  Any integer 0..9 is a valid priority; one that is not a named level
belongs to the highest named level at or below it (``1``–``2`` filler, ``4`` normal,
``6`` priority, ``8`` live), since a higher number always wins.

Every module that names a tier, maps a priority to a tier, or shows a tier to a person
imports it from here.
"""

from __future__ import annotations

from enum import StrEnum

from firmware_bridge.messages import Priority

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "TIER_LABELS_VI",
    "Tier",
    "tier_label",
    "tier_of",
]

MIN_PRIORITY = 0
MAX_PRIORITY = 9


class Tier(StrEnum):
    """A named priority level; ``Tier.X.priority`` is its protocol number."""

    FILLER = "filler"
    NORMAL = "normal"
    PRIORITY = "priority"
    LIVE = "live"
    EMERGENCY = "emergency"

    @property
    def priority(self) -> int:
        return int(Priority[self.name])

    @property
    def label_vi(self) -> str:
        return TIER_LABELS_VI[self]

    @property
    def validity_s(self) -> int:
        """How long a broadcast of this tier stays deliverable by default (seconds): an
        emergency waits for stations that are offline for the length of a warning."""
        return VALIDITY_S.get(self, DEFAULT_VALIDITY_S)


TIER_LABELS_VI: dict[Tier, str] = {
    Tier.FILLER: "Lấp chỗ trống",
    Tier.NORMAL: "Thông thường",
    Tier.PRIORITY: "Ưu tiên",
    Tier.LIVE: "Trực tiếp",
    Tier.EMERGENCY: "Khẩn cấp",
}

DEFAULT_VALIDITY_S = 30
VALIDITY_S: dict[Tier, int] = {Tier.EMERGENCY: 30 * 60}

# Highest level first, so the first one at or below a priority is its tier.
_BY_PRIORITY_DESC = sorted(Tier, key=lambda tier: tier.priority, reverse=True)


def tier_of(priority: int) -> Tier:
    """The tier a protocol priority 0..9 belongs to (the highest named level at or below)."""
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, not {priority}")
    for tier in _BY_PRIORITY_DESC:
        if priority >= tier.priority:
            return tier
    raise AssertionError("unreachable: FILLER is priority 0")  # pragma: no cover


def tier_label(priority: int) -> str:
    """The Vietnamese label of the tier a priority belongs to."""
    return TIER_LABELS_VI[tier_of(priority)]
