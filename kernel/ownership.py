"""Objects an area owns: who sees them, who manages them, and who owns a new one.

Media assets, stream sources, programmes and schedule rules belong to an area (a ward,
a commune...) or to the whole city (owner ``None``).  One rule for all of them:

- an account sees city-wide objects and those owned inside its scope (`visible`,
  `reaches_owner`); anything else answers 404, as if it did not exist;
- an area-owned object is managed with the permission in that area; a city-wide one
  only by a city account (`require_owner`);
- a new object belongs to the area named (which must be in scope), else to the
  caller's own area, else (city accounts) to the city (`owner_area_for`).

Area *codes* are the registry's (`stations`), which the media library may not import:
`AreaDirectory` is the small interface both use, built by the composition root from
the registry's service and handed to the routes (`kernel.dependencies.AreasDep`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, or_
from sqlalchemy.orm import Session

from kernel.errors import InvalidInput, PermissionDeniedError
from kernel.security import Permission, Principal

__all__ = [
    "AreaDirectory",
    "in_scope",
    "owner_area_for",
    "reaches_owner",
    "require_owner",
    "visible",
]

Q = TypeVar("Q", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class AreaDirectory:
    """Area codes and ids, looked up in the registry."""

    id_for: Callable[[Session, str], int | None]
    codes_for: Callable[[Session, Iterable[int | None]], dict[int, str]]


def in_scope(owner_area_id: int | None, scope: Collection[int] | None) -> bool:
    """City-wide objects, and those owned inside `scope` (``None``: everything)."""
    return scope is None or owner_area_id is None or owner_area_id in scope


def reaches_owner(principal: Principal, owner_area_id: int | None) -> bool:
    """Whether the caller may see an object: city-wide ones and those in their areas."""
    return in_scope(owner_area_id, principal.scope)


def visible(query: Q, owner_column: Any, scope: Collection[int] | None) -> Q:
    """`query` narrowed to the objects `in_scope` (one SQL condition)."""
    if scope is None:
        return query
    return query.where(or_(owner_column.is_(None), owner_column.in_(scope)))


def require_owner(
    principal: Principal,
    owner_area_id: int | None,
    permission: Permission,
    *,
    what: str = "objects",
    what_vi: str = "Dữ liệu",
) -> None:
    """Area-owned objects need `permission` in that area; city-wide ones a city account.

    `what`/`what_vi` name the kind of object in the refusal ("city-wide schedules...").
    """
    principal.require(permission)
    if owner_area_id is not None:
        principal.require_area(permission, owner_area_id)
    elif not principal.city_wide:
        raise PermissionDeniedError(
            f"city-wide {what} are managed by the city",
            message_vi=f"{what_vi} dùng chung toàn thành phố do thành phố quản lý",
        )


def owner_area_for(
    session: Session,
    principal: Principal,
    code: str | None,
    permission: Permission,
    *,
    areas: AreaDirectory,
    field: str = "owner_area",
    what: str = "objects",
    what_vi: str = "Dữ liệu",
) -> int | None:
    """The owner area of a new object: the one named (it must be in the caller's scope),
    else the caller's own area; city-wide (``None``) for city accounts."""
    if code is not None:
        area_id = areas.id_for(session, code)
        if area_id is None:
            raise InvalidInput(
                f"unknown area {code!r}", field=field, message_vi=f"Địa bàn {code} không tồn tại"
            )
        principal.require_area(permission, area_id)
        return area_id
    if principal.city_wide or not principal.area_codes:
        require_owner(principal, None, permission, what=what, what_vi=what_vi)
        return None
    return areas.id_for(session, min(principal.area_codes))
