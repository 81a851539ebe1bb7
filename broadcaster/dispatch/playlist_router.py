"""A station's day as the protocol carries it (``GET /api/v1/stations/{sid}/playlist``).

The same entries `desired` publishes (built by `desired.playlist`), for any day, plus the
``rule_id`` each comes from: what an operator checks before the station gets it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from audio_library.dependencies import LibraryDep
from broadcaster.dispatch import desired
from kernel.dependencies import CurrentPrincipal, SessionDep
from kernel.security import Permission
from schedules import service as schedules
from schedules.dependencies import TzDep
from stations.dependencies import StationDep

router = APIRouter(prefix="/api/v1")

DateQuery = Annotated[dt.date | None, Query(alias="date", description="local day (default: today)")]


@router.get("/stations/{sid}/playlist", tags=["schedules"])
def station_playlist(
    station: StationDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    tz: TzDep,
    day: DateQuery = None,
) -> dict[str, Any]:
    """The station's built day: protocol playlist items (``desired.playlist[]``) with
    exact times in the service time zone, plus the ``rule_id`` each comes from."""
    principal.require(Permission.SCHEDULES_READ)
    day = day or schedules.local_today(tz)
    plan = schedules.station_plans(session, [day], tz, {station.id})[0]
    items = plan.stations.get(station.id, ())
    entries = [
        entry.model_dump(mode="json", by_alias=True) | {"rule_id": item.rule_id}
        for entry, item in zip(desired.playlist(items, library), items, strict=True)
    ]
    return {"station": station.sid, "date": day.isoformat(), "timezone": str(tz), "items": entries}
