"""Registry use cases: plain keyword-only functions over a `Session`.

Services `flush()`; the caller (a router or a CLI command) commits.  Area subtrees are
resolved with a recursive CTE, so "every station under Lợi Bình Nhơn" is one query on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from vietnam_provinces import Province, ProvinceCode, Ward, WardCode

from kernel.db import among, paginate
from kernel.errors import InvalidInput
from kernel.ownership import AreaDirectory
from kernel.patch import apply_changes, patch_changes
from kernel.text import contains, fold
from stations import targets
from stations.exceptions import (
    AreaInUse,
    AreaNotFound,
    DuplicateKey,
    GroupNotFound,
    GroupReadOnly,
    StationNotFound,
)
from stations.models import (
    ALL_GROUP,
    Area,
    AreaLevel,
    Group,
    Station,
    StationKind,
    StationState,
)
from stations.schemas import (
    AreaCreate,
    AreaUpdate,
    GroupCreate,
    GroupUpdate,
    StationCreate,
    StationUpdate,
)
from stations.targets import TargetResolver

AREA_FIELDS = ("code", "name", "level", "parent_id", "stat_code")
STATION_FIELDS = (
    "sid",
    "name",
    "kind",
    "area_id",
    "latitude",
    "longitude",
    "address",
    "controller_model",
    "firmware",
    "capabilities",
    "default_volume",
    "enabled",
    "sim_iccid",
    "phone",
    "notes",
)

# --- areas -----------------------------------------------------------------------------


def get_area(session: Session, code: str) -> Area:
    area = session.scalar(select(Area).where(Area.code == code))
    if area is None:
        raise AreaNotFound(code)
    return area


def subtree_ids(session: Session, roots: Iterable[int]) -> set[int]:
    """The given areas and every area below them."""
    roots = list(roots)
    if not roots:
        return set()
    tree = select(Area.id).where(Area.id.in_(roots)).cte("subtree", recursive=True)
    tree = tree.union_all(select(Area.id).where(Area.parent_id == tree.c.id))
    return set(session.scalars(select(tree.c.id)))


def _area_for_field(session: Session, code: str, field: str) -> Area:
    area = session.scalar(select(Area).where(Area.code == code))
    if area is None:
        raise InvalidInput(
            f"unknown area {code!r}", field=field, message_vi=f"Địa bàn {code} không tồn tại"
        )
    return area


def national_stat_code(level: AreaLevel, code: str | None) -> str | None:
    """`code` as stored for an area of `level` (None when blank), refused with the reason
    when a province's or a ward/commune's is not in the national list the
    `vietnam-provinces` package ships (stored without leading zeros, as the package
    numbers them); a city's (a level abolished in 2025, in no current list) and a
    hamlet's are the site's own."""
    if code is None or not code.strip():
        return None
    code = code.strip()
    if level not in (AreaLevel.PROVINCE, AreaLevel.WARD, AreaLevel.COMMUNE):
        return code
    province = level is AreaLevel.PROVINCE
    what = "tỉnh/thành phố" if province else "phường/xã"
    try:
        if not (code.isascii() and code.isdigit()):
            raise ValueError(code)
        number = int(code)
        if province:
            Province.from_code(ProvinceCode(number))
        else:
            Ward.from_code(WardCode(number))
    except ValueError:
        raise InvalidInput(
            f"{code!r} is not a {'province' if province else 'ward/commune'} code of the "
            "national list (vietnam-provinces)",
            field="stat_code",
            message_vi=f"Mã thống kê {code} không có trong danh mục {what} hiện hành",
        ) from None
    return str(number)


def stat_code_for(
    session: Session, level: AreaLevel, code: str | None, *, area_id: int | None = None
) -> str | None:
    """The statistics code `code` as stored for an area of `level` (`area_id`: the area
    itself when it is edited), refused with the reason when wrong: a province's or a
    ward/commune's must be in the national list the `vietnam-provinces` package ships
    (stored without leading zeros, as the package numbers them); a city's (a level
    abolished in 2025, in no current list) and a hamlet's are the site's own.  No two
    current areas share one."""
    code = national_stat_code(level, code)
    if code is None:
        return None
    taken = session.scalar(
        select(Area.code).where(
            Area.stat_code == code, Area.valid_to.is_(None), Area.id != (area_id or 0)
        )
    )
    if taken is not None:
        raise InvalidInput(
            f"statistics code {code!r} is already the code of area {taken!r}",
            field="stat_code",
            message_vi=f"Mã thống kê {code} đã được dùng cho địa bàn {taken}",
        )
    return code


def _check_parent(level: AreaLevel, parent: Area | None, *, field: str) -> None:
    if level is AreaLevel.PROVINCE or (level is AreaLevel.CITY and parent is None):
        if parent is not None:
            raise InvalidInput(
                "a province cannot have a parent",
                field=field,
                message_vi="Tỉnh không thuộc địa bàn nào khác",
            )
        return
    if parent is None:
        raise InvalidInput(
            f"a {level.value} area needs a parent",
            field=field,
            message_vi="Địa bàn này cần thuộc một địa bàn cấp trên",
        )
    if parent.level.rank >= level.rank:
        raise InvalidInput(
            f"a {level.value} cannot sit under a {parent.level.value} ({parent.code})",
            field=field,
            message_vi=f"Địa bàn cấp này không thể thuộc {parent.name} (cấp bằng hoặc thấp hơn)",
        )


def list_areas(
    session: Session,
    *,
    scope: Collection[int] | None = None,
    level: AreaLevel | None = None,
    parent: str | None = None,
    within: str | None = None,
    q: str | None = None,
    retired: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Area], int]:
    query = select(Area)
    if not retired:  # units ended by a reorganisation stay for history
        query = query.where(Area.valid_to.is_(None))
    if scope is not None:
        query = query.where(Area.id.in_(scope))
    if level is not None:
        query = query.where(Area.level == level)
    if parent is not None:
        query = query.where(Area.parent_id == get_area(session, parent).id)
    if within is not None:
        query = query.where(Area.id.in_(subtree_ids(session, [get_area(session, within).id])))
    if q:
        query = query.where(or_(contains(Area.name_folded, q), Area.code == q.strip()))
    return paginate(session, query.order_by(Area.level, Area.code), limit, offset)


@dataclass(frozen=True, slots=True)
class AreaNode:
    """One line of the area tree: the area, its depth, its stations (with those below)."""

    area: Area
    depth: int
    stations: int
    own_stations: int


def area_tree(session: Session, *, retired: bool = False) -> list[AreaNode]:
    """Every area as an indented tree (parents before children, by level then name),
    with its station counts; units ended by a reorganisation only with `retired`."""
    areas = {a.id: a for a in session.scalars(select(Area))}
    if not retired:
        areas = {i: a for i, a in areas.items() if a.valid_to is None}
    own: dict[int, int] = dict(
        session.execute(select(Station.area_id, func.count()).group_by(Station.area_id)).all()
    )
    children: dict[int | None, list[Area]] = {}
    for area in areas.values():
        parent = area.parent_id if area.parent_id in areas else None
        children.setdefault(parent, []).append(area)
    out: list[AreaNode] = []

    def walk(parent: int | None, depth: int) -> int:
        total = 0
        for area in sorted(children.get(parent, []), key=lambda a: (a.level.rank, a.name)):
            index = len(out)
            out.append(AreaNode(area, depth, 0, own.get(area.id, 0)))
            below = walk(area.id, depth + 1) + own.get(area.id, 0)
            out[index] = AreaNode(area, depth, below, own.get(area.id, 0))
            total += below
        return total

    walk(None, 0)
    return out


def create_area(session: Session, data: AreaCreate) -> Area:
    if session.scalar(select(Area.id).where(Area.code == data.code)) is not None:
        raise DuplicateKey("area", data.code)
    parent = _area_for_field(session, data.parent_code, "parent_code") if data.parent_code else None
    _check_parent(data.level, parent, field="parent_code")
    area = Area(
        code=data.code,
        name=data.name,
        name_folded=fold(data.name),
        level=data.level,
        parent_id=parent.id if parent else None,
        stat_code=stat_code_for(session, data.level, data.stat_code),
    )
    session.add(area)
    _flush_unique(session, "area", data.code)
    if data.level in (AreaLevel.WARD, AreaLevel.COMMUNE):
        _ensure_area_group(session, area)
    return area


def update_area(session: Session, code: str, data: AreaUpdate) -> Area:
    area = get_area(session, code)
    changes = data.model_dump(exclude_unset=True)
    level = changes.get("level") or area.level
    parent = area.parent
    if "parent_code" in changes:
        new_parent_code = changes["parent_code"]
        parent = (
            _area_for_field(session, new_parent_code, "parent_code") if new_parent_code else None
        )
        if parent is not None and parent.id in subtree_ids(session, [area.id]):
            raise InvalidInput(
                f"area {code!r} cannot move under itself or its descendant {parent.code!r}",
                field="parent_code",
                message_vi="Không thể chuyển địa bàn vào chính nó hoặc địa bàn con của nó",
            )
    if "level" in changes or "parent_code" in changes:
        _check_parent(level, parent, field="parent_code" if "parent_code" in changes else "level")
        children = session.scalars(select(Area).where(Area.parent_id == area.id)).all()
        for child in children:
            if child.level.rank <= level.rank:
                raise InvalidInput(
                    f"area {child.code!r} ({child.level.value}) would sit under a {level.value}",
                    field="level",
                    message_vi=f"Địa bàn con {child.name} sẽ có cấp không thấp hơn địa bàn này",
                )
        area.level = level
        area.parent_id = parent.id if parent else None
    if "name" in changes and changes["name"] is not None:
        area.name = changes["name"]
        area.name_folded = fold(area.name)
    if "stat_code" in changes or "level" in changes:  # a new level: its code checked again
        area.stat_code = stat_code_for(
            session, area.level, changes.get("stat_code", area.stat_code), area_id=area.id
        )
    session.flush()
    if area.level in (AreaLevel.WARD, AreaLevel.COMMUNE):
        _ensure_area_group(session, area)
    else:
        _drop_area_group(session, area)
    return area


def delete_area(session: Session, code: str) -> None:
    area = get_area(session, code)
    ids = subtree_ids(session, [area.id])
    stations = session.scalar(select(func.count()).where(Station.area_id.in_(ids)))
    if stations:
        raise AreaInUse(
            f"area {code!r} still holds {stations} station(s); move or delete them first",
            message_vi=f"Địa bàn {code} vẫn còn {stations} trạm",
        )
    children = session.scalar(select(func.count()).where(Area.parent_id == area.id))
    if children:
        raise AreaInUse(
            f"area {code!r} still holds {children} area(s); move or delete them first",
            message_vi=f"Địa bàn {code} vẫn còn {children} địa bàn trực thuộc",
        )
    _drop_area_group(session, area)
    session.delete(area)
    session.flush()


def _ensure_area_group(session: Session, area: Area) -> None:
    group = session.scalar(
        select(Group).where(Group.auto.is_(True), Group.owner_area_id == area.id)
    )
    if group is None:
        if session.scalar(select(Group.id).where(Group.gid == area.code)) is not None:
            return  # a hand-made group already took the code; leave it alone
        group = Group(
            gid=area.code,
            name=area.name,
            name_folded=fold(area.name),
            auto=True,
            owner_area_id=area.id,
            description=f"Tất cả các trạm thuộc {area.name}",
        )
        group.areas = [area]
        session.add(group)
    else:
        group.name = area.name
        group.name_folded = fold(area.name)
    session.flush()


def _drop_area_group(session: Session, area: Area) -> None:
    group = session.scalar(
        select(Group).where(Group.auto.is_(True), Group.owner_area_id == area.id)
    )
    if group is not None:
        session.delete(group)
        session.flush()


# --- stations --------------------------------------------------------------------------


def get_station(session: Session, sid: str) -> Station:
    station = session.scalar(select(Station).where(Station.sid == sid))
    if station is None:
        raise StationNotFound(sid)
    return station


def station_query(
    session: Session,
    *,
    scope: Collection[int] | None = None,
    area: str | None = None,
    kind: StationKind | None = None,
    q: str | None = None,
    enabled: bool | None = None,
    online: bool | None = None,
    sids: Collection[str] | None = None,
    ids: Collection[int] | None = None,
) -> Select[Station]:
    query = select(Station)
    if online is not None:
        online_ids = select(StationState.station_id).where(StationState.online.is_(True))
        query = query.where(Station.id.in_(online_ids) if online else Station.id.not_in(online_ids))
    if scope is not None:
        query = query.where(Station.area_id.in_(scope))
    if area is not None:
        query = query.where(Station.area_id.in_(subtree_ids(session, [get_area(session, area).id])))
    if kind is not None:
        query = query.where(Station.kind == kind)
    if enabled is not None:
        query = query.where(Station.enabled.is_(enabled))
    if sids is not None:
        query = query.where(Station.sid.in_(sids))
    if ids is not None:
        query = query.where(among(session, Station.id, ids))
    if q:
        query = query.where(
            or_(
                contains(Station.name_folded, q),
                contains(Station.sid, q),
            )
        )
    return query.order_by(Station.sid)


def list_stations(
    session: Session, query: Select[Station], *, limit: int, offset: int
) -> tuple[list[Station], int]:
    return paginate(session, query, limit, offset)


def all_stations(session: Session, query: Select[Station]) -> list[Station]:
    """Every station a `station_query` matches (exports, group members)."""
    return list(session.scalars(query))


def create_station(session: Session, data: StationCreate) -> Station:
    if session.scalar(select(Station.id).where(Station.sid == data.sid)) is not None:
        raise DuplicateKey("station", data.sid)
    area = _area_for_field(session, data.area_code, "area_code")
    fields = data.model_dump(exclude={"area_code"})
    station = Station(**fields, area_id=area.id, name_folded=fold(data.name))
    session.add(station)
    _flush_unique(session, "station", data.sid)
    return station


def update_station(session: Session, sid: str, data: StationUpdate) -> Station:
    station = get_station(session, sid)
    changes = patch_changes(
        data,
        required=("name", "kind", "capabilities", "default_volume", "enabled", "area_code"),
    )
    if "area_code" in changes:
        station.area_id = _area_for_field(session, changes.pop("area_code"), "area_code").id
    apply_changes(session, station, changes)
    return station


def delete_station(session: Session, sid: str) -> None:
    session.delete(get_station(session, sid))
    session.flush()


def _flush_unique(session: Session, what: str, key: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(what, key) from exc


# --- groups ----------------------------------------------------------------------------


def get_group(session: Session, gid: str) -> Group:
    group = session.scalar(select(Group).where(Group.gid == gid))
    if group is None:
        raise GroupNotFound(gid)
    return group


def list_groups(
    session: Session,
    *,
    scope: Collection[int] | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Group], int]:
    query = select(Group)
    if scope is not None:
        query = query.where(or_(Group.owner_area_id.in_(scope), Group.builtin.is_(True)))
    if q:
        query = query.where(or_(contains(Group.name_folded, q), Group.gid == q.strip()))
    return paginate(session, query.order_by(Group.builtin.desc(), Group.gid), limit, offset)


def _members(
    session: Session, sids: Sequence[str], codes: Sequence[str]
) -> tuple[list[Station], list[Area]]:
    stations = []
    for index, sid in enumerate(dict.fromkeys(sids)):
        station = session.scalar(select(Station).where(Station.sid == sid))
        if station is None:
            raise InvalidInput(
                f"unknown station {sid!r}",
                field=("stations", index),
                message_vi=f"Không có trạm {sid}",
            )
        stations.append(station)
    areas = []
    for index, code in enumerate(dict.fromkeys(codes)):
        area = session.scalar(select(Area).where(Area.code == code))
        if area is None:
            raise InvalidInput(
                f"unknown area {code!r}",
                field=("areas", index),
                message_vi=f"Không có địa bàn {code}",
            )
        areas.append(area)
    return stations, areas


def create_group(session: Session, data: GroupCreate) -> Group:
    if session.scalar(select(Group.id).where(Group.gid == data.gid)) is not None:
        raise DuplicateKey("group", data.gid)
    owner = (
        _area_for_field(session, data.owner_area_code, "owner_area_code")
        if data.owner_area_code
        else None
    )
    stations, areas = _members(session, data.stations, data.areas)
    group = Group(
        gid=data.gid,
        name=data.name,
        name_folded=fold(data.name),
        description=data.description,
        owner_area_id=owner.id if owner else None,
    )
    group.stations = stations
    group.areas = areas
    session.add(group)
    _flush_unique(session, "group", data.gid)
    return group


def update_group(session: Session, gid: str, data: GroupUpdate) -> Group:
    group = get_group(session, gid)
    changes = data.model_dump(exclude_unset=True)
    if group.builtin or (group.auto and ({"stations", "areas"} & changes.keys())):
        raise GroupReadOnly(
            f"the members of group {gid!r} are managed automatically",
            message_vi=f"Thành viên của nhóm {gid} được quản lý tự động",
        )
    if changes.get("name"):
        group.name = changes["name"]
        group.name_folded = fold(group.name)
    if "description" in changes:
        group.description = changes["description"]
    if "stations" in changes or "areas" in changes:
        sids = changes["stations"] if "stations" in changes else [s.sid for s in group.stations]
        codes = changes["areas"] if "areas" in changes else [a.code for a in group.areas]
        stations, areas = _members(session, sids or [], codes or [])
        group.stations = stations
        group.areas = areas
    session.flush()
    return group


def delete_group(session: Session, gid: str) -> None:
    group = get_group(session, gid)
    if group.builtin or group.auto:
        raise GroupReadOnly(
            f"group {gid!r} is built in and cannot be deleted",
            message_vi=f"Nhóm {gid} là nhóm mặc định, không thể xóa",
        )
    session.delete(group)
    session.flush()


def ensure_builtin_groups(session: Session) -> None:
    if session.scalar(select(Group.id).where(Group.gid == ALL_GROUP)) is None:
        session.add(
            Group(
                gid=ALL_GROUP,
                name="Tất cả các trạm",
                name_folded=fold("Tất cả các trạm"),
                builtin=True,
                description="Mọi trạm trong hệ thống",
            )
        )
        session.flush()


def group_station_ids(
    session: Session, group: Group, *, resolver: TargetResolver | None = None
) -> frozenset[int]:
    """Every station the group reaches now, enabled or not (see `stations.targets`).

    Pass one `resolver` (``enabled_only=False``) when resolving many groups.
    """
    return (resolver or TargetResolver(session, enabled_only=False)).group(group.id)


def station_groups(session: Session) -> dict[int, list[str]]:
    """For every station, the gids of the groups it belongs to (``all`` excluded): the
    ``desired`` config and the broker's topic rules (see `stations.targets`)."""
    return targets.station_groups(session)


def station_sids(session: Session, ids: Collection[int] | None = None) -> dict[int, str]:
    """Station sids by id (every station, or those of `ids`)."""
    query = select(Station.id, Station.sid)
    if ids is not None:
        query = query.where(among(session, Station.id, ids))
    return {i: s for i, s in session.execute(query)}


def station_ids_in(
    session: Session, area_ids: Collection[int], *, enabled_only: bool = False
) -> set[int]:
    """The stations located directly in the given areas (pass a subtree for "under")."""
    query = select(Station.id).where(Station.area_id.in_(list(area_ids)))
    if enabled_only:
        query = query.where(Station.enabled.is_(True))
    return set(session.scalars(query))


# --- area codes (for packages that may not import the registry) ----------------------------


def area_id(session: Session, code: str) -> int | None:
    """The id of the area with this code, if there is one."""
    return session.scalar(select(Area.id).where(Area.code == code))


def area_codes(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """The codes of the given areas (``None`` ids ignored)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {i: c for i, c in session.execute(select(Area.id, Area.code).where(Area.id.in_(wanted)))}


#: Area codes and ids for the media library (built into the app by the composition root).
AREA_DIRECTORY = AreaDirectory(id_for=area_id, codes_for=area_codes)
