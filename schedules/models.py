"""Schedule tables: stream sources, programmes (ordered items) and schedule rules.

A rule's targets live in three association tables (stations, groups, areas), so groups
and areas are resolved when the plan is built: a station added to a hamlet joins every
rule that targets its commune at once.

Deletion semantics (what happens to the things a rule or programme refers to):

- a **station, group or area** that a rule targets may be deleted; its association row
  goes with it (``ON DELETE CASCADE``).  The rule keeps a snapshot of the targets as
  last saved (`ScheduleRule.target_names`), so the API reports what was lost
  (``lost_targets``) and a rule left with no station shows up as skipped in the
  conflicts report; nothing fails and nothing is deleted silently besides that row;
- a **media asset** is protected by the media library's usage check (409 while a future
  rule or a stream source uses it); if it goes anyway (only unused programmes refer to
  it) the item keeps its place with ``asset_id`` NULL (``SET NULL``) and a rule using
  that programme is skipped by the builder (and reported) until the programme is fixed;
- a **programme** cannot be deleted while a rule plays it, nor a **stream source** while
  a programme relays it (the service answers 409 first; the foreign keys also say
  ``RESTRICT``);
- an **owner area** that disappears hands its objects to the city (``SET NULL``), like
  media assets.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from audio_library.models import MediaAsset
from kernel.approval import Approval
from kernel.db import Base, JSONType, str_enum, utcnow
from kernel.tiers import Tier
from stations import models as _registry  # noqa: F401 - the tables our keys point at

#: The tiers a schedule rule may have: every tier but ``live``, which is an operator on
#: the air (a broadcast), not something planned ahead.
RULE_TIERS: frozenset[Tier] = frozenset(Tier) - {Tier.LIVE}


class StreamKind(StrEnum):
    NATIONAL = "national"
    PROVINCIAL = "provincial"
    CITY = "city"
    COMMUNE = "commune"


class ItemKind(StrEnum):
    ASSET = "asset"  # an approved media asset
    JINGLE = "jingle"  # an approved media asset used as a jingle (nhạc hiệu)
    RELAY = "relay"  # a stream source for a duration
    GAP = "gap"  # silence for a duration
    TEXT = "text"  # a text bulletin, spoken by the audio library's TTS when saved


class StreamSource(Base):
    """A live source stations relay (VOV, the provincial radio, the city bulletin...)."""

    __tablename__ = "stream_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    # stable key of seeded objects (e.g. ``tan-an:stream:provincial``); None when made by hand
    key: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[StreamKind] = mapped_column(str_enum(StreamKind, "stream_kind"), index=True)
    fallback_asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("media_assets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    owner_area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="SET NULL"), index=True, nullable=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    fallback: Mapped[MediaAsset | None] = relationship(lazy="joined")


class Programme(Base):
    """Ordered items played back to back as one block."""

    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    title: Mapped[str] = mapped_column(String(300))
    title_folded: Mapped[str] = mapped_column(String(300), index=True)
    owner_area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="SET NULL"), index=True, nullable=True
    )
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    items: Mapped[list[ProgrammeItem]] = relationship(
        back_populates="programme",
        order_by="ProgrammeItem.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class ProgrammeItem(Base):
    """One step of a programme.  Which columns are set depends on ``kind``:

    - ``asset``/``jingle``: ``asset_id`` (duration is the asset's);
    - ``relay``: ``source_id`` and ``duration_ms``;
    - ``gap``: ``duration_ms``;
    - ``text``: ``text``, ``voice``, ``rate`` and the generated ``asset_id``.
    """

    __tablename__ = "programme_items"
    __table_args__ = (
        UniqueConstraint("programme_id", "position", name="uq_programme_items_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[ItemKind] = mapped_column(str_enum(ItemKind, "programme_item_kind"))
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("media_assets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("stream_sources.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    voice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rate: Mapped[int | None] = mapped_column(Integer, nullable=True)

    programme: Mapped[Programme] = relationship(back_populates="items")


rule_stations = Table(
    "schedule_rule_stations",
    Base.metadata,
    Column("rule_id", ForeignKey("schedule_rules.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "station_id", ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)

rule_groups = Table(
    "schedule_rule_groups",
    Base.metadata,
    Column("rule_id", ForeignKey("schedule_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True),
)

rule_areas = Table(
    "schedule_rule_areas",
    Base.metadata,
    Column("rule_id", ForeignKey("schedule_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class ScheduleRule(Base):
    """Play a programme on the targets whenever the recurrence fires.

    ``recurrence`` is the JSON of a `schedules.recurrence.Recurrence` (validity window
    and skip lists included); ``ends_on`` is its last local day, denormalised so "is
    this rule still in the future" is a plain query.  Only approved, enabled rules are
    planned.
    """

    __tablename__ = "schedule_rules"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        CheckConstraint("volume IS NULL OR (volume BETWEEN 0 AND 100)", name="volume_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    title: Mapped[str] = mapped_column(String(300))
    title_folded: Mapped[str] = mapped_column(String(300), index=True)
    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="RESTRICT"), index=True
    )
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, "schedule_tier"))
    priority: Mapped[int] = mapped_column(Integer)
    order: Mapped[int] = mapped_column("sort_order", Integer, default=0)
    owner_area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="SET NULL"), index=True, nullable=True
    )
    volume: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recurrence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    ends_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    shift_tolerance_s: Mapped[int] = mapped_column(Integer, default=0)
    slot_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    approval: Mapped[Approval] = mapped_column(str_enum(Approval, "schedule_approval"), index=True)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    approval_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the targets as last saved: {"stations": [[id, sid]], "groups": [[id, gid]], ...}
    target_names: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    programme: Mapped[Programme] = relationship(lazy="joined")
    # targets: rule_stations / rule_groups / rule_areas, read and written with Core by
    # the service (bulk, and without loading station or group objects)
