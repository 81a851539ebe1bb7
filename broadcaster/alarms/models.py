"""Alarm tables: alarms (with their history), threshold overrides, subscriptions and
notification deliveries."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broadcaster.alarms.rules import Condition, Severity
from kernel.db import Base, JSONType, str_enum, utcnow
from stations.models import Area, Station, StationKind

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class AlarmStatus(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class Alarm(Base):
    """One occurrence of a condition at a station, from raised to cleared.

    ``open_key`` is the condition while the alarm is open and NULL once cleared: the
    unique (station, open_key) index allows one open alarm per station and condition
    and any number of cleared ones (the history).  ``clearing_since`` is set while the
    condition is absent but the clear is held back (flap damping); ``raise_count``
    counts how often the condition came back within that hold.
    """

    __tablename__ = "alarms"
    __table_args__ = (
        sa.UniqueConstraint("station_id", "open_key", name="uq_alarms_open"),
        sa.Index("ix_alarms_status_raised", "status", "raised_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[int] = mapped_column(
        ForeignKey("stations.id", ondelete="CASCADE"), index=True
    )
    condition: Mapped[Condition] = mapped_column(str_enum(Condition, "alarm_condition"))
    open_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    severity: Mapped[Severity] = mapped_column(str_enum(Severity, "alarm_severity"))
    status: Mapped[AlarmStatus] = mapped_column(str_enum(AlarmStatus, "alarm_status"))
    detail: Mapped[str] = mapped_column(String(300), default="")
    value: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    raised_at: Mapped[dt.datetime] = mapped_column()
    last_seen_at: Mapped[dt.datetime] = mapped_column()
    clearing_since: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    raise_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ack_note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    station: Mapped[Station] = relationship(lazy="joined")


class AlarmThreshold(Base):
    """A threshold override: for every station of a kind, or for one station."""

    __tablename__ = "alarm_thresholds"
    __table_args__ = (
        sa.CheckConstraint(
            "(station_kind IS NULL) <> (station_id IS NULL)", name="kind_or_station"
        ),
        sa.UniqueConstraint("station_kind", "key", name="uq_alarm_thresholds_kind"),
        sa.UniqueConstraint("station_id", "key", name="uq_alarm_thresholds_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    station_kind: Mapped[StationKind | None] = mapped_column(
        str_enum(StationKind, "threshold_station_kind"), nullable=True
    )
    station_id: Mapped[int | None] = mapped_column(
        ForeignKey("stations.id", ondelete="CASCADE"), nullable=True
    )
    key: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class AlarmSubscription(Base):
    """Who is told: an e-mail address or a webhook URL, for an area (and everything
    under it; NULL: every area) and alarms at or above a severity."""

    __tablename__ = "alarm_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, "alarm_channel"))
    target: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="CASCADE"), nullable=True, index=True
    )
    min_severity: Mapped[Severity] = mapped_column(str_enum(Severity, "alarm_min_severity"))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    area: Mapped[Area | None] = relationship(lazy="joined")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt
    DROPPED = "dropped"  # the queue was full


class AlarmDelivery(Base):
    """One notification of one alarm event to one subscription, and its fate."""

    __tablename__ = "alarm_deliveries"
    __table_args__ = (sa.Index("ix_alarm_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("alarm_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(16))  # raised, escalated, cleared
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
