"""Media assets: one row per asset; files live in content-addressed storage.

Several assets may share one stored file (the same recording uploaded by two communes,
or the same text spoken twice); a file is deleted only when no asset references it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kernel.approval import Approval as Approval  # the asset's approval column (re-exported)
from kernel.db import Base, JSONType, str_enum, utcnow


class AssetStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class AssetSource(StrEnum):
    UPLOAD = "upload"
    TTS = "tts"
    COMPOSED = "composed"


CATEGORIES: dict[str, str] = {
    "tin-tuc": "Tin tức",
    "chinh-sach": "Chính sách",
    "viec-lam": "Việc làm",
    "nong-nghiep": "Nông nghiệp",
    "canh-bao": "Cảnh báo",
    "y-te": "Y tế",
    "giao-duc": "Giáo dục",
    "an-ninh": "An ninh trật tự",
    "chuyen-doi-so": "Chuyển đổi số",
    "guong-tot": "Gương người tốt, việc tốt",
    "nhac": "Nhạc",
    "jingle": "Nhạc hiệu",
    "khac": "Khác",
}


class MediaAsset(Base):
    __tablename__ = "media_assets"
    __table_args__ = (
        Index("ix_media_assets_original", "original_sha256", "source"),
        Index("ix_media_assets_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    title_folded: Mapped[str] = mapped_column(String(300), index=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    source: Mapped[AssetSource] = mapped_column(str_enum(AssetSource, "asset_source"))
    status: Mapped[AssetStatus] = mapped_column(str_enum(AssetStatus, "asset_status"), index=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    approval: Mapped[Approval] = mapped_column(str_enum(Approval, "asset_approval"), index=True)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    approval_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # who owns it: the uploader's area (None = city-wide); scopes who may see and edit it
    owner_area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="SET NULL"), index=True, nullable=True
    )
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the original as received (kept) ...
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    original_ext: Mapped[str | None] = mapped_column(String(8), nullable=True)
    original_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    original_filename: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # ... and the station rendition, addressed by its SHA-256
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ext: Mapped[str | None] = mapped_column(String(8), nullable=True)
    mime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    loudness_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    loudness_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    true_peak_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    true_peak_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    processing: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # text-to-speech request or composition recipe, for source tts/composed
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    peaks: Mapped[list[float] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    @property
    def ready(self) -> bool:
        """Processed: its rendition is in the store."""
        return self.status is AssetStatus.READY

    @property
    def playable(self) -> bool:
        """Ready and approved: may be scheduled or broadcast."""
        return self.ready and self.approval is Approval.APPROVED

    @property
    def spoken_draft(self) -> bool:
        """A spoken text bulletin still waiting for approval (schedules approve it with
        the rule that plays it)."""
        return self.source is AssetSource.TTS and self.approval is Approval.DRAFT
