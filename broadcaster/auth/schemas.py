"""Shapes of the account and token API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kernel.security import Role
from stations.schemas import CODE_PATTERN

Username = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_.@-]{3,64}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_at: dt.datetime | None = None


class UserCreate(_Strict):
    username: Username
    password: Password
    role: Role
    areas: list[Code] = Field(default_factory=list)
    full_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    can_emergency: bool = False


class UserUpdate(_Strict):
    password: Password | None = None
    role: Role | None = None
    areas: list[Code] | None = None
    full_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    can_emergency: bool | None = None
    active: bool | None = None


class UserRead(BaseModel):
    id: int
    username: str
    full_name: str | None
    role: Role
    areas: list[str]
    can_emergency: bool
    active: bool
    locked_until: dt.datetime | None
    created_at: dt.datetime


class Me(UserRead):
    permissions: list[str]


class PasswordChange(_Strict):
    current_password: Annotated[str, StringConstraints(max_length=256)]
    new_password: Password


class ApiTokenCreate(_Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ApiTokenRead(BaseModel):
    id: int
    name: str | None
    kind: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(description="shown once; store it now")


class AuditRead(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str
    targets: list[str]
    ip: str | None
    before: dict[str, object] | None
    after: dict[str, object] | None
