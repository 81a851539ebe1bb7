"""Shapes of the broker credentials API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class CredentialStatus(BaseModel):
    """Whether a station has MQTT credentials, and since when (never the secret)."""

    sid: str
    username: str = Field(description="MQTT username (the sid)")
    client_id: str = Field(description="the MQTT client id the broker requires")
    issued: bool
    created_at: dt.datetime | None = None
    created_by: str | None = None
    rotated_at: dt.datetime | None = None
    rotated_by: str | None = None
    rotations: int = 0
    enabled: bool = Field(description="the station is enabled (a disabled one cannot connect)")


class IssuedCredentials(BaseModel):
    """A station's new MQTT secret: shown once, stored only as a hash."""

    sid: str
    username: str
    password: str
    client_id: str
    mqtt_url: str
    rotated: bool = Field(description="an earlier secret existed and no longer works")
