"""Seed data: Tân An city (Long An) — 9 wards, 5 communes, 82 hamlets/khu phố, 108 stations.

Ward and commune names are the official ones; hamlet and khu phố names follow local
naming (ấp ... in communes, khu phố ... in wards; ấp Cầu Tre in Lợi Bình Nhơn).  Station
coordinates are deterministic points near each unit's centre, all inside the city
(10.49–10.59 N, 106.36–106.48 E).  71 ``hamlet`` stations (retrofitted controllers, one
per hamlet for the first 71) and 37 ``smart`` IP stations, spread over the 14 units.
`load` is idempotent: existing codes and sids are left as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from firmware_bridge.messages import SMART_CAPABILITIES
from kernel.text import fold
from stations import service
from stations.models import Area, AreaLevel, Station, StationKind
from stations.schemas import AreaCreate

CITY_CODE = "tan-an"
CITY_NAME = "Thành phố Tân An"


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    level: AreaLevel
    short: str
    centre: tuple[float, float]
    hamlets: tuple[str, ...]


UNITS: tuple[Unit, ...] = (
    Unit(
        "phuong-1",
        "Phường 1",
        AreaLevel.WARD,
        "p1",
        (10.5365, 106.4105),
        ("Khu phố 1", "Khu phố 2", "Khu phố 3", "Khu phố 4"),
    ),
    Unit(
        "phuong-2",
        "Phường 2",
        AreaLevel.WARD,
        "p2",
        (10.5410, 106.4040),
        ("Khu phố 1", "Khu phố 2", "Khu phố 3", "Khu phố 4", "Khu phố 5", "Khu phố 6"),
    ),
    Unit(
        "phuong-3",
        "Phường 3",
        AreaLevel.WARD,
        "p3",
        (10.5330, 106.4230),
        ("Khu phố 1", "Khu phố 2", "Khu phố 3", "Khu phố 4", "Khu phố 5", "Khu phố Bình Đông"),
    ),
    Unit(
        "phuong-4",
        "Phường 4",
        AreaLevel.WARD,
        "p4",
        (10.5480, 106.4160),
        ("Khu phố 1", "Khu phố 2", "Khu phố 3", "Khu phố 4", "Khu phố 5", "Khu phố 6"),
    ),
    Unit(
        "phuong-5",
        "Phường 5",
        AreaLevel.WARD,
        "p5",
        (10.5520, 106.3960),
        (
            "Khu phố 1",
            "Khu phố 2",
            "Khu phố 3",
            "Khu phố Bình Yên Đông 1",
            "Khu phố Bình Yên Đông 2",
            "Khu phố Bình Yên Đông 3",
        ),
    ),
    Unit(
        "phuong-6",
        "Phường 6",
        AreaLevel.WARD,
        "p6",
        (10.5250, 106.4010),
        (
            "Khu phố Nhơn Hòa 1",
            "Khu phố Nhơn Hòa 2",
            "Khu phố Nhơn Hòa 3",
            "Khu phố Nhơn Hòa 4",
            "Khu phố Nhơn Hòa 5",
        ),
    ),
    Unit(
        "phuong-7",
        "Phường 7",
        AreaLevel.WARD,
        "p7",
        (10.5600, 106.4230),
        ("Khu phố 1", "Khu phố 2", "Khu phố 3", "Khu phố Bình Đông", "Khu phố Bình Tây"),
    ),
    Unit(
        "phuong-khanh-hau",
        "Phường Khánh Hậu",
        AreaLevel.WARD,
        "kh",
        (10.5150, 106.3920),
        (
            "Khu phố Quyết Thắng",
            "Khu phố Thủ Tửu 1",
            "Khu phố Thủ Tửu 2",
            "Khu phố Nhơn Hậu",
            "Khu phố Dương Xuân Hội",
            "Khu phố Vĩnh Hòa",
        ),
    ),
    Unit(
        "phuong-tan-khanh",
        "Phường Tân Khánh",
        AreaLevel.WARD,
        "tk",
        (10.5050, 106.3800),
        (
            "Khu phố Khánh Hòa",
            "Khu phố Khánh Hội",
            "Khu phố Khánh Thạnh",
            "Khu phố Khánh An",
            "Khu phố Khánh Bình",
        ),
    ),
    Unit(
        "xa-huong-tho-phu",
        "Xã Hướng Thọ Phú",
        AreaLevel.COMMUNE,
        "htp",
        (10.5700, 106.3800),
        ("Ấp 1", "Ấp 2", "Ấp 3", "Ấp 4", "Ấp 5", "Ấp Cầu Xây"),
    ),
    Unit(
        "xa-nhon-thanh-trung",
        "Xã Nhơn Thạnh Trung",
        AreaLevel.COMMUNE,
        "ntt",
        (10.5050, 106.4250),
        (
            "Ấp Bình Cư 1",
            "Ấp Bình Cư 2",
            "Ấp Bình Cư 3",
            "Ấp Nhơn Cầu",
            "Ấp Nhơn Hậu",
            "Ấp Nhơn Thuận",
            "Ấp Bình Trung",
        ),
    ),
    Unit(
        "xa-loi-binh-nhon",
        "Xã Lợi Bình Nhơn",
        AreaLevel.COMMUNE,
        "lbn",
        (10.5750, 106.4050),
        (
            "Ấp Cầu Tre",
            "Ấp Ngãi Lợi A",
            "Ấp Ngãi Lợi B",
            "Ấp Xuân Hòa 1",
            "Ấp Xuân Hòa 2",
            "Ấp Bình Nam",
            "Ấp Bình Trung",
            "Ấp Bình Đông",
        ),
    ),
    Unit(
        "xa-binh-tam",
        "Xã Bình Tâm",
        AreaLevel.COMMUNE,
        "bt",
        (10.5250, 106.4600),
        ("Ấp 1", "Ấp 2", "Ấp 3", "Ấp 4", "Ấp Bình Thạnh", "Ấp Bình Hòa"),
    ),
    Unit(
        "xa-an-vinh-ngai",
        "Xã An Vĩnh Ngãi",
        AreaLevel.COMMUNE,
        "avn",
        (10.5050, 106.4550),
        (
            "Ấp Vĩnh Bình",
            "Ấp Vĩnh Hòa",
            "Ấp Vĩnh Phú",
            "Ấp Phước Hòa",
            "Ấp Bình An",
            "Ấp Phước Thạnh",
        ),
    ),
)

HAMLET_STATIONS = 71
SMART_STATIONS = 37


def _slug(name: str) -> str:
    folded = fold(name).replace("khu pho ", "kp ").replace("ap ", "")
    return "-".join(part for part in folded.replace(".", " ").split() if part)


def _jitter(key: str, spread: float) -> float:
    digest = hashlib.sha256(key.encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32 - 0.5) * 2 * spread


@dataclass(frozen=True)
class SeedStation:
    sid: str
    name: str
    kind: StationKind
    area_code: str
    latitude: float
    longitude: float
    controller_model: str


def hamlet_codes() -> list[tuple[Unit, str, str]]:
    """(unit, hamlet code, hamlet name) for all 82 hamlets, in a stable order."""
    return [(u, f"{u.short}-{_slug(h)}", h) for u in UNITS for h in u.hamlets]


def stations() -> list[SeedStation]:
    hamlets = hamlet_codes()
    out: list[SeedStation] = []

    def point(unit: Unit, key: str) -> tuple[float, float]:
        lat = round(unit.centre[0] + _jitter(key + "lat", 0.012), 6)
        lon = round(unit.centre[1] + _jitter(key + "lon", 0.012), 6)
        return (min(max(lat, 10.49), 10.59), min(max(lon, 106.36), 106.48))

    # one retrofitted hamlet station in each of the first 71 hamlets (round-robin by unit
    # so every unit has some)
    by_unit: dict[str, list[tuple[Unit, str, str]]] = {}
    for entry in hamlets:
        by_unit.setdefault(entry[0].code, []).append(entry)
    order: list[tuple[Unit, str, str]] = []
    depth = 0
    while len(order) < len(hamlets):
        for unit in UNITS:
            if depth < len(by_unit[unit.code]):
                order.append(by_unit[unit.code][depth])
        depth += 1
    for unit, code, name in order[:HAMLET_STATIONS]:
        lat, lon = point(unit, code)
        out.append(
            SeedStation(
                code,
                f"Trạm truyền thanh {name} ({unit.name})",
                StationKind.HAMLET,
                code,
                lat,
                lon,
                "bridge-box-v2",
            )
        )
    # smart stations: round-robin over units, placed in the unit's hamlets in turn
    for index in range(SMART_STATIONS):
        unit = UNITS[index % len(UNITS)]
        round_ = index // len(UNITS)
        _, code, name = by_unit[unit.code][round_ % len(by_unit[unit.code])]
        sid = f"{unit.short}-smart-{round_ + 1}"
        lat, lon = point(unit, sid)
        out.append(
            SeedStation(
                sid,
                f"Cụm loa thông minh {round_ + 1} – {name} ({unit.name})",
                StationKind.SMART,
                code,
                lat,
                lon,
                "smart-ip-4g",
            )
        )
    return out


def load(session: Session) -> dict[str, int]:
    """Create what is missing; return how many areas and stations were added."""
    added = {"areas": 0, "stations": 0}
    service.ensure_builtin_groups(session)
    existing = set(session.scalars(select(Area.code)))

    def area(code: str, name: str, level: AreaLevel, parent: str | None) -> None:
        if code not in existing:
            service.create_area(
                session, AreaCreate(code=code, name=name, level=level, parent_code=parent)
            )
            existing.add(code)
            added["areas"] += 1

    area(CITY_CODE, CITY_NAME, AreaLevel.CITY, None)
    for unit in UNITS:
        area(unit.code, unit.name, unit.level, CITY_CODE)
    for unit, code, name in hamlet_codes():
        area(code, name, AreaLevel.HAMLET, unit.code)
    areas = {a.code: a.id for a in session.scalars(select(Area))}
    sids = set(session.scalars(select(Station.sid)))
    for seed in stations():
        if seed.sid in sids:
            continue
        smart = seed.kind is StationKind.SMART
        session.add(
            Station(
                sid=seed.sid,
                name=seed.name,
                name_folded=fold(seed.name),
                kind=seed.kind,
                area_id=areas[seed.area_code],
                latitude=seed.latitude,
                longitude=seed.longitude,
                controller_model=seed.controller_model,
                capabilities=(
                    list(SMART_CAPABILITIES) if smart else ["file", "relay", "telemetry_power"]
                ),
                default_volume=70,
                enabled=True,
            )
        )
        added["stations"] += 1
    session.flush()
    return added
