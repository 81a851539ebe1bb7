"""Command outbox, broadcasts, station events and the play log."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel.db import Base, JSONType, str_enum, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class TargetStatus(StrEnum):
    """A command's progress at one station (protocol ack statuses, plus ours)."""

    PENDING = "PENDING"  # stored, not yet published
    SENT = "SENT"  # published, the broker took it
    RECEIVED = "RECEIVED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    STOPPED = "STOPPED"  # ours: an operator stopped the broadcast before it settled here

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        return 4 if self in TERMINAL else _RANK[self]


TERMINAL = frozenset(
    {
        TargetStatus.SUCCEEDED,
        TargetStatus.FAILED,
        TargetStatus.REJECTED,
        TargetStatus.EXPIRED,
        TargetStatus.STOPPED,
    }
)
_RANK = {
    TargetStatus.PENDING: 0,
    TargetStatus.SENT: 1,
    TargetStatus.RECEIVED: 2,
    TargetStatus.IN_PROGRESS: 3,
}


class Route(StrEnum):
    STATIONS = "stations"  # one publish per station topic
    GROUPS = "groups"  # one publish per group topic, fanned out by the broker


class Command(Base):
    """One command (one `cmd_id`), published to its stations or groups."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_open", "done", "not_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cmd_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column()
    not_after: Mapped[dt.datetime] = mapped_column()
    # when a target that received it must have finished (play commands run long)
    deadline: Mapped[dt.datetime] = mapped_column()
    route: Mapped[Route] = mapped_column(str_enum(Route, "command_route"))
    groups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True, nullable=True
    )
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False)

    targets: Mapped[list[CommandTarget]] = relationship(
        back_populates="command", cascade="all, delete-orphan", lazy="raise_on_sql"
    )


class CommandTarget(Base):
    __tablename__ = "command_targets"
    __table_args__ = (
        UniqueConstraint("command_id", "station_id"),
        Index("ix_command_targets_station", "station_id", "command_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"))
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    status: Mapped[TargetStatus] = mapped_column(
        str_enum(TargetStatus, "target_status"), index=True
    )
    direct: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    station_time: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    clock_offset_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    received_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    command: Mapped[Command] = relationship(back_populates="targets")


class StagedRows(Base):
    """The per-station rows of a command stored before its publish and written right
    after it (`broadcaster.dispatch.staged`): its targets and, for a broadcast's play,
    the play log's plans.  A row here means they are not written yet."""

    __tablename__ = "staged_rows"

    command_id: Mapped[int] = mapped_column(
        ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True
    )
    station_ids: Mapped[list[int]] = mapped_column(JSONType)
    #: the stations sent a copy of their own (not reached through a group topic)
    direct_ids: Mapped[list[int]] = mapped_column(JSONType)
    staged_at: Mapped[dt.datetime] = mapped_column()
    #: the plays to plan (a broadcast's play command), else all None
    play_title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    play_kind: Mapped[str | None] = mapped_column(String(8), nullable=True)
    play_start: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    play_expected_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


class BroadcastStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    FINISHED = "finished"


class Broadcast(Base):
    """An ad-hoc or emergency broadcast: a play command to a set of stations."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    tier: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("media_assets.id", ondelete="SET NULL"), nullable=True
    )
    targets: Mapped[dict[str, Any]] = mapped_column(JSONType)
    station_count: Mapped[int] = mapped_column(Integer)
    start_at: Mapped[dt.datetime] = mapped_column()
    until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    not_after: Mapped[dt.datetime] = mapped_column()
    status: Mapped[BroadcastStatus] = mapped_column(str_enum(BroadcastStatus, "broadcast_status"))
    approval_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    stopped_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class StationEvent(Base):
    """Every event a station reported, stored once (deduplicated on its `event_id`)."""

    __tablename__ = "station_events"
    __table_args__ = (
        UniqueConstraint("station_id", "event_id"),
        Index("ix_station_events_station_at", "station_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column()
    item_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cmd_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    desired_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    position_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    fault: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PlayStatus(StrEnum):
    PLANNED = "planned"
    PLAYING = "playing"
    PLAYED = "played"
    PARTIAL = "partial"
    PREEMPTED = "preempted"
    SKIPPED = "skipped"
    FAILED = "failed"
    MISSED = "missed"
    CANCELLED = "cancelled"
    #: reported played while the station had a speaker-line or amplifier fault alarm
    NOT_HEARD = "not_heard"


FINAL_PLAY = frozenset(
    {
        PlayStatus.PLAYED,
        PlayStatus.PARTIAL,
        PlayStatus.PREEMPTED,
        PlayStatus.SKIPPED,
        PlayStatus.FAILED,
        PlayStatus.MISSED,
        PlayStatus.CANCELLED,
        PlayStatus.NOT_HEARD,
    }
)


class Play(Base):
    """The play log: one row per planned item or broadcast play at one station.

    Rows are written when the plan is published (status ``planned``) and reconciled
    against the station's events: played, partial, preempted, skipped, failed, or
    missed when no event came by the item's end plus a grace period.
    """

    __tablename__ = "plays"
    __table_args__ = (
        UniqueConstraint("station_id", "item_id", name="uq_plays_station_item"),
        # command first: a broadcast's plays are one run of the index, not a page per
        # station (migration 0022)
        UniqueConstraint("cmd_id", "station_id", name="uq_plays_cmd_station"),
        Index("ix_plays_planned_start", "planned_start"),
        Index("ix_plays_status_end", "status", "planned_end"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))  # schedule | broadcast
    item_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cmd_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    broadcast_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(8))
    priority: Mapped[int] = mapped_column(Integer)
    planned_start: Mapped[dt.datetime] = mapped_column()
    planned_end: Mapped[dt.datetime] = mapped_column()
    expected_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[PlayStatus] = mapped_column(str_enum(PlayStatus, "play_status"))
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    played_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A message from a station that could not be taken, kept for an operator to see.

    Every inbound message the bridge or the ingest could not use (bad topic, bad JSON,
    a schema violation, values no column can hold, a handler failure) is quarantined
    here and then acknowledged to the broker, so it is never redelivered forever and
    never takes other messages with it.  ``payload`` is a bounded prefix of the raw
    bytes (escaped to text); ``size`` is the full size.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_sid_received", "sid", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    topic: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    category: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
