"""Playlist-builder benchmark: one day (and the two-day desired window) for 108, 1,000
and 10,000 stations, on a Tân An-like rule set.

The rule set, seeded so every run is the same:

* the 05:00 and 17:00 relay chains on every station: VOV (30 min), the provincial
  station (15 min), the city station (15 min), priority 5;
* per commune (about 8 stations each, like Tân An's 108 stations in 14 wards/communes):
  its own programme at 06:00 and 18:00 (normal, 30 min tolerance), a weekly farming
  programme, a lunar 1st/15th programme, and one extra bulletin at a random time (random
  tolerance) that sometimes runs into a relay -> shifted or dropped;
* per district of about 10 communes: two priority bulletins at random times;
* one emergency bulletin for one district at 17:10, over the evening relay;
* a filler music hour at 11:00 on every station.

Usage: ``python benchmarks/bench_playlist_builder.py --out FILE.json``
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from timing import report_json, timed

from kernel.local_time import SITE_ZONE
from kernel.tiers import Tier
from schedules.builder import build_day, build_days
from schedules.plans import MediaRef, ProgrammeItemSpec, ProgrammeSpec, RuleSpec, StreamRef
from schedules.recurrence import parse_recurrence

FILLER, NORMAL, PRIORITY, EMERGENCY = (
    Tier.FILLER.priority,
    Tier.NORMAL.priority,
    Tier.PRIORITY.priority,
    Tier.EMERGENCY.priority,
)
TZ = SITE_ZONE
DAY = date(2026, 11, 26)  # a Thursday
SIZES = (108, 1_000, 10_000)
STATIONS_PER_COMMUNE = 8
COMMUNES_PER_DISTRICT = 10
MIN = 60_000


def _media(asset_id: int, minutes: float) -> MediaRef:
    ms = int(minutes * MIN)
    return MediaRef(asset_id, f"{asset_id:064x}", 64_000 * int(minutes * 60) + 1, ms)


def _file(asset_id: int, title: str, minutes: float) -> ProgrammeItemSpec:
    return ProgrammeItemSpec("file", title, int(minutes * MIN), media=_media(asset_id, minutes))


def _relay(source_id: int, title: str, minutes: float) -> ProgrammeItemSpec:
    return ProgrammeItemSpec(
        "relay",
        title,
        int(minutes * MIN),
        stream=StreamRef(source_id, f"http://relay.example/src/{source_id}"),
        fallback=_media(900_000 + source_id, 5),
    )


def _gap(minutes: float) -> ProgrammeItemSpec:
    return ProgrammeItemSpec("gap", "", int(minutes * MIN))


def rule_set(n_stations: int, seed: int = 2026) -> tuple[list[RuleSpec], list[ProgrammeSpec]]:
    """A Tân An-like rule set for ``n_stations`` stations (ids 1..n)."""
    rnd = random.Random(seed)
    stations = list(range(1, n_stations + 1))
    communes = [
        stations[i : i + STATIONS_PER_COMMUNE] for i in range(0, n_stations, STATIONS_PER_COMMUNE)
    ]
    districts = [
        [s for commune in communes[i : i + COMMUNES_PER_DISTRICT] for s in commune]
        for i in range(0, len(communes), COMMUNES_PER_DISTRICT)
    ]
    programmes: list[ProgrammeSpec] = [
        ProgrammeSpec(1, "Tiếp sóng VOV", (_relay(1, "VOV1 Thời sự", 30),)),
        ProgrammeSpec(2, "Tiếp sóng Đài Long An", (_relay(2, "Đài PT-TH Long An", 15),)),
        ProgrammeSpec(3, "Tiếp sóng Đài Tân An", (_relay(3, "Đài TP Tân An", 15),)),
        ProgrammeSpec(4, "Nhạc nhẹ", (_file(4, "Nhạc nhẹ", 60),)),
    ]
    rules: list[RuleSpec] = []
    created = datetime(2026, 1, 5, 8, 0)
    all_stations = frozenset(stations)
    next_rule = 1

    def add(
        pid: int, targets: frozenset[int], when: dict[str, object], priority: int, **kw: object
    ) -> None:
        nonlocal next_rule
        rules.append(
            RuleSpec(
                id=next_rule,
                title=f"Lịch {next_rule}",
                programme_id=pid,
                station_ids=targets,
                priority=priority,
                order=int(kw.get("order", 0)),  # type: ignore[call-overload]
                created_at=created,
                recurrence=parse_recurrence({"when": when}),
                shift_tolerance_s=int(kw.get("tolerance", 0)),  # type: ignore[call-overload]
                volume=None,
            )
        )
        next_rule += 1

    for pid, times in ((1, ["05:00", "17:00"]), (2, ["05:30", "17:30"]), (3, ["05:45", "17:45"])):
        add(pid, all_stations, {"kind": "daily", "times": times}, PRIORITY, order=pid)
    add(4, all_stations, {"kind": "daily", "times": ["11:00"]}, FILLER)

    next_pid = 10
    for index, commune in enumerate(communes):
        targets = frozenset(commune)
        own, farming, lunar, extra = next_pid, next_pid + 1, next_pid + 2, next_pid + 3
        next_pid += 4
        programmes += [
            ProgrammeSpec(
                own,
                f"Chương trình xã {index}",
                (_file(own, "Bản tin xã", 15), _gap(1), _file(own + 1, "Nhạc", 5)),
            ),
            ProgrammeSpec(farming, f"Khuyến nông {index}", (_file(farming, "Mô hình", 20),)),
            ProgrammeSpec(lunar, f"Rằm - mùng một {index}", (_file(lunar, "Tuyên truyền", 10),)),
            ProgrammeSpec(
                extra, f"Thông báo {index}", (_file(extra, "Thông báo", rnd.randint(5, 20)),)
            ),
        ]
        add(own, targets, {"kind": "daily", "times": ["06:00", "18:00"]}, NORMAL, tolerance=1800)
        weekdays = rnd.sample(["MO", "TU", "WE", "TH", "FR", "SA", "SU"], 3)
        add(farming, targets, {"kind": "weekly", "weekdays": weekdays, "times": ["19:00"]}, NORMAL)
        add(lunar, targets, {"kind": "lunar", "days": [1, 15], "times": ["19:30"]}, NORMAL)
        at = f"{rnd.randint(5, 19):02d}:{rnd.choice([0, 10, 15, 20, 30, 40, 50]):02d}"
        add(
            extra,
            targets,
            {"kind": "daily", "times": [at]},
            NORMAL,
            order=1,
            tolerance=rnd.choice([0, 600, 1800, 3600]),
        )
    for index, district in enumerate(districts):
        pid = next_pid
        next_pid += 1
        programmes.append(ProgrammeSpec(pid, f"Bản tin ưu tiên {index}", (_file(pid, "Tin", 10),)))
        for _ in range(2):
            at = f"{rnd.randint(6, 20):02d}:{rnd.choice([0, 5, 30, 55]):02d}"
            add(pid, frozenset(district), {"kind": "daily", "times": [at]}, PRIORITY, order=5)
    programmes.append(ProgrammeSpec(next_pid, "Cảnh báo khẩn cấp", (_file(next_pid, "Bão", 8),)))
    add(next_pid, frozenset(districts[0]), {"kind": "once", "at": f"{DAY}T17:10"}, EMERGENCY)
    return rules, programmes


def run(n: int) -> dict[str, object]:
    rules, programmes = rule_set(n)
    plan = build_day(rules, programmes, DAY, TZ)  # warm-up, and the figures below
    repeat = 5 if n <= 1_000 else 3
    one_day = timed(lambda: build_day(rules, programmes, DAY, TZ), repeat, digits=1)
    window = timed(
        lambda: build_days(rules, programmes, [DAY, date(2026, 11, 27)], TZ), repeat, digits=1
    )
    groups = len({id(items) for items in plan.stations.values()})
    items = sum(len(items) for items in plan.stations.values())
    outcomes = [c.outcome for c in plan.conflicts]
    return {
        "stations": n,
        "rules": len(rules),
        "programmes": len(programmes),
        "station_groups": groups,
        "items_per_day": items,
        "conflicts": len(outcomes),
        "shifted": outcomes.count("shifted"),
        "dropped": outcomes.count("dropped"),
        "build_day": one_day,
        "build_two_days": window,
        "us_per_station": round(one_day["median_ms"] * 1000 / n, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = [run(n) for n in SIZES]
    growth = {
        f"{b['stations']}_vs_{a['stations']}": {
            "stations_x": round(int(b["stations"]) / int(a["stations"]), 1),  # type: ignore[call-overload]
            "time_x": round(
                b["build_day"]["median_ms"] / max(a["build_day"]["median_ms"], 0.1),  # type: ignore[index]
                1,
            ),
        }
        for a, b in itertools.pairwise(results)
    }
    summary = {
        "benchmark": "playlist_builder",
        "day": DAY.isoformat(),
        "timezone": str(TZ),
        "python": sys.version.split()[0],
        "sizes": results,
        "growth": growth,
    }
    report_json(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
