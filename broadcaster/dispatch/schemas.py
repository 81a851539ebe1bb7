"""Shapes of the broadcast, command, play-log and convergence API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from kernel.bounds import Id, in_range
from kernel.tiers import Tier
from stations.schemas import CODE_PATTERN, SID_PATTERN

Sid = Annotated[str, StringConstraints(pattern=SID_PATTERN)]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BroadcastTargets(_Strict):
    stations: list[Sid] = Field(default_factory=list, max_length=20_000)
    groups: list[Sid] = Field(default_factory=list, max_length=1000)
    areas: list[Code] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not (self.stations or self.groups or self.areas):
            raise ValueError("name at least one station, group or area")
        return self


class BroadcastContent(_Strict):
    asset_id: Id | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] | None = None
    stream_source_id: Id | None = None
    live_session: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,32}$")] | None = Field(
        default=None,
        description="set by the service for a live paging session (broadcaster.live); "
        "a live session is started at /api/v1/live, not here",
    )
    voice: str = "south"
    rate: Annotated[int, Field(ge=-3, le=3)] = 0

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [
            self.asset_id is not None,
            self.text is not None,
            self.stream_source_id is not None,
            self.live_session is not None,
        ]
        if sum(given) != 1:
            raise ValueError("give exactly one of asset_id, text or stream_source_id")
        return self


class BroadcastCreate(_Strict):
    targets: BroadcastTargets
    content: BroadcastContent
    tier: Tier = Tier.NORMAL
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None
    start_at: Annotated[AwareDatetime, AfterValidator(in_range)] | None = Field(
        default=None, description="null: now (after the lead time)"
    )
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    until: Annotated[AwareDatetime, AfterValidator(in_range)] | None = None
    expires_in_s: Annotated[int, Field(ge=1, le=86_400)] | None = Field(
        default=None,
        description="validity window: how long stations that were offline still get it "
        "when they reconnect; null: the tier's default (emergency 1800 s, others 30 s)",
    )
    volume: Annotated[int, Field(ge=0, le=100)] | None = None
    lead_s: Annotated[float, Field(ge=0, le=60)] = 2.0


class Progress(BaseModel):
    total: int
    by_status: dict[str, int]
    received: int
    finished: int  # settled, whatever the outcome (the broadcast ends when all are)
    succeeded: int = 0  # what the progress bar counts


class TargetRead(BaseModel):
    sid: str
    area: str | None = None  # the name of the station's area (its hamlet)
    status: str
    reason: str | None
    updated_at: dt.datetime
    play_status: str | None = None
    # not yet reached and the station is offline: since when (it gets the command on
    # reconnecting, while the broadcast is still valid)
    offline_since: dt.datetime | None = None


class BroadcastRead(BaseModel):
    id: int
    title: str
    tier: str
    priority: int
    status: str
    content: dict[str, Any]
    targets: dict[str, Any]
    station_count: int
    start_at: dt.datetime
    until: dt.datetime | None
    repeat: int
    not_after: dt.datetime
    cmd_id: str | None
    route: str | None
    groups: list[str]
    approval_note: str | None
    # "send again to those who missed it": the cmd_ids of those copies, oldest first
    resends: list[str] = Field(default_factory=list)
    created_by: str
    created_at: dt.datetime
    stopped_at: dt.datetime | None
    stopped_by: str | None
    progress: Progress
    stations: list[TargetRead] | None = None


class StationCommandCreate(_Strict):
    type: Literal["volume", "stop", "ping", "sync", "rebirth", "reboot"]
    level: Annotated[int, Field(ge=0, le=100)] | None = None
    max_priority: Annotated[int, Field(ge=0, le=9)] | None = None
    cmd_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    expires_in_s: Annotated[int, Field(ge=1, le=3600)] = 30

    @model_validator(mode="after")
    def _volume_level(self) -> Self:
        if self.type == "volume" and self.level is None:
            raise ValueError("a volume command needs 'level' (0..100)")
        return self


class CommandRead(BaseModel):
    cmd_id: str
    type: str
    body: dict[str, Any]
    issued_at: dt.datetime
    not_after: dt.datetime
    published_at: dt.datetime | None
    created_by: str
    status: str
    reason: str | None
    station_time: dt.datetime | None
    clock_offset_ms: float | None


class PlayRead(BaseModel):
    sid: str
    area_code: str
    source: str
    item_id: str | None
    cmd_id: str | None
    rule_id: int | None
    broadcast_id: int | None
    title: str
    kind: str
    priority: int
    planned_start: dt.datetime
    planned_end: dt.datetime
    expected_ms: int
    status: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    played_ms: int | None
    reason: str | None


class TotalRow(BaseModel):
    date: dt.date
    key: str
    name: str
    minutes: float  # airtime heard: played minutes of every play but the not-heard ones
    plays: int
    played: int
    partial: int
    missed: int
    not_heard: int = 0  # reported played during a speaker/amplifier fault alarm
    not_heard_minutes: float = 0  # their played minutes (not in ``minutes``)


class MinutesRow(BaseModel):
    """Airtime minutes of one ward/commune (or station), tier and content category."""

    key: str
    name: str
    tier: str
    tier_name: str
    category: str
    category_name: str
    minutes: float  # airtime heard (not-heard plays' minutes are in ``not_heard_minutes``)
    plays: int
    not_heard_minutes: float = 0


class ConvergenceRow(BaseModel):
    sid: str
    online: bool
    desired_version: int
    published_version: int
    applied_version: int | None
    missing: list[str]
    behind_since: dt.datetime | None


class DeadLetterRead(BaseModel):
    """A quarantined station message (see `GET /api/v1/dispatch/dead-letters`)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: dt.datetime
    sid: str | None = Field(description="the station, when the topic named one")
    topic: str
    kind: str | None = Field(description="state, reported, ack, event, telemetry")
    category: str = Field(
        description="why: topic, oversize, encoding, json, schema, model (the protocol), "
        "range (a value no column holds), store, handler, internal"
    )
    reason: str
    size: int = Field(description="size of the original payload in bytes")
    payload: str = Field(description="its first 2 KiB, escaped where not UTF-8")
