"""Registry tables: areas (province > city > ward/commune > hamlet), stations, groups, and
the history of the structure (reorganisations, lineage, stations' ward/commune over time)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel.db import Base, JSONType, str_enum, utcnow

#: The built-in group of every station (gid ``all``).
ALL_GROUP = "all"


class AreaLevel(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    WARD = "ward"
    COMMUNE = "commune"
    HAMLET = "hamlet"

    @property
    def rank(self) -> int:
        return {"province": -1, "city": 0, "ward": 1, "commune": 1, "hamlet": 2}[self.value]


class StationKind(StrEnum):
    HAMLET = "hamlet"
    SMART = "smart"


class Area(Base):
    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    level: Mapped[AreaLevel] = mapped_column(str_enum(AreaLevel, "area_level"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    # the national statistics code (mã đơn vị hành chính) of a province or ward/commune;
    # hamlets are the site's own data and have none
    stat_code: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    # the unit exists from `valid_from` (None: always) until the day before `valid_to`
    # (None: still); a unit merged away keeps its row, so history still names it
    valid_from: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    parent: Mapped[Area | None] = relationship(remote_side=[id], lazy="joined", join_depth=1)


class Station(Base):
    __tablename__ = "stations"
    __table_args__ = (
        CheckConstraint("default_volume BETWEEN 0 AND 100", name="volume_range"),
        CheckConstraint("latitude IS NULL OR (latitude BETWEEN -90 AND 90)", name="lat"),
        CheckConstraint("longitude IS NULL OR (longitude BETWEEN -180 AND 180)", name="lon"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[StationKind] = mapped_column(str_enum(StationKind, "station_kind"), index=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="RESTRICT"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    address: Mapped[str | None] = mapped_column(String(300), nullable=True)
    controller_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    firmware: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capabilities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default_volume: Mapped[int] = mapped_column(Integer, default=70)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sim_iccid: Mapped[str | None] = mapped_column(String(22), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    area: Mapped[Area] = relationship(lazy="joined")
    # deleting a station deletes its live state (the database cascades too; without
    # the ORM cascade SQLAlchemy tried to blank the state's primary key: an
    # AssertionError for every station the dispatcher had planned)
    state: Mapped[StationState | None] = relationship(
        lazy="joined", back_populates="station", cascade="all, delete-orphan", passive_deletes=True
    )


group_stations = Table(
    "group_stations",
    Base.metadata,
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("station_id", ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True),
)

group_areas = Table(
    "group_areas",
    Base.metadata,
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True),
)


class Group(Base):
    """A named set of stations: listed stations plus every station under listed areas.

    Area members are resolved when the group is used, so a station added to a hamlet
    joins its commune's group at once.  ``all`` is built in and means every station.
    Every ward/commune gets an automatic group (``auto``: same code, its area as the
    only member, removed with the area).  `owner_area_id` says whose group it is (who
    may edit it); ``None`` means a city-wide group.
    """

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    gid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_area_id: Mapped[int | None] = mapped_column(
        ForeignKey("areas.id", ondelete="CASCADE"), index=True, nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    stations: Mapped[list[Station]] = relationship(
        secondary=group_stations, lazy="selectin", order_by=Station.sid
    )
    areas: Mapped[list[Area]] = relationship(
        secondary=group_areas, lazy="selectin", order_by=Area.code
    )


class StationState(Base):
    """What the station last told us (births, deaths, reported, telemetry), and the
    version of `desired` the server last published to it.

    Kept apart from `Station` (the registry row operators edit) because it changes
    every minute.  ``bdseq`` is the sequence number of the last accepted birth: a death
    carrying another number is stale (Sparkplug B rule) and is ignored.
    """

    __tablename__ = "station_states"

    station_id: Mapped[int] = mapped_column(
        ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True
    )
    online: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    bdseq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    online_since: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    offline_since: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_seen: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    firmware: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capabilities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    held_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # what the server last published on the station's retained `desired` topic
    desired_version: Mapped[int] = mapped_column(Integer, default=0)
    desired_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    desired_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    desired_published_version: Mapped[int] = mapped_column(Integer, default=0)
    applied_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    missing: Mapped[list[str]] = mapped_column(JSONType, default=list)
    reported_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    cache_bytes: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), nullable=True
    )  # a station's cache may hold more than 2 GiB
    volume: Mapped[int | None] = mapped_column(Integer, nullable=True)
    telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    telemetry_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    faults: Mapped[list[str]] = mapped_column(JSONType, default=list)

    station: Mapped[Station] = relationship(back_populates="state")


class TelemetrySample(Base):
    """Telemetry history, pruned after the retention period."""

    __tablename__ = "telemetry"
    __table_args__ = (Index("ix_telemetry_station_at", "station_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)


class ConnectionCause(StrEnum):
    """Why a connection interval ended, when the server knows (stored as its value in a
    VARCHAR(16): a new member needs no migration).

    Derived when the interval is closed (`stations.live`): mains lost first (the
    station's latest telemetry or faults said it was on battery), then how it ended.
    loa/v1 gives a clean shutdown no death of its own (the station publishes the same
    ``{"online": false, "bdseq": N}`` its will holds), so a death is recorded as ``will``.
    """

    POWER = "power"  # ended (death or reconnect) while the station reported mains lost
    LINK = "link"  # a new connection (new bdseq) began without a death seen: the link dropped
    WILL = "will"  # the station's death message (its will, or its own death before a reboot)
    SERVER = "server"  # the server lost the broker: nothing known of the station
    # recorded before causes were told apart; kept readable
    DEATH = "death"  # a death message (now ``will`` or ``power``)
    REPLACED = "replaced"  # a new connection without a death (now ``link`` or ``power``)


class StationConnection(Base):
    """One connection of a station (a birth with a new ``bdseq``) and how it ended:
    the station's connection history, for availability and link flapping."""

    __tablename__ = "station_connections"
    __table_args__ = (Index("ix_station_connections_station_online", "station_id", "online_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    bdseq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    online_at: Mapped[dt.datetime] = mapped_column()
    offline_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    cause: Mapped[ConnectionCause | None] = mapped_column(
        str_enum(ConnectionCause, "connection_cause"), nullable=True
    )


# --- history of the structure ------------------------------------------------------------


class ReorgStatus(StrEnum):
    SCHEDULED = "scheduled"  # checked, waiting for its effective date (the worker applies it)
    APPLIED = "applied"
    UNDONE = "undone"  # undone or cancelled before its effective date
    FAILED = "failed"  # refused when its date came (the structure had changed); errors kept


class Reorganisation(Base):
    """One administrative reorganisation (merge, rename, move hamlets, dissolve a level),
    applied as one change; `undo` holds what it replaced, so it can be undone until its
    effective date.  One dated in the future is kept `SCHEDULED` (``undo["preview"]``:
    what it would move) and applied by the active worker when its date arrives."""

    __tablename__ = "area_reorganisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    effective: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[ReorgStatus] = mapped_column(str_enum(ReorgStatus, "reorg_status"))
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    undo: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class AreaLineage(Base):
    """Which unit became which, from when (``kind``: merge, rename, move, dissolve)."""

    __tablename__ = "area_lineage"

    id: Mapped[int] = mapped_column(primary_key=True)
    reorganisation_id: Mapped[int] = mapped_column(
        ForeignKey("area_reorganisations.id", ondelete="CASCADE"), index=True
    )
    old_area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"), index=True)
    new_area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    effective: Mapped[dt.date] = mapped_column(Date)


class StationUnit(Base):
    """The ward/commune a station belonged to over a period [`valid_from`, `valid_to`)
    (None: open).  Written by reorganisations; a station with no row belongs to the
    unit its area lies in today."""

    __tablename__ = "station_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(
        ForeignKey("stations.id", ondelete="CASCADE"), index=True
    )
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"), index=True)
    valid_from: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    reorganisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("area_reorganisations.id", ondelete="CASCADE"), index=True, nullable=True
    )
