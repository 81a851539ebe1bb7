"""The first day's play log (issue 15, "also found": 648 false "missed" entries for the
slots that passed before the service was first started)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.dispatch import playlog
from broadcaster.dispatch.models import Play, PlayStatus
from stations import tan_an
from stations.models import Station


def test_slots_over_before_the_first_plan_are_neither_planned_nor_missed(
    session_factory: sessionmaker[Session],
) -> None:
    with db.session_scope(session_factory) as session:
        tan_an.load(session)
    now = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)  # 17:00 in Tân An
    day = dt.datetime(2026, 11, 25, 17, 0, tzinfo=dt.UTC)  # local midnight
    slots = [day + dt.timedelta(hours=h) for h in (5, 12, 16.9, 18)]  # 05:00 .. 18:00 local
    items = [
        playlog.PlannedPlay(
            station_id=0,
            item_id=f"r1-{i}",
            rule_id=1,
            title="Tiếp sóng",
            kind="relay",
            priority=5,
            start=start,
            end=start + dt.timedelta(minutes=15),
        )
        for i, start in enumerate(slots)
    ]
    with db.session_scope(session_factory) as session:
        station_id = session.scalar(select(Station.id).where(Station.sid == "p1-kp-1"))
        assert station_id is not None
        playlog.record_plan(
            session,
            station_id,
            items,
            window=(day - dt.timedelta(days=1), day + dt.timedelta(days=2)),
            now=now,
        )
        playlog.mark_missed(session, now + dt.timedelta(minutes=30))
    with session_factory() as session:
        plays = {p.item_id: p.status for p in session.scalars(select(Play))}
    # 05:00 and 12:00 were over before the service ever planned them: not in the log;
    # 16:54 was still running (it may be played in part), 18:00 is ahead
    assert plays == {"r1-2": PlayStatus.MISSED, "r1-3": PlayStatus.PLANNED}
