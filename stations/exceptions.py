"""Registry errors.

NotFoundError ── AreaNotFound, StationNotFound, GroupNotFound
ConflictError ── DuplicateKey, AreaInUse, GroupReadOnly
InvalidInput  ── (raised directly with the offending field)
"""

from __future__ import annotations

from kernel.errors import ConflictError, NotFoundError


class AreaNotFound(NotFoundError):
    def __init__(self, code: str) -> None:
        super().__init__(f"area {code!r} not found", message_vi=f"Không tìm thấy địa bàn {code}")


class StationNotFound(NotFoundError):
    def __init__(self, sid: str) -> None:
        super().__init__(f"station {sid!r} not found", message_vi=f"Không tìm thấy trạm {sid}")


class GroupNotFound(NotFoundError):
    def __init__(self, gid: str) -> None:
        super().__init__(f"group {gid!r} not found", message_vi=f"Không tìm thấy nhóm {gid}")


class DuplicateKey(ConflictError):
    def __init__(self, what: str, key: str) -> None:
        labels = {"area": "Mã địa bàn", "station": "Mã trạm", "group": "Mã nhóm"}
        super().__init__(
            f"{what} {key!r} already exists",
            message_vi=f"{labels.get(what, what)} {key} đã tồn tại",
        )


class AreaInUse(ConflictError):
    pass


class GroupReadOnly(ConflictError):
    pass
