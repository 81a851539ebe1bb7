"""Shapes of the alerts API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from broadcaster.alerts.signature import MAX_CERTIFICATE_CHARS, check_certificate

SourceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


Certificate = Annotated[
    str,
    StringConstraints(max_length=MAX_CERTIFICATE_CHARS),
    AfterValidator(lambda v: check_certificate(v) if v.strip() else ""),
]
CERTIFICATE_HELP = (
    "PEM X.509 certificate: every alert of the source must then carry an XML signature "
    "made with its key (an unsigned or badly signed alert is refused)"
)


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SourceName
    auto_air: bool = False
    certificate: Certificate | None = Field(default=None, description=CERTIFICATE_HELP)


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_air: bool | None = None
    enabled: bool | None = None
    certificate: Certificate | None = Field(
        default=None, description=CERTIFICATE_HELP + '; "" stops requiring signatures'
    )


class SourceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    auto_air: bool
    enabled: bool
    created_by: str
    created_at: dt.datetime
    certificate: str | None = None  # its alerts must be signed with this key (PEM)


class SourceCreated(SourceRead):
    token: str


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source_id: int | None
    received_at: dt.datetime
    identifier: str | None
    sender: str | None
    sent: dt.datetime | None
    status: str | None
    msg_type: str | None
    outcome: str
    reason: str | None
    reason_vi: str | None
    headline: str | None
    text: str | None
    tier: str | None
    repeat: int
    risk_level: int | None
    expires: dt.datetime | None
    stations: list[str]
    areas: list[dict[str, Any]]
    no_stations: bool
    approval: str | None
    approved_by: str | None
    approved_at: dt.datetime | None
    broadcast_id: int | None


class IngestResult(BaseModel):
    """What the sender is told."""

    alert_id: int
    outcome: str
    aired: bool
    broadcast_id: int | None
    station_count: int
    no_stations: bool
    stopped_broadcasts: list[int]
    message: str
    message_vi: str
