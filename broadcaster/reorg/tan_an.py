"""The 1 July 2025 reorganisation of Tân An (Long An → Tây Ninh; 14 units → 3 wards).

Names and national statistics codes of the new province and wards come from the
`vietnam-provinces` package (the post-July-2025 list), not typed by hand.  The partial
move of Xã Bình Thạnh (Thủ Thừa) into Phường Long An is left out: its hamlets are not in
the registry.  The registry's Phường 2 is not named in the published lists of the 2025
arrangement; it is merged here with the Phường 1 group (into Phường Long An).  What the
package's own history says (checked offline from its releases on PyPI): vietnam-provinces
0.4.3 (the list of 3 February 2021) has Thành phố Tân An (794) with 14 units, Phường 2
among them (code 27688); 0.5.8 and 0.6.0 (the list of 4 January 2025) have 13, Phường 2
gone and Phường 1 keeping its code 27694 - the code Phường Long An carries from July 2025.
So Phường 2 ended between 2021 and January 2025, consistent with Nghị quyết
1244/NQ-UBTVQH15 (in force 1 December 2024) merging it into Phường 1; the data does not
name the unit it joined.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from vietnam_provinces import Province, ProvinceCode, Ward, WardCode

from broadcaster.reorg import service
from broadcaster.reorg.service import NewUnit, Plan, Step
from kernel.changes import Actor, commit_change
from schedules.models import ScheduleRule
from stations import tan_an
from stations.models import AreaLevel, Reorganisation, ReorgStatus

EFFECTIVE = dt.date(2025, 7, 1)
PROVINCE_CODE = "tay-ninh"
PROVINCE_STAT = 80

#: new ward code -> (statistics code, the registry units merged into it)
WARDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "tn-phuong-long-an": (
        27694,
        (
            "phuong-1",
            "phuong-2",
            "phuong-3",
            "phuong-4",
            "phuong-5",
            "phuong-6",
            "xa-huong-tho-phu",
        ),
    ),
    "tn-phuong-tan-an": (
        27712,
        ("phuong-7", "xa-binh-tam", "xa-nhon-thanh-trung", "xa-an-vinh-ngai"),
    ),
    "tn-phuong-khanh-hau": (27715, ("phuong-khanh-hau", "phuong-tan-khanh", "xa-loi-binh-nhon")),
}

#: the relay rules of the city step, which ends with the city level
CITY_RULES = ("tan-an:chain:morning:tan-an", "tan-an:chain:evening:tan-an")


def province_name() -> str:
    province = Province.from_code(ProvinceCode(PROVINCE_STAT))
    return f"Tỉnh {province.name}"


def plan(*, end_rules: tuple[str, ...] = ()) -> Plan:
    """Tân An city's wards and communes → three wards of Tây Ninh; the city dissolved
    (and with it, when given, the city step of the relay chain: `CITY_RULES`)."""
    create = [
        NewUnit(
            code=PROVINCE_CODE,
            name=province_name(),
            level=AreaLevel.PROVINCE,
            stat_code=str(PROVINCE_STAT),
        )
    ]
    steps = []
    for code, (stat, sources) in WARDS.items():
        ward = Ward.from_code(WardCode(stat))
        assert int(ward.province_code) == PROVINCE_STAT
        create.append(
            NewUnit(
                code=code,
                name=ward.name,
                level=AreaLevel.WARD,
                parent=PROVINCE_CODE,
                stat_code=str(stat),
            )
        )
        steps.append(Step(kind="merge", sources=list(sources), into=code))
    steps.append(Step(kind="dissolve", unit=tan_an.CITY_CODE, into=PROVINCE_CODE))
    return Plan(
        name="Sắp xếp đơn vị hành chính 2025 – Tân An (Tây Ninh)",
        effective=EFFECTIVE,
        create=create,
        steps=steps,
        end_rules=list(end_rules),
    )


def load_as_of(factory: sessionmaker[Session], as_of: dt.date) -> bool:
    """Bring the seeded (pre-2025) structure to the one of `as_of`: from 1 July 2025, the
    three wards of Tây Ninh, no city level and no city step in the relay chain.  Answer
    whether the change was applied now (False: not due, or already applied)."""
    if as_of < EFFECTIVE:
        return False
    with factory() as session:
        done = session.scalar(
            select(Reorganisation.id).where(
                Reorganisation.effective == EFFECTIVE, Reorganisation.status == ReorgStatus.APPLIED
            )
        )
        if done is not None:
            return False
        present = set(
            session.scalars(select(ScheduleRule.key).where(ScheduleRule.key.in_(CITY_RULES)))
        )
        record, effect = service.apply(
            session, plan(end_rules=tuple(k for k in CITY_RULES if k in present)), by="system"
        )
        commit_change(
            session,
            Actor.system(),
            "area.reorganise",
            "area_reorganisation",
            [str(record.id)],
            after=effect.as_dict(),
        )
    return True
