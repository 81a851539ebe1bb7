"""Pydantic shapes of the schedules API (stream sources, programmes, rules, plans)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kernel.approval import Approval
from kernel.bounds import Id
from kernel.tiers import Tier
from schedules.models import ItemKind, StreamKind
from schedules.plans import MAX_PROGRAMME_MS, MAX_SHIFT_TOLERANCE_S

CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
#: What the protocol accepts as a relay URL (desired.json ``item.url``).
STREAM_URL_PATTERN = r"^(https?|rtsp|rtp|udp|icecast)://\S+$"

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
StreamUrl = Annotated[str, StringConstraints(pattern=STREAM_URL_PATTERN, max_length=1000)]
Volume = Annotated[int, Field(ge=0, le=100)]
DurationMs = Annotated[int, Field(ge=1, le=MAX_PROGRAMME_MS)]
Voice = Literal["south", "north", "central"]
RULE_TIER_HELP = "filler, normal, priority or emergency (live is for broadcasts, not rules)"
RULE_SUBMIT_HELP = (
    "true (default): send the rule for approval at once; false: keep it as your draft "
    "(approval 'unsubmitted', never aired), sent later with "
    "POST /api/v1/schedules/rules/{id}/submit"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- stream sources --------------------------------------------------------------------


class StreamSourceCreate(_Strict):
    name: Name
    url: StreamUrl
    kind: StreamKind
    fallback_asset_id: Id | None = Field(
        default=None, description="approved asset played when the stream fails"
    )
    owner_area: Code | None = Field(default=None, description="None: city-wide")
    enabled: bool = True


class StreamSourceUpdate(_Strict):
    name: Name | None = None
    url: StreamUrl | None = None
    kind: StreamKind | None = None
    fallback_asset_id: Id | None = None
    enabled: bool | None = None


class StreamSourceRead(BaseModel):
    id: int
    key: str | None
    name: str
    url: str
    kind: StreamKind
    fallback_asset_id: int | None
    fallback_title: str | None
    fallback_playable: bool
    owner_area_code: str | None
    enabled: bool
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


# --- programmes ------------------------------------------------------------------------


class AssetItemIn(_Strict):
    kind: Literal["asset"]
    asset_id: Id
    title: Title | None = None


class JingleItemIn(_Strict):
    kind: Literal["jingle"]
    asset_id: Id
    title: Title | None = None


class RelayItemIn(_Strict):
    kind: Literal["relay"]
    source_id: Id
    duration_ms: DurationMs
    title: Title | None = None


class GapItemIn(_Strict):
    kind: Literal["gap"]
    duration_ms: DurationMs


class TextItemIn(_Strict):
    kind: Literal["text"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    voice: Voice = "south"
    rate: Annotated[int, Field(ge=-3, le=3)] = 0
    title: Title | None = None


ItemIn = Annotated[
    AssetItemIn | JingleItemIn | RelayItemIn | GapItemIn | TextItemIn,
    Field(discriminator="kind"),
]


class ProgrammeCreate(_Strict):
    title: Title
    owner_area: Code | None = Field(default=None, description="None: city-wide")
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=200)]


class ProgrammeUpdate(_Strict):
    title: Title | None = None
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=200)] | None = None


class ProgrammeItemRead(BaseModel):
    position: int
    kind: ItemKind
    title: str | None
    duration_ms: int | None
    asset_id: int | None = None
    asset_title: str | None = None
    source_id: int | None = None
    source_name: str | None = None
    text: str | None = None
    voice: str | None = None
    rate: int | None = None
    problem: str | None = Field(default=None, description="why this item cannot play now")


class ProgrammeRead(BaseModel):
    id: int
    key: str | None
    title: str
    owner_area_code: str | None
    duration_ms: int
    items: list[ProgrammeItemRead]
    rule_count: int
    rules_reset: list[int] = Field(
        default_factory=list,
        description="approved rules playing it that this change sent back to draft",
    )
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


# --- rules -----------------------------------------------------------------------------


class TargetsIn(_Strict):
    stations: list[Code] = Field(default_factory=list, max_length=20_000)
    groups: list[Code] = Field(default_factory=list, max_length=1000)
    areas: list[Code] = Field(default_factory=list, max_length=1000)


class TargetsRead(BaseModel):
    stations: list[str]
    groups: list[str]
    areas: list[str]


class RuleCreate(_Strict):
    title: Title
    programme_id: Id
    targets: TargetsIn
    tier: Tier = Field(default=Tier.NORMAL, description=RULE_TIER_HELP)
    order: Annotated[int, Field(ge=-1000, le=1000)] = 0
    owner_area: Code | None = Field(default=None, description="None: city-wide")
    volume: Volume | None = None
    recurrence: dict[str, Any] = Field(
        description="when: once / daily / weekly / monthly / every_n_days / rrule / lunar, "
        "plus valid_from, valid_until, skip_dates, skip_holidays",
        examples=[{"when": {"kind": "daily", "times": ["05:00"]}, "skip_holidays": True}],
    )
    shift_tolerance_s: Annotated[int, Field(ge=0, le=MAX_SHIFT_TOLERANCE_S)] = 0
    slot_s: Annotated[int, Field(ge=1, le=MAX_SHIFT_TOLERANCE_S)] | None = None
    enabled: bool = True
    submit: bool = Field(default=True, description=RULE_SUBMIT_HELP)


class RuleUpdate(_Strict):
    title: Title | None = None
    programme_id: Id | None = None
    targets: TargetsIn | None = None
    tier: Tier | None = Field(default=None, description=RULE_TIER_HELP)
    order: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    volume: Volume | None = None
    recurrence: dict[str, Any] | None = None
    shift_tolerance_s: Annotated[int, Field(ge=0, le=MAX_SHIFT_TOLERANCE_S)] | None = None
    slot_s: Annotated[int, Field(ge=1, le=MAX_SHIFT_TOLERANCE_S)] | None = None
    enabled: bool | None = None
    submit: bool | None = Field(
        default=None,
        description="a rule not approved (or sent back by this change): true sends it for "
        "approval (a rejected one, once fixed), false keeps it as your draft; left out: "
        "its state changes only as before (an approved rule whose programme, times or "
        "targets change waits for approval again)",
    )


class ReviewRequest(_Strict):
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class RuleRead(BaseModel):
    id: int
    key: str | None
    title: str
    programme_id: int
    programme_title: str
    duration_ms: int
    targets: TargetsRead
    lost_targets: list[str] = Field(
        description="targets saved with the rule that were deleted since (e.g. 'group:x')"
    )
    station_count: int
    tier: Tier
    priority: int
    order: int
    owner_area_code: str | None
    volume: int | None
    recurrence: dict[str, Any]
    shift_tolerance_s: int
    slot_s: int | None
    enabled: bool
    approval: Approval
    approved_by: str | None
    approved_at: dt.datetime | None
    approval_note: str | None
    next_occurrences: list[dt.datetime]
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


# --- plans -----------------------------------------------------------------------------


class ConflictGroup(BaseModel):
    """One occurrence of one rule that lost its time on some stations."""

    rule_id: int
    rule_title: str
    occurrence_start: dt.datetime
    winner_rule_id: int
    winner_rule_title: str
    winner_occurrence_start: dt.datetime
    outcome: Literal["shifted", "dropped"]
    new_start: dt.datetime | None
    reason: str
    reason_vi: str
    station_count: int
    stations: list[str]


class SkippedRuleRead(BaseModel):
    rule_id: int
    rule_title: str
    field: str
    reason: str
    reason_vi: str | None


class ConflictReport(BaseModel):
    date: dt.date
    total: int
    items: list[ConflictGroup]
    skipped_rules: list[SkippedRuleRead]


class PreviewPlacement(BaseModel):
    occurrence_start: dt.datetime
    start_at: dt.datetime
    end_at: dt.datetime
    shifted: bool
    station_count: int


class PreviewRead(BaseModel):
    date_from: dt.date
    date_to: dt.date
    duration_ms: int
    station_count: int
    occurrences: list[dt.datetime]
    placements: list[PreviewPlacement]
    suffered: list[ConflictGroup]
    caused: list[ConflictGroup]


class CalendarLink(BaseModel):
    url: str
    expires_at: dt.datetime
