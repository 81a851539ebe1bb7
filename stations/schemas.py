"""Pydantic shapes of the registry API."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Generic, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from firmware_bridge.messages import Capability
from stations.models import AreaLevel, ConnectionCause, StationKind

SID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
CODE_PATTERN = SID_PATTERN

Sid = Annotated[str, StringConstraints(pattern=SID_PATTERN)]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Volume = Annotated[int, Field(ge=0, le=100)]
# the national statistics code of a province or ward/commune (checked against the
# `vietnam-provinces` list by the service), or the site's own code of a hamlet
StatCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]

#: what a station can announce (the ``loa/v1`` vocabulary, kept once in firmware_bridge)
CAPABILITIES: tuple[str, ...] = get_args(Capability)

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    items: list[T]
    total: int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- areas -----------------------------------------------------------------------------


class AreaCreate(_Strict):
    code: Code
    name: Name
    level: AreaLevel
    parent_code: Code | None = None
    stat_code: StatCode | None = None


class AreaUpdate(_Strict):
    name: Name | None = None
    level: AreaLevel | None = None
    parent_code: Code | None = None
    stat_code: StatCode | None = None  # null: none


class AreaRead(BaseModel):
    code: str
    name: str
    level: AreaLevel
    parent_code: str | None
    stat_code: str | None = None  # the national statistics code (province, ward/commune)
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None  # set: ended by a reorganisation, kept for history
    created_at: dt.datetime
    updated_at: dt.datetime


# --- stations --------------------------------------------------------------------------


def _check_capabilities(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; allowed: {', '.join(CAPABILITIES)}")
    return sorted(set(value), key=CAPABILITIES.index)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: Any) -> Any:
    """Refuse NUL and other control characters (a spreadsheet or a PostgreSQL text
    column cannot hold them; tabs and line breaks are fine)."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("contains a control character (e.g. NUL); remove it")
    return value


class StationFields(_Strict):
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    address: Annotated[str, StringConstraints(max_length=300)] | None = None
    controller_model: Annotated[str, StringConstraints(max_length=64)] | None = None
    firmware: Annotated[str, StringConstraints(max_length=64)] | None = None
    sim_iccid: Annotated[str, StringConstraints(pattern=r"^[0-9]{18,22}$")] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{9,15}$")] | None = None
    notes: Annotated[str, StringConstraints(max_length=5000)] | None = None

    _text = field_validator(
        "address",
        "controller_model",
        "firmware",
        "notes",
        "name",
        mode="before",
        check_fields=False,
    )(_no_control_characters)


class StationCreate(StationFields):
    sid: Sid
    name: Name
    kind: StationKind
    area_code: Code
    capabilities: list[str] = Field(default_factory=lambda: ["file", "relay"])
    default_volume: Volume = 70
    enabled: bool = True

    _caps = field_validator("capabilities")(_check_capabilities)


class StationUpdate(StationFields):
    name: Name | None = None
    kind: StationKind | None = None
    area_code: Code | None = None
    capabilities: list[str] | None = None
    default_volume: Volume | None = None
    enabled: bool | None = None

    _caps = field_validator("capabilities")(_check_capabilities)


class StationRead(BaseModel):
    sid: str
    name: str
    kind: StationKind
    area_code: str
    area_name: str
    latitude: float | None
    longitude: float | None
    address: str | None
    controller_model: str | None
    firmware: str | None
    capabilities: list[str]
    default_volume: int
    enabled: bool
    sim_iccid: str | None
    phone: str | None
    notes: str | None
    online: bool = False
    last_seen: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


# --- groups ----------------------------------------------------------------------------


class GroupCreate(_Strict):
    gid: Sid
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    owner_area_code: Code | None = None
    stations: list[Sid] = Field(default_factory=list)
    areas: list[Code] = Field(default_factory=list)


class GroupUpdate(_Strict):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    stations: list[Sid] | None = None
    areas: list[Code] | None = None


class GroupRead(BaseModel):
    gid: str
    name: str
    description: str | None
    builtin: bool
    auto: bool
    owner_area_code: str | None
    stations: list[str]
    areas: list[str]
    station_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class GroupMembers(BaseModel):
    gid: str
    stations: list[str]
    total: int


# --- import ----------------------------------------------------------------------------


class ImportError_(BaseModel):
    line: int
    field: str | None
    message: str


class ImportReport(BaseModel):
    dry_run: bool
    rows: int
    created: int = Field(description="stations created (would be, in a dry run); 0 if refused")
    updated: int = Field(description="stations updated (would be, in a dry run); 0 if refused")
    disabled: list[str] = Field(
        default_factory=list,
        description="stations this import disables (they lose their broker access)",
    )
    errors: list[ImportError_]

    @property
    def ok(self) -> bool:
        return not self.errors


# --- live state ------------------------------------------------------------------------


class StationStateRead(BaseModel):
    sid: str
    online: bool
    bdseq: int | None
    online_since: dt.datetime | None
    offline_since: dt.datetime | None
    last_seen: dt.datetime | None
    firmware: str | None
    model: str | None
    capabilities: list[str]
    desired_version: int
    desired_at: dt.datetime | None
    applied_version: int | None
    held_version: int | None
    in_sync: bool
    missing: list[str]
    reported_at: dt.datetime | None
    cache_bytes: int | None
    volume: int | None
    faults: list[str]
    telemetry: dict[str, object] | None
    telemetry_at: dt.datetime | None


class TelemetryRead(BaseModel):
    at: dt.datetime
    received_at: dt.datetime
    seq: int
    data: dict[str, object]


class ConnectionRead(BaseModel):
    """One connection interval of a station: online from ``online_at`` until
    ``offline_at`` (None: still connected, as far as the server knows)."""

    bdseq: int
    online_at: dt.datetime
    offline_at: dt.datetime | None
    duration_s: float | None = Field(
        description="offline_at - online_at in seconds (None while open)"
    )
    cause: ConnectionCause | None = Field(
        description="how it ended: power (mains lost), link (reconnected without a death), "
        "will (the station's death message), server (the server lost the broker); "
        "death and replaced: recorded before causes were told apart; None while open"
    )
