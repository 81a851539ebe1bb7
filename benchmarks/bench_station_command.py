"""Station command benchmark: what one simulated station spends on a city-wide play, the
moment it arrives, beside what a bare client spends on its reply, in the same run.

A simulator process runs hundreds of stations on one core, and a group command reaches
all of them at once: each station's handling of it (parse, checks, its RECEIVED ack
spooled to its flash, the play scheduled) is paid one station after the other, so it is
what spreads the stations' RECEIVED times in ``bench_broadcast.py`` beyond the bare
clients'. This measures it alone, with no broker and no network (the stations are
offline, so the ack stays in the spool, as it does before a publish), for ``--stations``
stations on the same play (media cached, start in the future, as an emergency with a lead):

- ``station_us``: microseconds per station for ``Station._on_command`` and the play's
  first step (until it sleeps to its start), median and worst of ``--rounds`` rounds;
- ``bare_us``: per station, the bare clients' handler (``bench_broadcast.bare_reply``:
  ``json.loads`` of the command, ``json.dumps`` of the reply) on the same bytes;
- ``ratio``: the two medians.

The first round (parsing the command once per process, the files' first writes) is
reported apart as ``first_round_us``.

    python benchmarks/bench_station_command.py --out FILE.json [--stations 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_broadcast import bare_reply  # noqa: E402
from machine import describe_machine  # noqa: E402
from timing import report_json  # noqa: E402

from firmware_bridge.messages import format_timestamp  # noqa: E402
from firmware_bridge.mqtt_url import MqttUrl  # noqa: E402
from firmware_bridge.simulator.clock import SimClock  # noqa: E402
from firmware_bridge.simulator.config import FleetContext, SimSettings, StationSpec  # noqa: E402
from firmware_bridge.simulator.media import MediaFetcher  # noqa: E402
from firmware_bridge.simulator.station import Station  # noqa: E402
from firmware_bridge.topics import Topics  # noqa: E402

MEDIA = b"\x00" * 4096


def play_command(index: int, sha256: str) -> bytes:
    """A city-wide emergency's play, as the service sends it (start 2 s ahead)."""
    now = datetime.now(UTC)
    return json.dumps(
        {
            "v": 1,
            "cmd_id": f"c-{index:016x}",
            "type": "play",
            "issued_at": format_timestamp(now),
            "not_after": format_timestamp(now + timedelta(seconds=300)),
            "body": {
                "priority": 1,
                "title": "Bench khẩn cấp",
                "media": {
                    "url": "http://127.0.0.1:9/media/bench",
                    "sha256": sha256,
                    "bytes": len(MEDIA),
                    "duration_ms": 5000,
                },
                "start_at": format_timestamp(now + timedelta(seconds=2)),
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


async def measure(n: int, rounds: int, state_dir: Path) -> dict[str, Any]:
    sha256 = hashlib.sha256(MEDIA).hexdigest()
    fetcher = MediaFetcher()
    executor = ThreadPoolExecutor(max_workers=1)
    ctx = FleetContext(
        settings=SimSettings(),
        topics=Topics(),
        url=MqttUrl.parse("mqtt://127.0.0.1:9"),
        clock=SimClock(),
        state_dir=state_dir,
        fetcher=fetcher,
        executor=executor,
        connect_slots=asyncio.Semaphore(1),
    )
    stations = []
    for i in range(n):
        station = Station(StationSpec(sid=f"bench-{i:05d}"), ctx, set(), random.Random(i))
        station.store.media_path(sha256).write_bytes(MEDIA)
        station.alive = True  # booted, not connected: its acks wait in its spool
        stations.append(station)
    station_us: list[float] = []
    bare_us: list[float] = []
    try:
        for index in range(rounds + 1):
            payload = play_command(index, sha256)
            started = time.perf_counter()
            for station in stations:
                station._on_command(payload)
            for _ in range(2):  # each play's first step, up to its sleep until the start
                await asyncio.sleep(0)
            station_us.append((time.perf_counter() - started) / n * 1e6)
            acked = sum(s._ack_status.get(f"c-{index:016x}") == "RECEIVED" for s in stations)
            if acked != n:
                raise RuntimeError(f"round {index + 1}: {acked} of {n} stations acked RECEIVED")
            started = time.perf_counter()
            for i in range(n):
                bare_reply(i, payload)
            bare_us.append((time.perf_counter() - started) / n * 1e6)
    finally:
        for station in stations:
            for task in list(station._tasks):
                task.cancel()
            station.store.close()
        await asyncio.sleep(0)
        await fetcher.aclose()
        executor.shutdown()
    station_median = statistics.median(station_us[1:])
    bare_median = statistics.median(bare_us[1:])
    return {
        "stations": n,
        "rounds": rounds,
        "first_round_us": round(station_us[0], 1),
        "station_us": {
            "median": round(station_median, 1),
            "max": round(max(station_us[1:]), 1),
        },
        "bare_us": {"median": round(bare_median, 1), "max": round(max(bare_us[1:]), 1)},
        "ratio": round(station_median / bare_median, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stations", type=int, default=500, help="as one simulator process")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-station-command-") as tmp:
        result = asyncio.run(measure(args.stations, args.rounds, Path(tmp)))
    report_json({"benchmark": "station_command", "machine": describe_machine(), **result}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
