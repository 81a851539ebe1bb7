"""The one vocabulary of alerts: CAP 1.2 codes, the Vietnamese disaster risk levels and
how an alert maps to a bulletin tier and a repeat count.

Risk levels (*cấp độ rủi ro thiên tai*) are those of Decision 18/2021/QĐ-TTg: five
levels, each with its colour on warning maps and bulletins (level 1 light blue, 2 light
yellow, 3 orange, 4 red, 5 purple).  A CAP alert carries one as an ``info/parameter``
named `RISK_LEVEL_PARAMETER` (value ``1``..``5``); without it the level is left unset
and the tier comes from CAP's severity, urgency and certainty alone.

Mapping (one table, `tier_and_repeat`):

- risk level 4–5, or Extreme/Severe + Immediate/Expected + Observed/Likely
  → emergency (*khẩn cấp*);
- risk level 3, or any other Extreme/Severe alert → emergency as well (a disaster
  warning of level 3 already calls for action);
- Moderate, or urgency Future → priority (*ưu tiên*);
- anything else (Minor, Past, Unknown) → normal (*thông thường*).

Repeats: level 4–5 → 3, level 3 → 2, Extreme/Severe + soon + sure → 2, otherwise 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kernel.tiers import Tier

__all__ = [
    "AIRING_STATUSES",
    "CAP_NS",
    "RISK_LEVELS",
    "RISK_LEVEL_PARAMETER",
    "AlertOutcome",
    "RiskLevel",
    "risk_level",
    "tier_and_repeat",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

#: The ``info/parameter/valueName`` carrying the QĐ 18/2021 risk level (``1``..``5``).
RISK_LEVEL_PARAMETER = "capDoRuiRoThienTai"
_RISK_LEVEL_ALIASES = frozenset({RISK_LEVEL_PARAMETER.casefold(), "cap-do-rui-ro", "risklevel"})

#: CAP ``status`` values that may reach a speaker; Test, Exercise, Draft and System never do.
AIRING_STATUSES = frozenset({"Actual"})


@dataclass(frozen=True)
class RiskLevel:
    level: int
    label_vi: str
    colour_vi: str
    colour_hex: str


RISK_LEVELS: dict[int, RiskLevel] = {
    1: RiskLevel(1, "Cấp độ 1 — rủi ro nhỏ", "xanh dương nhạt", "#9DD9F3"),
    2: RiskLevel(2, "Cấp độ 2 — rủi ro trung bình", "vàng nhạt", "#FFF59D"),
    3: RiskLevel(3, "Cấp độ 3 — rủi ro lớn", "da cam", "#FF9800"),
    4: RiskLevel(4, "Cấp độ 4 — rủi ro rất lớn", "đỏ", "#E53935"),
    5: RiskLevel(5, "Cấp độ 5 — thảm họa", "tím", "#8E24AA"),
}


class AlertOutcome(StrEnum):
    """What became of an alert we were sent (stored on every alert, refused ones too)."""

    REFUSED = "refused"  # schema, source, token, expired, duplicate: nothing airs
    NOT_AIRED = "not_aired"  # Test/Exercise/Draft/System, Ack/Error: recorded only
    HELD = "held"  # waiting for an approver
    AIRED = "aired"  # a broadcast was created
    REJECTED = "rejected"  # an approver said no
    CANCELLED = "cancelled"  # a later Cancel (or Update) ended it
    NO_STATIONS = "no_stations"  # accepted, but its area holds no station


OUTCOME_LABELS_VI: dict[AlertOutcome, str] = {
    AlertOutcome.REFUSED: "Bị từ chối",
    AlertOutcome.NOT_AIRED: "Đã ghi nhận, không phát (thử nghiệm/diễn tập/nháp)",
    AlertOutcome.HELD: "Chờ duyệt",
    AlertOutcome.AIRED: "Đã phát",
    AlertOutcome.REJECTED: "Không được duyệt",
    AlertOutcome.CANCELLED: "Đã hủy",
    AlertOutcome.NO_STATIONS: "Không có trạm nào trong vùng cảnh báo",
}


def risk_level(parameters: list[tuple[str, str]]) -> RiskLevel | None:
    """The QĐ 18/2021 risk level named by an info's parameters, if any (bad values: None)."""
    for name, value in parameters:
        if name.strip().casefold() in _RISK_LEVEL_ALIASES:
            text = value.strip()
            if text.isdigit() and int(text) in RISK_LEVELS:
                return RISK_LEVELS[int(text)]
    return None


_SEVERE = frozenset({"Extreme", "Severe"})
_SOON = frozenset({"Immediate", "Expected"})
_SURE = frozenset({"Observed", "Likely"})


def tier_and_repeat(
    *, severity: str, urgency: str, certainty: str, level: RiskLevel | None
) -> tuple[Tier, int]:
    """The bulletin tier and repeat count of an alert (see the module docstring)."""
    if level is not None and level.level >= 4:
        return Tier.EMERGENCY, 3
    if level is not None and level.level == 3:
        return Tier.EMERGENCY, 2
    if severity in _SEVERE:
        return Tier.EMERGENCY, 2 if urgency in _SOON and certainty in _SURE else 1
    if severity == "Moderate" or urgency == "Future" or level is not None:
        return Tier.PRIORITY, 1
    return Tier.NORMAL, 1
