"""A city-wide emergency's route: resolving its targets and deciding how to publish
(`broadcaster.dispatch.broadcasts.plan_route`, ``{"areas": ["tan-an"]}``), in process on
an SQLite file, beside the bare read of the fleet it resolves in, in the same run.

For each ``--stations`` size: ``broadcaster seed tan-an`` grown to N stations
(`fleet_seed`), every station in step with its plan (so a group broadcast needs no
direct copy, as in the broadcast benchmark once its stations have applied their plans).
Then, ``--calls`` times each (medians, milliseconds):

- ``route_ms``: the route as a broadcast takes it, the fleet kept in memory between
  calls (`stations.targets.FLEETS`);
- ``route_after_change_ms``: the route right after the registry changed (the fleet
  forgotten before each call: read again, as the first broadcast after a change does);
- ``bare_read_ms``: the baseline, the enabled stations' id, area and sid read with the
  sqlite3 module alone (no SQLAlchemy, nothing built from the rows): the least any
  route that reads its fleet pays.

    python benchmarks/bench_targets.py --stations 108,10000 --out FILE.json
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from fleet_seed import add_bench_stations  # noqa: E402
from machine import describe_machine  # noqa: E402
from timing import report_json, timed  # noqa: E402

from broadcaster import db  # noqa: E402
from broadcaster.dispatch import broadcasts  # noqa: E402
from broadcaster.dispatch.schemas import BroadcastCreate  # noqa: E402
from stations import targets  # noqa: E402
from tests.support.service import run_cli  # noqa: E402

CITY_WIDE = {"targets": {"areas": ["tan-an"]}, "content": {"text": "Thử"}, "tier": "emergency"}


def seed(path: Path, n: int) -> str:
    url = f"sqlite:///{path}"
    env = {**os.environ, "BROADCASTER_DATABASE_URL": url, "BROADCASTER_MEDIA_DIR": str(path.parent)}
    run_cli(["seed", "tan-an"], env)
    engine = db.make_engine(url)
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            add_bench_stations(session, n, ["file"])
    finally:
        engine.dispose()
    with sqlite3.connect(path) as con:  # every station has applied the plan it was sent
        con.execute(
            "INSERT INTO station_states (station_id, online, capabilities, desired_version,"
            " missing, faults, desired_published_version, applied_version)"
            " SELECT id, 1, '[]', 1, '[]', '[]', 1, 1 FROM stations"
            " WHERE id NOT IN (SELECT station_id FROM station_states)"
        )
        con.execute("UPDATE station_states SET desired_published_version = 1, applied_version = 1")
    return url


def median_ms(call: Callable[[], object], calls: int) -> float:
    return timed(call, calls, digits=3)["median_ms"]


def measure(n: int, calls: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"fleet-{n}.db"
    url = seed(path, n)
    engine = db.make_engine(url)
    factory = db.make_sessionmaker(engine)
    data = BroadcastCreate.model_validate(CITY_WIDE)
    last: list[broadcasts.Plan] = []  # the latest plan only (what it reached)

    def route() -> None:
        with factory() as session:
            last[:] = [broadcasts.plan_route(session, data.targets)]

    def route_after_change() -> None:
        targets.FLEETS = targets.FleetCache()  # forgotten, as a registry change does
        route()

    con = sqlite3.connect(path)

    def bare_read() -> None:
        con.execute("SELECT id, area_id, sid FROM stations WHERE enabled = 1").fetchall()

    try:
        for _ in range(3):  # statements compiled, pages cached
            route()
            bare_read()
        result = {
            "stations": n,
            "route_ms": median_ms(route, calls),
            "route_after_change_ms": median_ms(route_after_change, calls),
            "bare_read_ms": median_ms(bare_read, calls),
            "reached": len(last[0].stations),
            "direct_copies": len(last[0].direct),
        }
    finally:
        con.close()
        engine.dispose()
    result["ratio_route_vs_bare_read"] = round(result["route_ms"] / result["bare_read_ms"], 2)
    result["ratio_route_after_change_vs_bare_read"] = round(
        result["route_after_change_ms"] / result["bare_read_ms"], 2
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", default="108,10000", help="comma-separated sizes")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        runs = [measure(int(n), args.calls, Path(scratch)) for n in args.stations.split(",") if n]
    report = {"benchmark": "targets", "machine": describe_machine(), "calls": args.calls}
    report_json({**report, "runs": runs}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
