"""The "plan changed" signal: domain changes tell the dispatcher to rebuild playlists.

Any change that may alter what a station should play (a rule, a programme, an asset, a
stream source, a group, a station's area or volume...) calls `plan_changed` in the same
transaction.  It bumps one counter row; the active worker polls the counter, waits for
the changes to settle (debounce), rebuilds every station's desired state and publishes
only those whose content actually changed.  Works across processes and replicas
because it lives in the database.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from kernel.db import Base, utcnow

SIGNAL_ID = 1


class PlanSignal(Base):
    __tablename__ = "plan_signal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(200), default="")


def plan_changed(session: Session, reason: str) -> None:
    """Record that station plans may have changed (commits with the caller's change)."""
    result = session.execute(
        update(PlanSignal)
        .where(PlanSignal.id == SIGNAL_ID)
        .values(generation=PlanSignal.generation + 1, changed_at=utcnow(), reason=reason[:200])
    )
    if not getattr(result, "rowcount", 0):
        session.add(
            PlanSignal(id=SIGNAL_ID, generation=1, changed_at=utcnow(), reason=reason[:200])
        )
    session.flush()


def current(session: Session) -> tuple[int, dt.datetime | None]:
    """The signal's generation and when it last moved."""
    row = session.execute(
        select(PlanSignal.generation, PlanSignal.changed_at).where(PlanSignal.id == SIGNAL_ID)
    ).first()
    return (0, None) if row is None else (int(row[0]), row[1])
