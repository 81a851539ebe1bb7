"""The station credential record: that a station has an MQTT secret, never the secret."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kernel.db import Base, utcnow


class StationCredential(Base):
    """One per station that was issued an MQTT secret (username = its sid).

    ``secret_hash`` is a one-way hash (:mod:`broadcaster.broker.hashing`); the secret
    itself is shown once, to whoever issued it.  Deleting the station deletes the row;
    the next :func:`broadcaster.broker.provisioning.sync` then deletes its broker account.
    """

    __tablename__ = "station_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(
        ForeignKey("stations.id", ondelete="CASCADE"), unique=True
    )
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # No foreign keys to users: like the audit log, the record outlives the account.
    created_by: Mapped[str] = mapped_column(String(64))
    rotated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    rotated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rotations: Mapped[int] = mapped_column(Integer, default=0)
