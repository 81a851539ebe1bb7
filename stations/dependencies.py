"""Load-or-404 dependencies for the registry routes, scoped to the caller's areas.

An object outside the caller's areas answers 404, exactly as if it did not exist, so
a commune operator cannot even learn which stations another commune has.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Path

from kernel.dependencies import CurrentPrincipal, SessionDep
from kernel.errors import NotFoundError
from stations import service
from stations.exceptions import AreaNotFound, GroupNotFound, StationNotFound
from stations.models import Area, Group, Station
from stations.schemas import CODE_PATTERN, SID_PATTERN

CodePath = Annotated[str, Path(pattern=CODE_PATTERN)]
SidPath = Annotated[str, Path(pattern=SID_PATTERN)]
Found = TypeVar("Found", Area, Station, Group)


def _seen(found: Found, reached: bool, missing: NotFoundError) -> Found:
    """`found` if the caller's areas reach it; otherwise `missing` (a 404, as if absent)."""
    if not reached:
        raise missing
    return found


def area_in_scope(code: CodePath, session: SessionDep, principal: CurrentPrincipal) -> Area:
    area = service.get_area(session, code)
    return _seen(area, principal.reaches(area.id), AreaNotFound(code))


def station_in_scope(sid: SidPath, session: SessionDep, principal: CurrentPrincipal) -> Station:
    station = service.get_station(session, sid)
    return _seen(station, principal.reaches(station.area_id), StationNotFound(sid))


def group_in_scope(gid: SidPath, session: SessionDep, principal: CurrentPrincipal) -> Group:
    group = service.get_group(session, gid)
    return _seen(group, group.builtin or principal.reaches(group.owner_area_id), GroupNotFound(gid))


AreaDep = Annotated[Area, Depends(area_in_scope)]
StationDep = Annotated[Station, Depends(station_in_scope)]
GroupDep = Annotated[Group, Depends(group_in_scope)]
