"""Shapes of the media library API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from audio_library.models import CATEGORIES, AssetSource, AssetStatus
from kernel.approval import Approval
from kernel.bounds import Id

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
SUBMIT_HELP = (
    "true (default): send it for approval at once; false: keep it as your draft "
    "(approval 'unsubmitted'), sent later with POST /api/v1/media/{id}/submit"
)


def check_category(value: str) -> str:
    if value not in CATEGORIES:
        raise ValueError(f"unknown category {value!r}; one of: {', '.join(CATEGORIES)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssetRead(BaseModel):
    id: int
    title: str
    category: str
    category_name: str
    tags: list[str]
    source: AssetSource
    status: AssetStatus
    failure_reason: str | None
    approval: Approval
    approved_by: str | None
    approved_at: dt.datetime | None
    approval_note: str | None
    playable: bool
    owner_area_code: str | None
    created_by: str
    sha256: str | None
    bytes: int | None
    duration_ms: int | None
    mime: str | None
    loudness_before: float | None
    loudness_after: float | None
    true_peak_before: float | None
    true_peak_after: float | None
    original_filename: str | None
    original_format: str | None
    recipe: dict[str, object] | None
    preview_url: str | None = Field(description="signed link valid for one hour")
    created_at: dt.datetime
    processed_at: dt.datetime | None


class AssetUpdate(_Strict):
    title: Title | None = None
    category: str | None = None
    tags: list[Tag] | None = None
    submit: bool | None = Field(
        default=None,
        description="an asset not approved yet: true sends it for approval (a rejected "
        "one, once fixed), false keeps it as your draft; an approved asset stays approved",
    )

    _category = field_validator("category")(lambda v: None if v is None else check_category(v))


class TTSRequest(_Strict):
    text: Annotated[str, StringConstraints(max_length=100_000)]
    voice: str = "south"
    rate: Annotated[int, Field(ge=-3, le=3)] = 0
    title: Title | None = None
    category: str = "tin-tuc"
    tags: list[Tag] = Field(default_factory=list)
    submit: bool = Field(default=True, description=SUBMIT_HELP)

    _category = field_validator("category")(check_category)


class TTSPreviewRequest(_Strict):
    text: Annotated[str, StringConstraints(max_length=100_000)]
    voice: str = "south"
    rate: Annotated[int, Field(ge=-3, le=3)] = 0


class TTSPreview(BaseModel):
    normalized_text: str = Field(description="the text as the engine reads it")
    audio_url: str = Field(description="the speech as a data: URL (MP3); nothing is stored")
    duration_ms: int
    loudness_after: float | None


class ComposeRequest(_Strict):
    title: Title
    parts: Annotated[list[Id], Field(min_length=1, max_length=20)]
    gap_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    crossfade_ms: Annotated[int, Field(ge=0, le=10_000)] = 0
    category: str = "tin-tuc"
    tags: list[Tag] = Field(default_factory=list)
    submit: bool = Field(default=True, description=SUBMIT_HELP)

    _category = field_validator("category")(check_category)


class ApprovalRequest(_Strict):
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Peaks(BaseModel):
    asset_id: int
    buckets: int
    duration_ms: int
    peaks: list[float]
