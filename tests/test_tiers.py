"""The one tier vocabulary: every protocol priority 0..9 has exactly one tier and label."""

from __future__ import annotations

import pytest

from firmware_bridge.messages import Priority
from kernel.tiers import TIER_LABELS_VI, Tier, tier_label, tier_of

EXPECTED = {
    0: (Tier.FILLER, "Lấp chỗ trống"),
    1: (Tier.FILLER, "Lấp chỗ trống"),
    2: (Tier.FILLER, "Lấp chỗ trống"),
    3: (Tier.NORMAL, "Thông thường"),
    4: (Tier.NORMAL, "Thông thường"),
    5: (Tier.PRIORITY, "Ưu tiên"),
    6: (Tier.PRIORITY, "Ưu tiên"),
    7: (Tier.LIVE, "Trực tiếp"),
    8: (Tier.LIVE, "Trực tiếp"),
    9: (Tier.EMERGENCY, "Khẩn cấp"),
}


@pytest.mark.parametrize("priority", range(10))
def test_every_priority_has_one_tier_and_label(priority: int) -> None:
    tier, label = EXPECTED[priority]
    assert tier_of(priority) is tier
    assert tier_label(priority) == label


def test_named_levels_are_the_protocol_numbers() -> None:
    assert {tier.name: tier.priority for tier in Tier} == {p.name: int(p) for p in Priority}
    assert set(TIER_LABELS_VI) == set(Tier)
    for tier in Tier:
        assert tier_of(tier.priority) is tier


@pytest.mark.parametrize("priority", [-1, 10, 2**63])
def test_out_of_range_priority_is_refused(priority: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.9"):
        tier_of(priority)
