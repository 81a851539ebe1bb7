"""A city-wide emergency's API call on a database with history, beside the same call on
the fresh database in the same run: plays keyed command first (migration 0022) and
station first (before it).  SQLite file, the service in-process.

A broadcast stores a command target and a play per station.  An index keyed station
first takes each of those rows at a different place (next to that station's older
rows), so the pages the call rewrites, and its time, grow with the history; 0022 keys a
broadcast's plays command first (one run of the index).

1. ``broadcaster seed tan-an`` into a fresh SQLite file, grown to ``--stations`` (108 by
   default: Tân An), copied; the copy is taken back to the key before 0022 (``alembic
   downgrade 0021_h13snd``) while its plays table is small.
2. For each key: the service as an in-process ASGI app (``--role api``: no MQTT; not
   migrated, so the copy keeps the old key); ``fresh_KEY``: after ``--warmup`` calls,
   ``--calls`` emergencies to the whole city (``POST /api/v1/broadcasts``, ``{"areas":
   ["tan-an"]}``, the relay fallback asset), each timed (wall, median and p90) with the
   pages it wrote to the write-ahead log (emptied before each call: ``PRAGMA
   wal_checkpoint(TRUNCATE)``); then ``--history`` more broadcasts through the same API,
   each database growing its own indexes; then ``history_KEY`` measured as ``fresh_KEY``.

Each call's ``handover``: from the call to the route handing the stored command to the
publisher (``wake``; its per-station rows are written after it, `broadcaster.dispatch.
staged`), beside the whole call.

Ratios: ``ratio_history_vs_fresh_KEY``, each history figure over the same key's fresh one
(the baseline, same run); ``ratio_command_first_vs_station_first`` at the same history.

    python benchmarks/bench_broadcast_history.py --out FILE.json [--history 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_broadcast import fill_registry  # noqa: E402
from machine import describe_machine  # noqa: E402
from timing import report_json  # noqa: E402

from alembic import command  # noqa: E402
from broadcaster import db  # noqa: E402
from broadcaster.dispatch.models import StagedRows  # noqa: E402
from tests.support.service import run_cli, service_env  # noqa: E402

#: the last revision with the plays keyed station first
BEFORE_0022 = "0021_h13snd"
#: header and frame sizes of SQLite's write-ahead log (4 KiB pages)
WAL_HEADER, FRAME_HEADER = 32, 24


def wal_pages(path: Path, page_size: int) -> int:
    wal = path.with_name(path.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, (size - WAL_HEADER) // (FRAME_HEADER + page_size))


#: when the route handed each command to the publisher (`handover_times`)
HANDED: list[float] = []


def handover_times() -> None:
    """Record when the broadcast route calls ``wake`` (the hand-over to the publisher)."""
    from broadcaster.dispatch import router

    handed_over = router.wake

    def wake(app: Any, ready: Any = ()) -> None:
        HANDED.append(time.perf_counter())
        handed_over(app, ready=ready)

    router.wake = wake


def measure(post: Callable[[], None], database: Path, calls: int, warmup: int) -> dict[str, Any]:
    """``calls`` timed calls (after ``warmup``), each after the log was emptied."""
    bare = sqlite3.connect(str(database), isolation_level=None)
    try:
        page_size = int(bare.execute("PRAGMA page_size").fetchone()[0])
        for _ in range(warmup):
            post()
        walls, handovers, pages = [], [], []
        for _ in range(calls):
            bare.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            HANDED.clear()
            start = time.perf_counter()
            post()
            walls.append(time.perf_counter() - start)
            handovers.append(HANDED[0] - start)
            pages.append(wal_pages(database, page_size))
    finally:
        bare.close()
    walls.sort()
    handovers.sort()
    return {
        "calls": calls,
        "median_ms": round(1000 * statistics.median(walls), 2),
        "p90_ms": round(1000 * walls[int(0.9 * (len(walls) - 1))], 2),
        "handover_median_ms": round(1000 * statistics.median(handovers), 2),
        "handover_p90_ms": round(1000 * handovers[int(0.9 * (len(handovers) - 1))], 2),
        "wal_pages_median": int(statistics.median(pages)),
        "wal_kib_median": round(statistics.median(pages) * page_size / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stations", type=int, default=108)
    parser.add_argument("--history", type=int, default=2000, help="broadcasts stored before")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from broadcaster.app import create_app
    from broadcaster.runtime import Role
    from broadcaster.settings import Settings

    report: dict[str, Any] = {"benchmark": "broadcast_history", "machine": describe_machine()}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        database = work / "broadcaster.db"
        url = f"sqlite:///{database}"
        env = service_env(
            database_url=url,
            mqtt_url="mqtt://127.0.0.1:1",
            media_dir=work / "media",
            public_base_url="http://127.0.0.1:1",
            extra={"BROADCASTER_SPEECH_WARM_UP": "false"},
        )
        run_cli(["seed", "tan-an"], env, timeout_s=600)
        token, sids, fallback = fill_registry(url, args.stations)
        os.environ.update(env)
        body = {
            "targets": {"areas": ["tan-an"]},
            "content": {"asset_id": fallback["id"]},
            "tier": "emergency",
        }
        headers = {"Authorization": f"Bearer {token}"}

        report["stations"] = len(sids)
        with contextlib.closing(sqlite3.connect(str(database), isolation_level=None)) as bare:
            bare.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        # the same registry twice: one database taken back to the key before 0022 while
        # its plays table is still small, so each grows its own history
        before = work / "before-0022.db"
        shutil.copyfile(database, before)
        engine = db.make_engine(f"sqlite:///{before}")
        try:
            command.downgrade(db.alembic_config(engine), BEFORE_0022)
            # the later migrations went with it; only 0022 is compared: 0023's table again
            StagedRows.__table__.create(engine)
        finally:
            engine.dispose()
        handover_times()
        for key, path in (("command_first", database), ("station_first", before)):
            settings = Settings(database_url=f"sqlite:///{path}")
            # migrate=False: the copy stays at its revision (the key before 0022)
            with TestClient(create_app(settings, role=Role.API, migrate=False)) as client:

                def post() -> None:
                    client.post("/api/v1/broadcasts", json=body, headers=headers).raise_for_status()

                report[f"fresh_{key}"] = measure(post, path, args.calls, args.warmup)
                started = time.perf_counter()
                for _ in range(args.history):
                    post()
                report[f"history_stored_s_{key}"] = round(time.perf_counter() - started, 1)
                report[f"history_{key}"] = measure(post, path, args.calls, args.warmup)
            with contextlib.closing(sqlite3.connect(str(path))) as bare:
                report[f"plays_{key}"] = bare.execute("SELECT count(*) FROM plays").fetchone()[0]
            for name in (f"fresh_{key}", f"history_{key}"):
                print(name, json.dumps(report[name]), file=sys.stderr, flush=True)
    for key in ("command_first", "station_first"):
        fresh, aged = report[f"fresh_{key}"], report[f"history_{key}"]
        report[f"ratio_history_vs_fresh_{key}"] = {
            "median_ms": round(aged["median_ms"] / fresh["median_ms"], 2),
            "handover_median_ms": round(
                aged["handover_median_ms"] / fresh["handover_median_ms"], 2
            ),
            "wal_pages": round(aged["wal_pages_median"] / fresh["wal_pages_median"], 2),
        }
    new, old = report["history_command_first"], report["history_station_first"]
    report["ratio_command_first_vs_station_first"] = {
        "median_ms": round(new["median_ms"] / old["median_ms"], 2),
        "wal_pages": round(new["wal_pages_median"] / old["wal_pages_median"], 2),
    }
    report_json(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
