"""Alert sources (an integration token each) and every alert they sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broadcaster.alerts.vocabulary import AlertOutcome
from kernel.approval import Approval
from kernel.db import Base, JSONType, str_enum, utcnow


class AlertSource(Base):
    """An authorised sender of CAP alerts.  Only the SHA-256 of its token is stored.

    `auto_air`: its alerts air at once (pre-authorised); otherwise each waits for an
    approver.  `certificate` (PEM): when set, every alert of the source must carry an
    XML signature (``ds:Signature``, enveloped, over the whole alert) made with its key
    (`broadcaster.alerts.signature`)."""

    __tablename__ = "alert_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    auto_air: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    certificate: Mapped[str | None] = mapped_column(Text, nullable=True)


class Alert(Base):
    """One CAP document we were sent, whatever became of it (`outcome`)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_sender_identifier", "sender", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_sources.id", ondelete="SET NULL"), nullable=True, index=True
    )
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    identifier: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sender: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sent: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    msg_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome: Mapped[AlertOutcome] = mapped_column(str_enum(AlertOutcome, "alert_outcome"))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason_vi: Mapped[str | None] = mapped_column(Text, nullable=True)
    headline: Mapped[str | None] = mapped_column(String(300), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    risk_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    stations: Mapped[list[str]] = mapped_column(JSONType, default=list)
    areas: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    no_stations: Mapped[bool] = mapped_column(Boolean, default=False)
    approval: Mapped[Approval | None] = mapped_column(str_enum(Approval, "approval"), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    document: Mapped[str | None] = mapped_column(Text, nullable=True)
