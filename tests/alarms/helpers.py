"""Stations that report faults, straight into the database (no broker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alarms import service
from kernel.db import utcnow
from stations import live
from stations.models import Station


def birth(session: Session, station_id: int, at: dt.datetime, bdseq: int = 1) -> None:
    live.record_birth(
        session,
        station_id,
        bdseq=bdseq,
        received_at=at,
        firmware=None,
        model=None,
        capabilities=[],
        held_version=None,
    )


def report(
    factory: sessionmaker[Session],
    sids: Sequence[str],
    *,
    faults: Sequence[str] = (),
    **data: object,
) -> None:
    """The stations come online, send telemetry ``data`` and raise ``faults``; the alarm
    rules run and the transaction is committed."""
    now = utcnow()
    with factory() as session:
        ids = list(session.scalars(select(Station.id).where(Station.sid.in_(sids))))
        assert len(ids) == len(sids)
        rows = []
        for station_id in ids:
            birth(session, station_id, now)
            for fault in faults:
                live.record_fault(session, station_id, fault, raised=True)
            base = {"seq": 0, "at": now.isoformat(), "uptime_s": 1, "volume": 70, "playing": None}
            rows.append(live.TelemetryRow(station_id, now, now, 0, base | data))
        live.record_telemetry(session, rows)
        service.evaluate(session, now, set(ids))
        session.commit()
