"""Request and response bodies of the alarms API."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from broadcaster.alarms.models import Channel
from broadcaster.alarms.rules import (
    CONDITION_TITLES_VI,
    SEVERITY_LABELS_VI,
    Condition,
    Severity,
    note_vi,
)
from stations.schemas import CODE_PATTERN, SID_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StationRef(_FromRow):
    sid: str
    name: str


class AreaRef(_FromRow):
    code: str
    name: str


class AlarmRead(_FromRow):
    id: int
    station: StationRef
    condition: Condition
    severity: Severity
    status: str
    detail: str
    value: float | None
    raised_at: dt.datetime
    last_seen_at: dt.datetime
    clearing_since: dt.datetime | None
    raise_count: int
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    cleared_at: dt.datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def title_vi(self) -> str:
        return CONDITION_TITLES_VI[self.condition]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def severity_vi(self) -> str:
        return SEVERITY_LABELS_VI[self.severity]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def note_vi(self) -> str | None:
        """For a speaker-line or amplifier-overheat alarm: plays reported meanwhile are
        recorded as not heard."""
        return note_vi(self.condition, self.severity)


class AlarmQuery(BaseModel):
    """Filters of the alarm list (query parameters; the page and period are separate,
    so other parameters are not refused here)."""

    state: Literal["open", "raised", "acknowledged", "cleared"] | None = None
    severity: Severity | None = None
    condition: Condition | None = None
    sid: str | None = Field(default=None, pattern=SID_PATTERN)
    area: str | None = Field(default=None, pattern=CODE_PATTERN, description="area code")


class AcknowledgeBody(_Strict):
    note: str | None = Field(default=None, max_length=500)


class ThresholdsBody(_Strict):
    """Overrides to set (a number) or remove (null); other keys are left as they are."""

    thresholds: dict[str, float | None] = Field(max_length=32)


class ThresholdSpecRead(BaseModel):
    key: str
    label_vi: str
    unit: str
    minimum: float
    maximum: float


class KindThresholds(BaseModel):
    defaults: dict[str, float]
    overrides: dict[str, float]
    effective: dict[str, float]


class ThresholdsRead(BaseModel):
    specs: list[ThresholdSpecRead]
    kinds: dict[str, KindThresholds]


class StationThresholds(BaseModel):
    station: str
    kind: str
    overrides: dict[str, float]
    effective: dict[str, float]


class SubscriptionCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    target: str = Field(min_length=3, max_length=500, description="e-mail address or URL")
    area_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, description="this area and below; null: all"
    )
    min_severity: Severity = Severity.WARNING
    secret: str | None = Field(
        default=None, min_length=16, max_length=128, description="webhook HMAC key"
    )


class SubscriptionRead(_FromRow):
    id: int
    name: str
    channel: Channel
    target: str
    area: AreaRef | None
    min_severity: Severity
    enabled: bool
    created_at: dt.datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str | None = Field(description="webhook HMAC key (shown once)")


class DeliveryRead(_FromRow):
    id: int
    subscription_id: int
    event: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None


class AvailabilityRead(BaseModel):
    key: str = Field(description="station id, or ward/commune code")
    name: str
    stations: int
    online_s: float
    period_s: float
    availability: float | None = Field(description="0..1 (null: no history)")
