"""The playlist builder's vocabulary: what goes in, what comes out, and what a rule must
satisfy to be placed.

Plain frozen dataclasses (no I/O): the schedules service fills `RuleSpec` and
`ProgrammeSpec` from the database, `schedules.builder` turns them into `DayPlan`s of
`PlannedItem`s, and dispatch turns those into each station's ``desired`` playlist.
`validate_rule` is what the API checks before saving a rule, and what the builder
checks before placing one (it skips a rule that fails, and says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from kernel.tiers import MAX_PRIORITY, MIN_PRIORITY, Tier
from schedules.exceptions import InvalidRule
from schedules.recurrence import Recurrence

__all__ = [
    "MAX_PROGRAMME_MS",
    "MAX_SHIFT_TOLERANCE_S",
    "Conflict",
    "DayPlan",
    "MediaRef",
    "PlannedItem",
    "ProgrammeItemSpec",
    "ProgrammeSpec",
    "RulePreview",
    "RuleSpec",
    "SkippedRule",
    "StreamRef",
    "validate_programme",
    "validate_rule",
]

#: Longest programme (one block) the builder accepts: one day.
MAX_PROGRAMME_MS = 24 * 3600 * 1000
#: Largest shift tolerance: one day.
MAX_SHIFT_TOLERANCE_S = 24 * 3600


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media asset's rendition as stations download it (dispatch adds the signed URL)."""

    asset_id: int
    sha256: str
    bytes: int
    duration_ms: int
    #: the rendition's file extension (part of its address in the media store)
    ext: str = "mp3"


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A live source to relay (VOV, the provincial or city station...)."""

    source_id: int
    url: str


@dataclass(frozen=True, slots=True)
class ProgrammeItemSpec:
    """One step of a programme: play a file, relay a stream, or keep a gap."""

    kind: Literal["file", "relay", "gap"]
    title: str
    duration_ms: int
    media: MediaRef | None = None
    stream: StreamRef | None = None
    fallback: MediaRef | None = None
    loop: bool = False


@dataclass(frozen=True, slots=True)
class ProgrammeSpec:
    """A programme: items played back to back as one block."""

    id: int
    title: str
    items: tuple[ProgrammeItemSpec, ...]

    @property
    def duration_ms(self) -> int:
        """Total duration: the sum of the items, gaps included."""
        return sum(item.duration_ms for item in self.items)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A schedule rule: play ``programme_id`` on ``station_ids`` when ``recurrence`` fires."""

    id: int
    title: str
    programme_id: int
    station_ids: frozenset[int]
    priority: int
    order: int
    created_at: datetime
    recurrence: Recurrence
    shift_tolerance_s: int = 0
    volume: int | None = None
    slot_s: int | None = None


# -------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One item of a station's day (dispatch makes it a ``desired.playlist[]`` entry)."""

    item_id: str
    kind: Literal["file", "relay"]
    title: str
    start_at: datetime
    end_at: datetime
    priority: int
    rule_id: int
    programme_id: int
    occurrence_start: datetime
    media: MediaRef | None = None
    stream: StreamRef | None = None
    fallback: MediaRef | None = None
    volume: int | None = None
    loop: bool = False
    #: True when the block was moved later than its occurrence (see the conflicts).
    shifted: bool = False


@dataclass(frozen=True, slots=True)
class Conflict:
    """An occurrence that lost its time on a station: moved later, or dropped."""

    station_id: int
    rule_id: int
    occurrence_start: datetime
    winner_rule_id: int
    winner_occurrence_start: datetime
    outcome: Literal["shifted", "dropped"]
    new_start: datetime | None
    reason: str
    reason_vi: str


@dataclass(frozen=True, slots=True)
class SkippedRule:
    """A rule the builder left out because it cannot be scheduled."""

    rule_id: int
    field: str
    reason: str
    reason_vi: str | None


@dataclass(frozen=True, slots=True)
class DayPlan:
    """Every station's items starting on ``day`` and the conflicts of that day.

    ``stations`` has an entry (possibly empty) for every station a rule targets (or
    every station asked for); stations sharing a rule set share one tuple object.
    ``conflicts`` are sorted by station, occurrence and rule.
    """

    day: date
    stations: dict[int, tuple[PlannedItem, ...]]
    conflicts: tuple[Conflict, ...]
    skipped_rules: tuple[SkippedRule, ...] = ()


@dataclass(frozen=True, slots=True)
class RulePreview:
    """What saving a rule would do over a range of days (nothing is saved)."""

    rule_id: int
    occurrences: tuple[datetime, ...]
    items: dict[int, tuple[PlannedItem, ...]]
    suffered: tuple[Conflict, ...]
    caused: tuple[Conflict, ...]
    plans: tuple[DayPlan, ...] = field(repr=False, default=())


# ----------------------------------------------------------------------- validation


def _invalid(field: str | Sequence[str | int], message: str, message_vi: str) -> InvalidRule:
    return InvalidRule(message, field=field, message_vi=message_vi)


def validate_programme(programme: ProgrammeSpec) -> None:
    """Raise :class:`InvalidRule` (field-named) if ``programme`` cannot be played."""
    if not programme.items:
        raise _invalid(
            "items",
            f"Programme {programme.id} ({programme.title!r}) is empty",
            f"Chương trình {programme.id} ({programme.title!r}) chưa có nội dung",
        )
    for index, item in enumerate(programme.items):
        loc: tuple[str | int, ...] = ("items", index)
        if item.duration_ms <= 0:
            raise _invalid(
                (*loc, "duration_ms"),
                f"Item {index} ({item.title!r}) needs a positive duration",
                f"Mục {index} ({item.title!r}) cần thời lượng lớn hơn 0",
            )
        if item.kind == "file" and item.media is None:
            raise _invalid(
                (*loc, "media"),
                f"File item {index} ({item.title!r}) has no media",
                f"Mục phát tệp {index} ({item.title!r}) chưa có tệp âm thanh",
            )
        if item.kind == "relay" and item.stream is None:
            raise _invalid(
                (*loc, "stream"),
                f"Relay item {index} ({item.title!r}) has no stream",
                f"Mục tiếp sóng {index} ({item.title!r}) chưa có nguồn phát",
            )
        if item.kind == "gap" and (item.media or item.stream or item.fallback):
            raise _invalid(
                (*loc, "kind"),
                f"Gap item {index} must not carry media or a stream",
                f"Khoảng lặng {index} không được kèm tệp hay nguồn phát",
            )
    if all(item.kind == "gap" for item in programme.items):
        raise _invalid(
            "items",
            f"Programme {programme.id} ({programme.title!r}) has only gaps",
            f"Chương trình {programme.id} ({programme.title!r}) chỉ có khoảng lặng",
        )
    if programme.duration_ms > MAX_PROGRAMME_MS:
        raise _invalid(
            "items",
            f"Programme {programme.id} lasts {programme.duration_ms / 3_600_000:.1f} h; "
            "at most 24 h",
            f"Chương trình {programme.id} dài quá 24 giờ",
        )


def validate_rule(rule: RuleSpec, programme: ProgrammeSpec) -> None:
    """Raise :class:`InvalidRule` (an ``InvalidInput``, field-named) for a rule that the
    builder could not place: wrong programme, empty or over-long programme, programme
    longer than ``slot_s``, priority/volume/tolerance out of range.
    """
    if programme.id != rule.programme_id:
        raise _invalid(
            "programme_id",
            f"Rule {rule.id} plays programme {rule.programme_id}, not {programme.id}",
            f"Lịch {rule.id} phát chương trình {rule.programme_id}, không phải {programme.id}",
        )
    if not MIN_PRIORITY <= rule.priority <= MAX_PRIORITY:
        levels = ", ".join(f"{tier.priority} {tier.value}" for tier in Tier)
        raise _invalid(
            "priority",
            f"Priority must be {MIN_PRIORITY}..{MAX_PRIORITY} ({levels}), got {rule.priority}",
            f"Mức ưu tiên phải từ {MIN_PRIORITY} đến {MAX_PRIORITY} (nhận {rule.priority})",
        )
    if rule.volume is not None and not 0 <= rule.volume <= 100:
        raise _invalid(
            "volume",
            f"Volume must be 0..100, got {rule.volume}",
            f"Âm lượng phải từ 0 đến 100 (nhận {rule.volume})",
        )
    if not 0 <= rule.shift_tolerance_s <= MAX_SHIFT_TOLERANCE_S:
        raise _invalid(
            "shift_tolerance_s",
            f"Shift tolerance must be 0..{MAX_SHIFT_TOLERANCE_S} s, got {rule.shift_tolerance_s}",
            f"Độ lệch cho phép phải từ 0 đến {MAX_SHIFT_TOLERANCE_S} giây",
        )
    if rule.slot_s is not None and rule.slot_s <= 0:
        raise _invalid(
            "slot_s",
            f"Slot length must be positive, got {rule.slot_s}",
            f"Độ dài khung giờ phải lớn hơn 0 (nhận {rule.slot_s})",
        )
    try:
        validate_programme(programme)
    except InvalidRule as exc:
        raise InvalidRule(
            exc.message, field=("programme", *exc.loc), message_vi=exc.message_vi
        ) from exc
    if rule.slot_s is not None and programme.duration_ms > rule.slot_s * 1000:
        minutes = programme.duration_ms / 60_000
        raise _invalid(
            "slot_s",
            f"Programme {programme.id} lasts {minutes:.1f} min, longer than the rule's "
            f"{rule.slot_s} s slot",
            f"Chương trình {programme.id} dài {minutes:.1f} phút, vượt khung "
            f"{rule.slot_s} giây của lịch",
        )
