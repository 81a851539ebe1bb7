"""Alarm evaluation cost beside the ingest rate, at 1,000 and 10,000 stations.

In process, on SQLite in a temporary directory (the production shape for one
process), every station online and reporting telemetry every 60 s (so N / 60
messages a second), 2 % of them with an alarm condition (hot amplifier, speaker line):

- ``ingest``: telemetry stored per second through the real ingest path
  (`Ingestor`, batches of ``--batch`` messages) without and with the alarm rules
  hooked in (``after_batch``, as the worker wires it), and the rules' share;
- ``sweep``: the worker's periodic job (every ``BROADCASTER_ALARM_EVAL_INTERVAL_S`` =
  5 s) with a third of the fleet offline: ``due_only`` (what the worker runs: offline
  stations, open alarms, plans pending) beside ``full`` (every station);
- ``budget``: the worker's share of one core spent on alarms at that fleet size:
  N / 60 messages/s × rules per message + one ``due_only`` sweep / 5 s.

    python benchmarks/bench_alarms.py --sizes 1000,10000 --out FILE.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402
from timing import report_json  # noqa: E402

from broadcaster import db  # noqa: E402
from broadcaster.alarms import service  # noqa: E402
from broadcaster.dispatch.ingest import Ingestor  # noqa: E402
from firmware_bridge.client import Inbound  # noqa: E402
from firmware_bridge.messages import Telemetry  # noqa: E402
from firmware_bridge.topics import TopicKind  # noqa: E402
from kernel.db import utcnow  # noqa: E402
from stations import live, tan_an  # noqa: E402
from stations.models import Station, StationState  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_seed import add_bench_stations  # noqa: E402

EVAL_INTERVAL_S = 5.0
TELEMETRY_EVERY_S = 60.0


def setup(tmp: Path, n: int) -> tuple[sessionmaker[Session], list[str]]:
    engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
    db.upgrade(engine)
    factory = db.make_sessionmaker(engine)
    now = utcnow()
    with factory() as session:
        tan_an.load(session)
        add_bench_stations(session, n, ["telemetry_amp"])
        session.commit()
        stations = list(session.execute(select(Station.id, Station.sid)))
        born = {"online": True, "online_since": now, "last_seen": now, "bdseq": 1}
        empty = {"capabilities": [], "missing": [], "faults": []}
        versions = {"desired_version": 0, "desired_published_version": 0}
        session.execute(
            insert(StationState),
            [{"station_id": i, **born, **empty, **versions} for i, _ in stations],
        )
        session.commit()
    return factory, [sid for _, sid in stations]


def telemetry(sids: list[str], seq: int) -> list[Inbound]:
    now = utcnow()
    batch = []
    for i, sid in enumerate(sids):
        faulty = i % 50 == 0
        message = Telemetry.model_validate(
            {
                "seq": seq,
                "at": now,
                "uptime_s": 60 * seq,
                "volume": 70,
                "playing": None,
                "amp_temp_c": 80.0 if faulty else 40.0,
                "speaker_ok": i % 50 != 1,
                "supply_v": 13.6,
                "on_battery": False,
                "storage_free_mb": 3000.0,
                "clock_offset_ms": 3.0,
                "rssi_dbm": -80.0,
            }
        )
        batch.append(Inbound(sid, TopicKind.TELEMETRY, message, f"loa/v1/st/{sid}/telemetry", now))
    return batch


def ingest_rate(ingestor: Ingestor, sids: list[str], batch: int, seq: int) -> float:
    messages = telemetry(sids, seq)
    started = time.perf_counter()
    for i in range(0, len(messages), batch):
        ingestor(messages[i : i + batch])
    return len(messages) / (time.perf_counter() - started)


def sweep(factory: sessionmaker[Session], rounds: int, *, due_only: bool) -> dict[str, Any]:
    times, evaluated = [], 0
    for _ in range(rounds):
        with factory() as session:
            started = time.perf_counter()
            evaluated = service.evaluate(session, utcnow(), due_only=due_only).stations
            session.commit()
            times.append(time.perf_counter() - started)
    return {
        "stations_evaluated": evaluated,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
    }


def measure(n: int, batch: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        factory, sids = setup(Path(tmp), n)
        spent = [0.0]

        def hook(session: Session, ids: set[int]) -> None:
            started = time.perf_counter()
            service.evaluate(session, utcnow(), ids)
            spent[0] += time.perf_counter() - started

        plain = Ingestor(factory)
        hooked = Ingestor(factory, after_batch=hook)
        ingest_rate(plain, sids, batch, 0)  # warm up (state rows, caches)
        without = statistics.median(ingest_rate(plain, sids, batch, s) for s in range(1, 3))
        first = ingest_rate(hooked, sids, batch, 3)  # raises the alarms
        spent[0] = 0.0
        with_rules = statistics.median(ingest_rate(hooked, sids, batch, s) for s in range(4, 6))
        rule_ms = spent[0] / (2 * len(sids)) * 1000
        # a third of the stations go offline: the sweep has work to do
        with factory() as session:
            ids = list(session.scalars(select(Station.id)))[::3]
            for station_id in ids:
                live.record_death(session, station_id, bdseq=1, received_at=utcnow())
            session.commit()
        sweeps = {
            "full": sweep(factory, rounds, due_only=False),
            "due_only": sweep(factory, rounds, due_only=True),
            "interval_s": EVAL_INTERVAL_S,
        }
        with factory() as session:
            counts = service.active_counts(session)
        per_s = n / TELEMETRY_EVERY_S
        share = per_s * rule_ms / 1000 + sweeps["due_only"]["median_s"] / EVAL_INTERVAL_S
        return {
            "stations": n,
            "alarms_open": {s.value: c for s, c in counts.items()},
            "ingest": {
                "batch": batch,
                "stored_per_s_without_rules": round(without),
                "stored_per_s_with_rules": round(with_rules),
                "first_pass_with_rules_per_s": round(first),
                "rules_ms_per_message": round(rule_ms, 3),
                "offered_per_s_at_60s_telemetry": round(per_s, 1),
            },
            "sweep": sweeps,
            "budget": {"core_share": round(share, 3), "within_budget": share < 0.25},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {"alarms": [measure(int(n), args.batch, args.rounds) for n in args.sizes.split(",")]}
    report_json(results, args.out)


if __name__ == "__main__":
    main()
