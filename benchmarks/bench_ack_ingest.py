"""The ack path alone: a broadcast's acknowledgements from N stations stored, beside a
bare SQL loop that stores the same statuses, in the same run (issue 14 item 2).

1. ``broadcaster seed tan-an`` into a fresh database (SQLite file by default,
   ``--database-url`` for PostgreSQL), grown to N stations, each with its state row (as
   after its first birth); one play command with a
   target per station (``outbox.create``), as a city-wide broadcast stores it.
2. The service's ingest (``dispatch.ingest.Ingestor``, what the bridge's consumer thread
   calls) is handed N RECEIVED, then N IN_PROGRESS, then N SUCCEEDED acks, in batches
   of ``--batch`` (the bridge's ``batch_max``, 500): the wall and CPU time of each pass,
   and every target checked SUCCEEDED at the end.
3. Baseline: the same 3 x N status changes written by a bare loop: one executemany
   ``UPDATE command_targets SET status, updated_at WHERE command_id AND station_id``
   per batch, one commit per batch, on the same database.

4. A reconnect storm (the broker restarted): every station's birth handed to the same
   ingest in batches of ``--batch`` (``births``), beside a bare loop that stores the same
   connections (``births_baseline``: per batch one executemany UPDATE of the stations'
   state rows and one executemany INSERT of their connection rows, one commit).  No
   broadcast is in flight, so no station has a play to take again.

This is the part of "API call -> every station's ack stored" that is the service's own
(no broker, no simulator), so it can be compared across code versions on a busy
machine: ``cpu_s`` is the process's CPU time, which other jobs do not inflate much.

    python benchmarks/bench_ack_ingest.py --sizes 1000,10000 --out FILE.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import bindparam, func, select, update  # noqa: E402
from timing import report_json  # noqa: E402

from broadcaster import db  # noqa: E402
from broadcaster.dispatch import outbox  # noqa: E402
from broadcaster.dispatch.ingest import Ingestor  # noqa: E402
from broadcaster.dispatch.models import CommandTarget, TargetStatus  # noqa: E402
from firmware_bridge.inbound import Inbound  # noqa: E402
from firmware_bridge.messages import Ack, StationState  # noqa: E402
from firmware_bridge.topics import TopicKind, Topics  # noqa: E402
from stations import live  # noqa: E402
from stations.models import Station, StationConnection  # noqa: E402
from stations.models import StationState as StateRow  # noqa: E402

STATUSES = ("RECEIVED", "IN_PROGRESS", "SUCCEEDED")
#: the connection number of the storm's births (the bare loop's are 0)
BDSEQ = 7


def prepare(database_url: str, n: int, workdir: Path) -> tuple[list[tuple[int, str]], str, int]:
    """Seeded database with N stations and one command to all; ((id, sid)..., cmd_id,
    command id)."""
    from fleet_seed import add_bench_stations

    from tests.support.service import run_cli, service_env

    env = service_env(
        database_url=database_url,
        mqtt_url="mqtt://127.0.0.1:1",
        media_dir=workdir / "media",
        public_base_url="http://127.0.0.1:1",
    )
    run_cli(["seed", "tan-an"], env, timeout_s=600)
    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    try:
        with db.session_scope(factory) as session:
            add_bench_stations(session, n, ["file"])
        with db.session_scope(factory) as session:  # connected stations have a state row
            for station_id in session.scalars(select(Station.id)):
                live.state_of(session, station_id)
        with db.session_scope(factory) as session:
            stations = [
                (int(i), str(s))
                for i, s in session.execute(select(Station.id, Station.sid).order_by(Station.id))
            ]
            now = dt.datetime.now(dt.UTC)
            command = outbox.create(
                session,
                type="play",
                body={},
                station_ids=[i for i, _ in stations],
                not_after=now + dt.timedelta(hours=1),
                created_by="bench",
                now=now,
            )
            command.published_at = now
            cmd_id, command_id = command.cmd_id, command.id
    finally:
        engine.dispose()
    return stations, cmd_id, command_id


def through_ingest(
    database_url: str, stations: list[tuple[int, str]], cmd_id: str, batch: int
) -> dict[str, Any]:
    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    ingest = Ingestor(factory)
    topics = Topics()
    out: dict[str, Any] = {}
    try:
        for status in STATUSES:
            now = dt.datetime.now(dt.UTC)
            messages = [
                Inbound(
                    sid=sid,
                    kind=TopicKind.ACK,
                    message=Ack(cmd_id=cmd_id, status=status, at=now),  # type: ignore[arg-type]
                    topic=topics.ack(sid),
                    received_at=now,
                )
                for _, sid in stations
            ]
            wall, cpu = time.perf_counter(), time.process_time()
            for first in range(0, len(messages), batch):
                ingest(messages[first : first + batch])
            out[status] = {
                "wall_s": round(time.perf_counter() - wall, 3),
                "cpu_s": round(time.process_time() - cpu, 3),
            }
        with factory() as session:
            done = session.scalar(
                select(func.count())
                .select_from(CommandTarget)
                .where(CommandTarget.status == TargetStatus.SUCCEEDED)
            )
        out["succeeded"] = int(done or 0)
        now = dt.datetime.now(dt.UTC)
        births = [
            Inbound(
                sid=sid,
                kind=TopicKind.STATE,
                message=StationState(
                    online=True, bdseq=BDSEQ, at=now, firmware="bench", model="bench"
                ),
                topic=topics.state(sid),
                received_at=now,
            )
            for _, sid in stations
        ]
        wall, cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(births), batch):
            ingest(births[first : first + batch])
        out["births"] = {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
        }
        with factory() as session:
            out["online"] = int(
                session.scalar(
                    select(func.count()).select_from(StateRow).where(StateRow.bdseq == BDSEQ)
                )
                or 0
            )
        out["counters"] = ingest.stats()
    finally:
        engine.dispose()
    out["total_wall_s"] = round(sum(out[s]["wall_s"] for s in STATUSES), 3)
    out["total_cpu_s"] = round(sum(out[s]["cpu_s"] for s in STATUSES), 3)
    return out


def bare_loop(
    database_url: str, stations: list[tuple[int, str]], command_id: int, batch: int
) -> dict[str, Any]:
    """The same status changes by executemany UPDATE, one commit per batch (ending
    where it began: PENDING)."""
    engine = db.make_engine(database_url)
    table = CommandTarget.__table__
    statement = (
        update(table)
        .where(table.c.command_id == bindparam("b_command"))
        .where(table.c.station_id == bindparam("b_station"))
        .values(status=bindparam("b_status"), updated_at=bindparam("b_now"))
    )
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        for status in (TargetStatus.RECEIVED, TargetStatus.IN_PROGRESS, TargetStatus.PENDING):
            now = dt.datetime.now(dt.UTC)
            for first in range(0, len(stations), batch):
                rows = [
                    {"b_status": status, "b_now": now, "b_command": command_id, "b_station": i}
                    for i, _ in stations[first : first + batch]
                ]
                with engine.begin() as conn:
                    conn.execute(statement, rows)
    finally:
        engine.dispose()
    return {
        "total_wall_s": round(time.perf_counter() - wall, 3),
        "total_cpu_s": round(time.process_time() - cpu, 3),
    }


def bare_births(database_url: str, stations: list[tuple[int, str]], batch: int) -> dict[str, Any]:
    """The stations' births stored by a bare loop: per batch, one executemany UPDATE of
    their state rows and one executemany INSERT of a connection row each, one commit."""
    engine = db.make_engine(database_url)
    states = StateRow.__table__
    connections = StationConnection.__table__
    set_online = (
        update(states)
        .where(states.c.station_id == bindparam("b_station"))
        .values(
            online=True,
            bdseq=bindparam("b_bdseq"),
            online_since=bindparam("b_now"),
            offline_since=None,
            last_seen=bindparam("b_now"),
            firmware="bench",
            model="bench",
        )
    )
    now = dt.datetime.now(dt.UTC)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        for first in range(0, len(stations), batch):
            part = stations[first : first + batch]
            with engine.begin() as conn:
                conn.execute(
                    set_online, [{"b_station": i, "b_bdseq": 0, "b_now": now} for i, _ in part]
                )
                conn.execute(
                    connections.insert(),
                    [{"station_id": i, "bdseq": 0, "online_at": now} for i, _ in part],
                )
    finally:
        engine.dispose()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{workdir}/broadcaster.db"
    stations, cmd_id, command_id = prepare(url, n, workdir)
    # the baseline first, on the PENDING targets, leaving them PENDING for the service
    baseline = bare_loop(url, stations, command_id, args.batch)
    births_baseline = bare_births(url, stations, args.batch)
    service = through_ingest(url, stations, cmd_id, args.batch)
    assert service["succeeded"] == len(stations), service
    assert service["online"] == len(stations), service
    return {
        "stations": len(stations),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "ingest": service,
        "baseline": baseline,
        "ratio_wall": round(service["total_wall_s"] / max(baseline["total_wall_s"], 1e-3), 1),
        "ratio_cpu": round(service["total_cpu_s"] / max(baseline["total_cpu_s"], 1e-3), 1),
        "acks_per_s": round(3 * len(stations) / max(service["total_wall_s"], 1e-3)),
        "births_baseline": births_baseline,
        "ratio_births_wall": round(
            service["births"]["wall_s"] / max(births_baseline["wall_s"], 1e-3), 1
        ),
        "births_per_s": round(len(stations) / max(service["births"]["wall_s"], 1e-3)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--batch", type=int, default=500, help="the bridge's batch_max")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default SQLite)")
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "ack_ingest", "batch": args.batch, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            run = run_size(size, args, Path(tmp) / f"n{size}")
            report["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    report_json(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
