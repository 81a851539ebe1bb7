"""Roles, permissions and the authenticated `Principal`: the one place access is decided.

Roles (issue "Security"):

- ``admin``: city administrator, everything, everywhere.
- ``operator``: content, schedules, groups and ordinary broadcasts for their areas.
- ``approver``: approves assets and schedules for their areas (never their own items).
- ``technician``: station configuration, health and commands (volume, sync, reboot...).
- ``viewer``: read only.

Area scope: a non-admin user is assigned area codes; their scope is those areas and
every descendant.  Emergency broadcasts additionally need the explicit per-user
``can_emergency`` flag (admins hold it implicitly).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from kernel.errors import PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    APPROVER = "approver"
    TECHNICIAN = "technician"
    VIEWER = "viewer"


class Permission(StrEnum):
    STATIONS_READ = "stations:read"
    STATIONS_WRITE = "stations:write"
    STATIONS_COMMAND = "stations:command"
    AREAS_WRITE = "areas:write"
    GROUPS_WRITE = "groups:write"
    CONTENT_READ = "content:read"
    CONTENT_WRITE = "content:write"
    CONTENT_APPROVE = "content:approve"
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_WRITE = "schedules:write"
    SCHEDULES_APPROVE = "schedules:approve"
    BROADCAST_SEND = "broadcast:send"
    BROADCAST_EMERGENCY = "broadcast:emergency"
    USERS_MANAGE = "users:manage"
    AUDIT_READ = "audit:read"


_READ = frozenset({Permission.STATIONS_READ, Permission.CONTENT_READ, Permission.SCHEDULES_READ})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: _READ
    | {
        Permission.CONTENT_WRITE,
        Permission.SCHEDULES_WRITE,
        Permission.GROUPS_WRITE,
        Permission.BROADCAST_SEND,
    },
    Role.APPROVER: _READ | {Permission.CONTENT_APPROVE, Permission.SCHEDULES_APPROVE},
    Role.TECHNICIAN: _READ | {Permission.STATIONS_WRITE, Permission.STATIONS_COMMAND},
    Role.VIEWER: _READ,
}


def permissions_for(role: Role, *, can_emergency: bool = False) -> frozenset[Permission]:
    granted = ROLE_PERMISSIONS[role]
    if can_emergency and Permission.BROADCAST_SEND in granted:
        granted = granted | {Permission.BROADCAST_EMERGENCY}
    return granted


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, what they may do and where.

    `scope` holds the ids of every area the principal may reach (assigned areas and
    their subtrees); ``None`` means unrestricted (city administrators).
    """

    user_id: int | None
    username: str
    role: Role
    permissions: frozenset[Permission]
    area_codes: frozenset[str]
    scope: frozenset[int] | None
    token_id: int | None = None
    city_level: bool = False
    """Assigned a whole city (a root area): manages city-wide objects in that role."""

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise PermissionDeniedError(
                f"role {self.role.value!r} lacks permission {permission.value!r}",
                message_vi="Tài khoản không có quyền thực hiện thao tác này",
            )

    def reaches(self, area_id: int | None) -> bool:
        """Whether an object in `area_id` lies inside the principal's scope."""
        if self.scope is None:
            return True
        return area_id is not None and area_id in self.scope

    @property
    def city_wide(self) -> bool:
        """Administrators and accounts assigned a whole city."""
        return self.scope is None or self.city_level

    def reaches_all(self, area_ids: Iterable[int | None]) -> bool:
        return all(self.reaches(a) for a in area_ids)

    def require_area(self, permission: Permission, area_id: int | None) -> None:
        self.require(permission)
        if not self.reaches(area_id):
            raise PermissionDeniedError(
                "this area is outside your assigned areas",
                message_vi="Khu vực này nằm ngoài phạm vi được giao",
            )
