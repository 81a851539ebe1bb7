"""Load-or-404 dependencies for the registry routes, scoped to the caller's areas.

An object outside the caller's areas answers 404, exactly as if it did not exist, so
a commune operator cannot even learn which stations another commune has.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from kernel.dependencies import CurrentPrincipal, SessionDep
from stations import service
from stations.exceptions import AreaNotFound, GroupNotFound, StationNotFound
from stations.models import Area, Group, Station
from stations.schemas import CODE_PATTERN, SID_PATTERN


def area_in_scope(
    code: Annotated[str, Path(pattern=CODE_PATTERN)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Area:
    area = service.get_area(session, code)
    if not principal.reaches(area.id):
        raise AreaNotFound(code)
    return area


def station_in_scope(
    sid: Annotated[str, Path(pattern=SID_PATTERN)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Station:
    station = service.get_station(session, sid)
    if not principal.reaches(station.area_id):
        raise StationNotFound(sid)
    return station


def group_in_scope(
    gid: Annotated[str, Path(pattern=SID_PATTERN)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Group:
    group = service.get_group(session, gid)
    if not (group.builtin or principal.reaches(group.owner_area_id)):
        raise GroupNotFound(gid)
    return group


AreaDep = Annotated[Area, Depends(area_in_scope)]
StationDep = Annotated[Station, Depends(station_in_scope)]
GroupDep = Annotated[Group, Depends(group_in_scope)]
