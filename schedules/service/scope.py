"""Who sees and manages schedule objects (stream sources, programmes, rules).

The rules are `kernel.ownership`'s, shared with the media library; this module names
the objects ("schedules") in its refusals and looks area codes up in the registry.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from kernel import ownership
from kernel.ownership import in_scope, reaches_owner, visible
from kernel.security import Permission, Principal
from stations import service as stations

__all__ = [
    "in_scope",
    "owner_area_for",
    "owner_filter",
    "reaches_owner",
    "require_owner",
    "visible",
]

_WHAT = {"what": "schedules", "what_vi": "Lịch phát"}


def require_owner(principal: Principal, owner_area_id: int | None, permission: Permission) -> None:
    """Area-owned objects need `permission` in that area; city-wide ones a city account."""
    ownership.require_owner(principal, owner_area_id, permission, **_WHAT)


def owner_area_for(
    session: Session, principal: Principal, code: str | None, permission: Permission
) -> int | None:
    """The owner area of a new object: the one named (in scope), else the caller's own
    area (city-wide for city accounts)."""
    return ownership.owner_area_for(
        session, principal, code, permission, areas=stations.AREA_DIRECTORY, **_WHAT
    )


def owner_filter(session: Session, code: str | None) -> int | None:
    """The id to filter lists by owner area (``-1``, matching nothing, for an unknown code)."""
    if code is None:
        return None
    found = stations.area_id(session, code)
    return -1 if found is None else found
