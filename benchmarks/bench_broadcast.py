"""Emergency broadcast benchmark: the real service, a real Mosquitto and N simulated
stations, beside a bare MQTT publish-and-ack loop over the same broker in the same run.

For each size N (default 108, 1,000 and 10,000):

1. Mosquitto with raised limits (``BROKER_LIMITS``); ``broadcaster seed tan-an`` into a
   fresh SQLite file (the 108 Tân An stations and the relay chain, whose fallback
   recording every station keeps in its cache), then N - 108 more stations spread over
   the city's hamlets (``--database-url``: into a fresh schema on that PostgreSQL
   server instead, the province's set-up; ``database`` in the report says which);
   ``broadcaster serve --role all`` as a child process (dynsec off);
   ``python -m firmware_bridge.simulator --processes P`` with the N stations as other
   child processes (P slices, default one per core, so the simulator is not the
   bottleneck; its CPU is not the server's), keeping their "flash" (spool, state, media
   cache) in the work directory beside the service's database (``--sim-flash disk``, the
   default; ``ram`` puts it on the RAM file system, as in the field, where each station
   writes its own flash and not the service's disk). The CPU seconds of every process of the rig
   (service, broker, each simulator process) are recorded during staging
   (``cpu_during_staging``), over each round (``cpu_by_process``) and from the API call
   until the last station's RECEIVED crossed the broker
   (``cpu_until_received_all_broker``, read by the ack watcher the moment it did), so a
   reader can see who was saturated. Setup waits until every station applied its desired
   state and holds the fallback media (so it is subscribed to its groups and plays from
   its cache), as the service sees it.
2. ``--warmup-rounds`` (default 1) then ``--rounds`` emergency broadcasts ``{"targets":
   {"areas": ["tan-an"]}, "content": {"asset_id": <fallback>}, "tier": "emergency"}``
   (one publish on ``grp/all/cmd``), each measured from just before the API call:
   - ``published_broker_s``: until the first copy of the command crossed the broker
     (a subscriber on the group and station command topics): the service's share;
   - ``received_all_broker_s``: until a subscriber on ``st/+/ack`` saw N RECEIVED acks
     (every station has it);
   - ``received_all_stored_s``: until the service had committed N targets at RECEIVED
     or beyond (read from its SQLite file by a WAL reader, which neither waits for nor
     blocks the service, or from PostgreSQL by autocommit reads);
   - ``received_all_api_stream_s``: until the broadcast's server-sent progress stream
     (the dashboard's view, ``GET /api/v1/broadcasts/{id}/events``) said so;
   - ``delivery_spread_s``: max - min of the stations' own RECEIVED ``at`` (when each
     station took the command); ``received_first_station_s`` and
     ``received_last_station_s``: the first and the last of those, from the API call
     (the simulated stations' clocks are this machine's); ``ack_egress_p50_s`` and
     ``ack_egress_max_s``: from a station's own RECEIVED ``at`` to its ack crossing the
     broker (an ack waits in its simulator process while the commands the other
     stations of the process read in the same turn of its event loop are handled);
   - ``start_spread_s``: max - min of the stations' ``play.started`` ``at`` (seen on the
     broker), and the p50/p95/max offset of those starts from the requested
     ``start_at`` (lead time ``--lead-s``);
   - the server process's CPU (100 = one core) and RSS, and its MQTT bridge counters
     (``dropped``: inbound messages lost on a full hand-off queue).
   A count that stops moving for ``STALL_S`` ends its wait (recorded as null).  The
   warm-up rounds are reported apart (``warmup_rounds``) and left out of the medians: a
   service process's first broadcast compiles its SQL statements.
3. The simulator and the service stop; a separate process opens N bare MQTT clients
   (paho on asyncio, the stations' own client stack, no protocol logic) subscribed to
   one group topic; each replies at QoS 1 on its own topic when the group message
   arrives, after as many warm-up rounds. The same bare loop also runs before the
   service starts (``baseline_before``; not with ``--baseline-after-only``), so that a
   shared host that got faster or slower during the service's rounds moves both sides
   of the ratio alike: the baseline's figures are the medians of both halves' rounds
   (each half's own median beside them, ``baseline_before_all_replies_s`` and
   ``baseline_after_all_replies_s``). ``baseline_all_replies_s``: from one QoS 1
   publish until all N replies came back; ``baseline_delivery_spread_s``: max - min of
   the clients' receipt times; ``baseline_reply_egress_p50_s``/``_max_s``: from a
   client's reply time to the reply reaching the publisher (the stations'
   ``ack_egress``); each bare round's ``cpu_until_all_replies``: the CPU the broker, the
   bare clients' process and the benchmark used until then (the stations' rounds'
   ``cpu_until_received_all_broker``).

Each figure is reported beside its baseline with the ratio.  The report's ``machine`` and
``machine_after`` say what the run ran on (``benchmarks/machine.py``: CPU and clock, load,
the machine's CPU shares over the run with steal, installed versions), so runs on
different days can be told apart; each size's ``chain_on_air`` gives the city's time at
its start and end and the seeded relay chain every station plays then, if any (runs in
those hours preempt a relay each round: read them apart). What a size could not do
(a stage timed out) is recorded in ``error`` and the run goes on with the next size.

    python benchmarks/bench_broadcast.py --out FILE.json [--sizes 108,1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from machine import cpu_shares, cpu_state, cpu_times, describe_machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402
from profile_top import SAMPLING_HZ_FILE  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from timing import report_json  # noqa: E402

from firmware_bridge import paho_loop  # noqa: E402
from tests.support.loa import poll  # noqa: E402
from tests.support.process import (  # noqa: E402
    ChildProcess,
    child_pids,
    cpu_seconds,
    cpu_seconds_fine,
    memory_mb,
    python_argv,
    stop_children_on_sigterm,
)

BROKER_LIMITS = [
    "max_connections -1",
    "max_queued_messages 200000",  # default 1000: a burst of 10,000 acks would be dropped
    "max_inflight_messages 0",  # no cap on outgoing QoS 1 in flight per client
    "set_tcp_nodelay true",
]
STALL_S = 20.0  # a count that has not moved for this long will not move any more
GROUP_TOPIC = "bench/grp/all"
REPLY_TOPIC = "bench/reply"


# ----------------------------------------------------------------------------- helpers


def now() -> float:
    return time.time()


def memory(pid: int) -> dict[str, float]:
    rss, peak = memory_mb(pid)
    return {"rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1)}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def ratio(value: Any, base: Any) -> float | None:
    if not isinstance(value, int | float) or not isinstance(base, int | float) or base <= 0:
        return None
    return round(value / base, 1)


def median_of(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 3) if values else None


class ProcWatch:
    """CPU and memory of one process between two marks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = cpu_seconds(pid)
        self._t = time.monotonic()

    def read(self) -> dict[str, float]:
        cpu, t = cpu_seconds(self.pid), time.monotonic()
        out = {"cpu_percent": round(100 * (cpu - self._cpu) / max(t - self._t, 1e-6), 1)}
        out.update(memory(self.pid))
        return out


#: `CpuWatch` reads a window shorter than this from the threads' own run times
FINE_WINDOW_S = 1.0


class CpuWatch:
    """CPU seconds each named process used between construction and :meth:`read` (who
    was saturated: the service, the broker, a simulator process or the benchmark itself,
    whose watchers read every ack). A window under `FINE_WINDOW_S` (a 108-station round's
    lasts about 50 ms) is read to the tenth of a millisecond from the scheduler's
    per-thread run times; a longer one from the process's ticks of 10 ms, which also
    count the threads that ended meanwhile (a thread pool's idle workers do). A process
    that has exited by then reads as null. ``machine``: how the whole machine's CPU time
    went meanwhile (``idle``, ``steal``: a neighbour on the host had the cores)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "benchmark": os.getpid()}
        self._fine = {name: _cpu_or_none(pid, fine=True) for name, pid in self.pids.items()}
        self._cpu = {name: _cpu_or_none(pid) for name, pid in self.pids.items()}
        self._machine = cpu_times()
        self._t = time.monotonic()
        self.marked: dict[str, Any] | None = None  # the last read

    def read(self) -> dict[str, Any]:
        wall = max(time.monotonic() - self._t, 1e-6)
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        fine = wall < FINE_WINDOW_S
        for name, pid in self.pids.items():
            before = (self._fine if fine else self._cpu)[name]
            after = _cpu_or_none(pid, fine=fine)
            if before is None or after is None:
                out[name] = None
                continue
            used = max(after - before, 0.0)
            out[name] = {"cpu_s": round(used, 4), "cpu_percent": round(100 * used / wall, 1)}
        out["machine"] = cpu_shares(self._machine, cpu_times())
        self.marked = out
        return out


#: ``settle``: the service is quiet once it uses less than this share of a core ...
SETTLED_CPU_PERCENT = 15.0
#: ... over this many seconds in a row
SETTLED_FOR_S = 2.0


def settle(pid: int, max_s: float) -> float | None:
    """Wait until the service is quiet (the previous round's acks, events and downloads
    stored), at most ``max_s`` seconds; how long that took, or None if it never was."""
    started = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - started < max_s:
        watch = ProcWatch(pid)
        time.sleep(0.5)
        if watch.read()["cpu_percent"] < SETTLED_CPU_PERCENT:
            quiet_since = quiet_since or time.monotonic() - 0.5
            if time.monotonic() - quiet_since >= SETTLED_FOR_S:
                return round(time.monotonic() - started, 1)
        else:
            quiet_since = None
    return None


def _cpu_or_none(pid: int, *, fine: bool = False) -> float | None:
    try:
        return cpu_seconds_fine(pid) if fine else cpu_seconds(pid)
    except OSError:
        return None


def rig_pids(service_pid: int, broker_pid: int, sim_pid: int) -> dict[str, int]:
    """The processes of the rig by role: service, broker, the simulator's parent and its
    station processes (``simulator-1``...; multiprocessing's resource tracker apart)."""
    pids = {"service": service_pid, "broker": broker_pid, "simulator-main": sim_pid}
    index = 0
    for pid in child_pids(sim_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in cmdline:
            pids["simulator-resource-tracker"] = pid
        else:
            index += 1
            pids[f"simulator-{index}"] = pid
    return pids


def runs_stations(name: str) -> bool:
    """Whether the ``rig_pids`` entry ``name`` is a simulator process running stations."""
    return name[len("simulator-") :].isdigit()


def station_processes(pids: dict[str, int]) -> int:
    """How many of ``rig_pids`` are simulator processes running stations."""
    return sum(runs_stations(name) for name in pids)


# ----------------------------------------------------------------------------- subscriber


class AckWatch:
    """Records RECEIVED and SUCCEEDED acks and play.started events crossing the broker,
    and when the first copy of each command did (on a group or a station topic)."""

    def __init__(self, host: str, port: int) -> None:
        self.received: list[tuple[str, str, float, str]] = []  # cmd_id, sid, seen, station at
        self.succeeded: list[tuple[str, str]] = []  # cmd_id, sid
        self.started: list[tuple[str, str, str]] = []  # cmd_id, sid, station at
        self.commands: dict[str, float] = {}  # cmd_id -> first seen
        self._subscribed = threading.Event()
        # `arm`: a call to make the moment one command's RECEIVED from N stations crossed
        self._armed: tuple[int, Callable[[], object]] | None = None
        self._armed_seen: dict[str, set[str]] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-ackwatch", protocol=mqtt.MQTTv311
        )
        client.max_inflight_messages_set(1000)
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.connect(host, port, keepalive=60)
        client.subscribe(
            [
                ("loa/v1/st/+/ack", 1),
                ("loa/v1/st/+/event", 1),
                ("loa/v1/grp/+/cmd", 1),
                ("loa/v1/st/+/cmd", 1),
            ]
        )
        client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("ack watcher did not subscribe")
        self._client = client

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seen = now()
        payload = msg.payload
        if msg.topic.endswith("/cmd"):
            cmd_id = json.loads(payload).get("cmd_id")
            if isinstance(cmd_id, str):
                self.commands.setdefault(cmd_id, seen)
        elif msg.topic.endswith("/ack"):
            if b'"RECEIVED"' in payload:
                data = json.loads(payload)
                sid = msg.topic.split("/")[3]
                self.received.append((data["cmd_id"], sid, seen, data["at"]))
                if self._armed is not None:
                    self._on_received(data["cmd_id"], sid)
            elif b'"SUCCEEDED"' in payload:
                data = json.loads(payload)
                self.succeeded.append((data["cmd_id"], msg.topic.split("/")[3]))
        elif b"play.started" in payload:
            data = json.loads(payload)
            if data.get("cmd_id"):
                self.started.append((data["cmd_id"], msg.topic.split("/")[3], data["at"]))

    def arm(self, n: int, call: Callable[[], object]) -> None:
        """Make ``call`` (on the watcher's thread) as soon as the RECEIVED of one command
        from ``n`` stations crossed the broker: a round's CPU window then ends when its
        last station's ack did, not when the benchmark, waiting for the API's answer
        first, got round to counting."""
        self._armed_seen = {}
        self._armed = (n, call)

    def _on_received(self, cmd_id: str, sid: str) -> None:
        armed = self._armed
        if armed is None:
            return
        seen = self._armed_seen.setdefault(cmd_id, set())
        seen.add(sid)
        if len(seen) >= armed[0]:
            self._armed = None
            armed[1]()

    def received_for(self, cmd_id: str) -> list[tuple[str, float, str]]:
        return [(sid, seen, at) for c, sid, seen, at in list(self.received) if c == cmd_id]

    def succeeded_for(self, cmd_id: str) -> set[str]:
        return {sid for c, sid in list(self.succeeded) if c == cmd_id}

    def started_for(self, cmd_id: str) -> list[tuple[str, str]]:
        return [(sid, at) for c, sid, at in list(self.started) if c == cmd_id]

    def stop(self) -> None:
        paho_loop.close(self._client)


class StoredCounts:
    """What the service has committed for a command, read straight from its database: an
    SQLite file (a WAL reader: never waits for the service's writers, never blocks them)
    or, with ``--database-url``, PostgreSQL (autocommit reads, which take no locks)."""

    _ANSWERED = ("RECEIVED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED")
    _QUERY = (
        "SELECT t.status, count(*) FROM command_targets t JOIN commands c "
        "ON c.id = t.command_id WHERE c.cmd_id = {} GROUP BY t.status"
    )

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._db: Any
        if url.get_backend_name() == "sqlite":
            assert url.database, "the service's SQLite file"
            self._db = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
            self._query = self._QUERY.format("?")
        else:
            import psycopg

            conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._db = psycopg.connect(conninfo, autocommit=True)
            self._query = self._QUERY.format("%s")

    def counts(self, cmd_id: str) -> dict[str, int]:
        rows = self._db.execute(self._query, (cmd_id,)).fetchall()
        return {str(status): int(count) for status, count in rows}

    def answered(self, cmd_id: str) -> int:
        counts = self.counts(cmd_id)
        return sum(counts.get(s, 0) for s in self._ANSWERED)

    def close(self) -> None:
        self._db.close()


class ProgressStream:
    """The dashboard's view: the broadcast's server-sent progress events; notes when
    ``received`` first reached ``n``."""

    def __init__(self, http: httpx.Client, broadcast_id: int, n: int, t0: float) -> None:
        self.reached_s: float | None = None
        self.last: dict[str, Any] | None = None
        self.error: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(http, broadcast_id, n, t0), daemon=True
        )
        self._thread.start()

    def _run(self, http: httpx.Client, broadcast_id: int, n: int, t0: float) -> None:
        try:
            with http.stream(
                "GET", f"/api/v1/broadcasts/{broadcast_id}/events", timeout=None
            ) as response:
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = json.loads(line[6:])
                    if "received" in data:
                        self.last = data
                        if self.reached_s is None and data["received"] >= n:
                            self.reached_s = round(now() - t0, 3)
                            return
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# ----------------------------------------------------------------------------- the service


def fill_registry(database_url: str, n: int) -> tuple[str, list[str], dict[str, Any]]:
    """N stations (Tân An's 108 and more in its hamlets), an admin token, the sids and
    the fallback asset (id, sha256, bytes, duration_ms)."""
    from fleet_seed import add_bench_stations
    from sqlalchemy import select

    from audio_library.models import MediaAsset
    from broadcaster import db
    from broadcaster.auth import service as auth
    from broadcaster.auth.models import TokenKind
    from broadcaster.auth.schemas import UserCreate
    from kernel.security import Role
    from kernel.signals import plan_changed
    from schedules.seed import FALLBACK_TITLE
    from stations.models import Station

    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    try:
        with db.session_scope(factory) as session:
            add_bench_stations(session, n, ["file", "relay", "sync_start", "telemetry_power"])
            user = auth.create_user(
                session,
                UserCreate(
                    username="bench",
                    password="bench-password-1",
                    role=Role.ADMIN,
                    can_emergency=True,
                ),
            )
            token, _ = auth.issue_token(session, user, kind=TokenKind.SESSION)
            plan_changed(session, "benchmark registry")
        with factory() as session:
            sids = list(session.scalars(select(Station.sid).order_by(Station.sid)))
            asset = session.execute(
                select(
                    MediaAsset.id, MediaAsset.sha256, MediaAsset.bytes, MediaAsset.duration_ms
                ).where(MediaAsset.title == FALLBACK_TITLE)
            ).one()
    finally:
        engine.dispose()
    fallback = {"id": asset[0], "sha256": asset[1], "bytes": asset[2], "duration_ms": asset[3]}
    return token, sids, fallback


def staged_count(database_url: str, sids: set[str]) -> int:
    """Stations online, on their published desired version, with nothing missing."""
    from sqlalchemy import select

    from broadcaster import db
    from kernel.db import READ_ONLY
    from stations.models import Station, StationState

    engine = db.make_engine(database_url)
    try:
        # Read-only: on SQLite a plain connection begins IMMEDIATE and would queue behind
        # (and block) the service's ack writer while 1,000 stations are being staged.
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            rows = conn.execute(
                select(Station.sid, StationState.missing)
                .join(StationState, StationState.station_id == Station.id)
                .where(
                    StationState.online.is_(True),
                    StationState.desired_published_version > 0,
                    StationState.applied_version == StationState.desired_published_version,
                )
            ).all()
    finally:
        engine.dispose()
    return sum(1 for sid, missing in rows if sid in sids and not missing)


def wait_staged(database_url: str, sids: set[str], timeout_s: float) -> int:
    """Until every station is staged, or the count stops moving for a minute."""
    deadline = time.monotonic() + timeout_s
    best, moved = -1, time.monotonic()
    from sqlalchemy.exc import OperationalError

    while time.monotonic() < deadline:
        try:
            count = staged_count(database_url, sids)
        except OperationalError:  # the service holds the write lock longer than we wait
            time.sleep(2)
            continue
        if count >= len(sids):
            return count
        if count > best:
            best, moved = count, time.monotonic()
        elif time.monotonic() - moved > 60:
            return count
        time.sleep(2)
    return staged_count(database_url, sids)


# ----------------------------------------------------------------------------- one size


RoundFn = Callable[..., dict[str, Any]]
#: the rig's processes (service, broker, simulator processes) while rounds run, so a
#: round can record who used the CPU between its API call and the last RECEIVED
RIG_PIDS: dict[str, int] = {}

#: ``--settle-s`` of this benchmark and of those built on it (`rounds_main`)
SETTLE_HELP = (
    "before the first round, wait (at most this long) until the service and each "
    "simulator process are quiet, and after each round until the service is, so each "
    "round measures a settled rig (0: the next round 2 s after the last)"
)

#: py-spy's sampling rate: 100 Hz falls behind on a loaded 2-core machine
PROFILE_HZ = 20


def renice_threads(pid: int, nice: int) -> int:
    """``--service-nice N``: every thread of process ``pid`` at niceness ``N`` (on Linux a
    niceness is a thread's, not a process's; threads started later inherit their
    creator's).  Returns how many threads were set."""
    done = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
            done += 1
    return done


def start_profiler(
    directory: Path | None, pids: dict[str, int], n: int, hz: int = PROFILE_HZ
) -> list[ChildProcess]:
    """``--profile DIR``: py-spy samples the service and each simulator process running
    stations (every thread, ``hz`` a second: ``--profile-hz``, default `PROFILE_HZ`) over
    the rounds into ``DIR/service-N.txt`` and ``DIR/simulator-K-N.txt`` (collapsed
    stacks: speedscope or flamegraph.pl draw them; ``benchmarks/profile_top.py`` lists
    the top functions).  py-spy counts a thread that waits for a core as busy in the
    frame it was preempted in (often right after a system call): when the rig's
    processes outnumber the cores, read self times beside the CPU figures."""
    if directory is None:
        return []
    import shutil

    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SAMPLING_HZ_FILE).write_text(f"{hz}\n")  # for profile_top.py
    profilers = []
    for name, pid in pids.items():
        if name != "service" and not runs_stations(name):
            continue  # the broker, the simulator's parent, multiprocessing's tracker
        out = directory / f"{name}-{n}.txt"
        profilers.append(
            ChildProcess(
                [
                    *(binary, "record", "--pid", str(pid), "--rate", str(hz)),
                    *("--format", "raw", "--output", str(out), "--nonblocking"),
                ],
                log_path=directory / f"py-spy-{name}-{n}.log",
            ).start()
        )
    time.sleep(1.0)  # attached before the first round
    return profilers


def stop_profiler(profilers: list[ChildProcess], result: dict[str, Any]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for profiler in profilers:
        with contextlib.suppress(Exception):
            profiler.wait(60)
        profiler.stop()
    if profilers:
        directory = profilers[0].log_path.parent
        result["profile"] = sorted(str(p) for p in directory.glob(f"*-{result['stations']}.txt"))


def run_size(
    n: int, args: argparse.Namespace, workdir: Path, round_fn: RoundFn | None = None
) -> dict[str, Any]:
    """One size; `round_fn` replaces `broadcast_round` (bench_cap sends CAP alerts)."""
    from tests.support.mosquitto import Mosquitto

    result: dict[str, Any] = {
        "stations": n,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "chain_on_air": {"start": chain_on_air()},
        "setup_s": {},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir / "broker", extra_config=BROKER_LIMITS).start()
    try:
        if not args.baseline_after_only:
            result["baseline_before"] = guarded_baseline(broker, n, args, workdir / "bare-before")
        measure_service(n, args, workdir, broker, result, round_fn or broadcast_round)
        result["baseline"] = guarded_baseline(broker, n, args, workdir / "bare-after")
    finally:
        broker.stop()
    result["chain_on_air"]["end"] = chain_on_air()
    summarise(result)
    return result


def guarded_baseline(
    broker: Any, n: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """`bare_baseline` with ``args``' rounds; its error, recorded, if it failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return bare_baseline(broker, n, args.rounds, workdir, warmups=warmup_rounds(args))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def baseline_rounds(result: dict[str, Any], *halves: str) -> list[dict[str, Any]]:
    """The bare loop's rounds: those run before the service's rounds (unless
    ``--baseline-after-only``) and those run after, so that a host that got faster or
    slower meanwhile moves both sides of the ratio alike; or only ``halves``' rounds
    (``"baseline_before"``, ``"baseline"``)."""
    keys = halves or ("baseline_before", "baseline")
    return [r for key in keys for r in ((result.get(key) or {}).get("rounds") or [])]


def chain_on_air() -> dict[str, Any]:
    """The city's time, and the seeded daily relay chain every station plays then, if any
    (05:00-06:15 and 17:00-18:15: `schedules.seed.CHAINS`).  While one is on air each
    round's emergency preempts a relay at every station (more work for the stations and
    the service than idle stations: the bare clients are idle), so runs at those hours
    are not comparable with runs outside them."""
    from broadcaster.settings import Settings
    from schedules.seed import CHAINS

    local = datetime.now(ZoneInfo(Settings.model_fields["timezone"].default))
    on_air = [chain.name for chain in CHAINS if chain.on_air(local.time())]
    return {
        "city_time": local.isoformat(timespec="seconds"),
        "chain": on_air[0] if on_air else None,
    }


def measure_service(
    n: int,
    args: argparse.Namespace,
    workdir: Path,
    broker: Any,
    result: dict[str, Any],
    round_fn: RoundFn,
) -> None:
    """Setup (seed, registry, service, simulator, staging), then the broadcast rounds."""
    from tests.support.service import ServiceProcess, run_cli

    setup: dict[str, Any] = result["setup_s"]
    databases = contextlib.ExitStack()
    database_url = databases.enter_context(
        service_database(workdir, getattr(args, "database_url", None))
    )
    result["database"] = make_url(database_url).get_backend_name()
    service = ServiceProcess.on_a_free_port(
        database_url=database_url, mqtt_url=broker.url, workdir=workdir
    )
    env = service.env
    env.update(dict(getattr(args, "service_setting", [])))
    sim_state = stations_flash(workdir, n, getattr(args, "sim_flash", None))
    result["simulator_state_dir"] = {"path": str(sim_state), "filesystem": filesystem_of(sim_state)}
    sim = ChildProcess(
        python_argv(
            *("-m", "firmware_bridge.simulator", "--csv", str(workdir / "stations.csv")),
            *("--stations", str(n), "--mqtt-url", broker.url),
            *("--state-dir", str(sim_state), "--no-live", "--seed", "1"),
            *("--processes", str(args.sim_processes)),
            *(("--media-follows",) if getattr(args, "media_follows", False) else ()),
        ),
        log_path=workdir / "simulator.log",
    )
    watch: AckWatch | None = None
    stage = "seed"
    try:
        t = time.monotonic()
        run_cli(["seed", "tan-an"], env)
        token, sids, fallback = fill_registry(database_url, n)
        assert len(sids) == n, f"registry holds {len(sids)} stations, wanted {n}"
        setup["seed_and_registry"] = round(time.monotonic() - t, 1)
        result["fallback_media"] = fallback

        stage = "service start"
        t = time.monotonic()
        service.start()
        service.wait_ready(timeout_s=300, worker="active")
        setup["service_ready"] = round(time.monotonic() - t, 1)

        stage = "simulator start"
        csv_path = workdir / "stations.csv"
        csv_path.write_text("sid\n" + "\n".join(sids) + "\n", encoding="utf-8")
        t = time.monotonic()
        sim.start()
        poll(
            lambda: (
                station_processes(rig_pids(service.pid, broker.pid, sim.pid))
                >= min(args.sim_processes, n)
            ),
            timeout_s=60,
        )
        staging_cpu = CpuWatch(rig_pids(service.pid, broker.pid, sim.pid))
        stage = "stations staged"
        staged = wait_staged(database_url, set(sids), args.setup_timeout_s)
        setup["stations_staged"] = round(time.monotonic() - t, 1)
        result["cpu_during_staging"] = staging_cpu.read()
        result["simulator_processes"] = station_processes(staging_cpu.pids)
        result["staged"] = staged
        if staged < n:
            result["note"] = (
                f"{n - staged} station(s) never showed as staged (applied desired state and "
                "cached media) in the service's database; measured anyway: they are "
                "subscribed to grp/all and get a direct copy of the command"
            )
        if staged < 0.9 * n:
            raise TimeoutError(f"only {staged}/{n} stations staged")
        time.sleep(3)  # let births/reported/telemetry of the connection storm drain
        watch = AckWatch(broker.host, broker.port)

        stage = "broadcast"
        rounds = []
        with httpx.Client(
            base_url=service.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as http:
            stored = StoredCounts(database_url)
            pids = rig_pids(service.pid, broker.pid, sim.pid)
            RIG_PIDS.clear()
            RIG_PIDS.update(pids)
            if getattr(args, "service_nice", 0):
                result["service_nice"] = renice_threads(service.pid, args.service_nice)
            if getattr(args, "settle_s", 0):
                # what the stations and the service still do after staging is not the
                # broadcast's
                result["settled_before_rounds_s"] = {
                    name: settle(pid, args.settle_s)
                    for name, pid in pids.items()
                    if name == "service" or runs_stations(name)
                }
            profiler = start_profiler(
                getattr(args, "profile", None), pids, n, getattr(args, "profile_hz", PROFILE_HZ)
            )
            warmups = warmup_rounds(args)
            for index in range(warmups + args.rounds):
                cpu = CpuWatch(pids)
                one = round_fn(http, watch, stored, service.pid, n, fallback, index, args.lead_s)
                one["cpu_by_process"] = cpu.read()
                time.sleep(2)
                if getattr(args, "settle_s", 0):
                    one["settle_s"] = settle(service.pid, args.settle_s)
                if index < warmups:
                    one["warmup"] = True
                    result.setdefault("warmup_rounds", []).append(one)
                else:
                    rounds.append(one)
            stop_profiler(profiler, result)
            stored.close()
        result["rounds"] = rounds
        result["server_memory_after"] = memory(service.pid)
        result["simulator_memory_after"] = memory(sim.pid)
    except Exception as exc:
        result["error"] = f"{stage}: {type(exc).__name__}: {exc}"
        result["error_trace"] = traceback.format_exc()[-2000:]
    finally:
        if watch is not None:
            watch.stop()
        sim.stop(180)
        service.stop()
        databases.close()
        if not sim_state.is_relative_to(workdir) and not getattr(args, "keep", False):
            shutil.rmtree(sim_state, ignore_errors=True)
        if "error" in result:
            result["service_log_tail"] = service.log_tail(30)
            result["simulator_log_tail"] = sim.output()[-2000:]


@contextlib.contextmanager
def service_database(workdir: Path, server_url: str | None) -> Iterator[str]:
    """The service's database: an SQLite file in the work directory (the city's
    single-machine install) or, with ``--database-url``, a schema of its own on that
    PostgreSQL server (the province's), dropped afterwards."""
    if not server_url:
        yield f"sqlite:///{workdir}/broadcaster.db"
        return
    from tests.support.postgres import own_schema

    with own_schema(server_url, prefix="bench") as url:
        yield url


def broadcast_round(
    http: httpx.Client,
    watch: AckWatch,
    stored: StoredCounts,
    server_pid: int,
    n: int,
    fallback: dict[str, Any],
    index: int,
    lead_s: float,
) -> dict[str, Any]:
    bridge_before = bridge_stats(http)
    server = ProcWatch(server_pid)
    window = CpuWatch(RIG_PIDS)
    watch.arm(n, window.read)
    t0 = now()
    response = http.post(
        "/api/v1/broadcasts",
        json={
            "targets": {"areas": ["tan-an"]},
            "content": {"asset_id": fallback["id"]},
            "tier": "emergency",
            "title": f"Bench khẩn cấp {n} #{index + 1}",
            "expires_in_s": 300,
            "lead_s": lead_s,
        },
    )
    api_s = now() - t0
    response.raise_for_status()
    made = response.json()
    cmd_id, start_at = made["cmd_id"], ts(made["start_at"])
    out: dict[str, Any] = {
        "round": index + 1,
        "route": made["route"],
        "groups": made["groups"],
        "api_call_s": round(api_s, 3),
        # the service's own account of the call, phase by phase (`broadcaster.web.timing`)
        "server_timing_ms": server_timing(response.headers.get("server-timing")),
        "lead_s": lead_s,
        "bridge_before": bridge_before,
    }
    stream = ProgressStream(http, made["id"], n, t0)
    # RECEIVED: crossing the broker (acks seen) and committed by the service (its database);
    # give up on either when it has not moved for STALL_S (messages the service dropped)
    # the watcher read the window when the last RECEIVED crossed (else: now)
    broker_all, stored_all = wait_received(
        watch, stored, cmd_id, n, t0, on_broker_all=lambda: window.marked or window.read()
    )
    out["cpu_until_received_all_broker"] = window.marked
    out["server_until_stored"] = server.read()
    out.update(received_figures(watch, cmd_id, t0, broker_all))
    out["received_stored"] = stored.answered(cmd_id)
    out["received_all_stored_s"] = round(stored_all, 3) if stored_all is not None else None
    # the play: every start, then the end of the round (every final ack stored)
    poll(
        lambda: len(watch.started_for(cmd_id)) >= n,
        timeout_s=max(0.0, start_at - now()) + 60,
    )
    starts = [ts(at) for _, at in watch.started_for(cmd_id)]
    offsets = [s - start_at for s in starts]
    out["started"] = len(starts)
    out["start_spread_s"] = round(max(starts) - min(starts), 3) if starts else None
    out["start_offset_p50_s"] = pct(offsets, 50)
    out["start_offset_p95_s"] = pct(offsets, 95)
    out["start_offset_max_s"] = round(max(offsets), 3) if offsets else None
    ends = start_at + (fallback["duration_ms"] or 5000) / 1000
    poll(lambda: len(watch.succeeded_for(cmd_id)) >= n, timeout_s=max(0.0, ends - now()) + 60)
    out["succeeded_broker"] = len(watch.succeeded_for(cmd_id))
    final = wait_moving(lambda: stored.counts(cmd_id).get("SUCCEEDED", 0), n, timeout_s=300)
    out["stored_final_s"] = round(now() - t0, 3) if final else None
    out["stored_by_status"] = stored.counts(cmd_id)
    out["server_over_round"] = server.read()
    stream.join(30)
    out["received_all_api_stream_s"] = stream.reached_s
    if stream.reached_s is None:
        out["api_stream_last"] = stream.last
        out["api_stream_error"] = stream.error
    out["bridge_after"] = bridge_stats(http)
    return out


def wait_received(
    watch: AckWatch,
    stored: StoredCounts,
    cmd_id: str,
    n: int,
    t0: float,
    on_broker_all: Callable[[], object] | None = None,
) -> tuple[float | None, float | None]:
    """Seconds from `t0` until N RECEIVED crossed the broker, and until the service had
    stored them; either is None when its count stopped moving for STALL_S.
    ``on_broker_all`` is called as soon as the broker's count is complete."""
    broker_all = stored_all = None
    deadline = time.monotonic() + 240
    last_counts, moved = (-1, -1), time.monotonic()
    while time.monotonic() < deadline and (broker_all is None or stored_all is None):
        counts = (len(watch.received_for(cmd_id)), stored.answered(cmd_id))
        if counts != last_counts:
            last_counts, moved = counts, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            break
        if broker_all is None and counts[0] >= n:
            broker_all = now() - t0
            if on_broker_all is not None:
                on_broker_all()
        if stored_all is None and counts[1] >= n:
            stored_all = now() - t0
        time.sleep(0.05)
    return broker_all, stored_all


def received_figures(
    watch: AckWatch, cmd_id: str, t0: float, broker_all: float | None
) -> dict[str, Any]:
    """How many stations' RECEIVED crossed the broker, when the first and the last did
    (the watcher's own arrival times: the wait only starts once the API answered, so its
    end says when the answer came, not when the last station did), the median and 95th
    percentile, and the spread of the stations' own ack times."""
    received = watch.received_for(cmd_id)
    seen = [s - t0 for _, s, _ in received]
    took = [ts(at) for _, _, at in received]
    egress = [s - at for (_, s, _), at in zip(received, took, strict=True)]
    published = watch.commands.get(cmd_id)
    return {
        "published_broker_s": round(published - t0, 3) if published is not None else None,
        "received_broker": len({sid for sid, _, _ in received}),
        "received_first_broker_s": round(min(seen), 3) if seen else None,
        "received_all_broker_s": round(max(seen), 3) if broker_all is not None else None,
        "received_p50_s": pct(seen, 50),
        "received_p95_s": pct(seen, 95),
        "delivery_spread_s": round(max(took) - min(took), 3) if took else None,
        # by the stations' own clocks (this machine's): when the first and the last
        # station took the command, before their acks crossed the broker
        "received_first_station_s": round(min(took) - t0, 4) if took else None,
        "received_last_station_s": round(max(took) - t0, 4) if took else None,
        # from a station's own RECEIVED time to its ack crossing the broker: how long
        # the ack waited in its simulator process (behind the other stations' commands
        # read in the same turn of the event loop) and in the broker
        "ack_egress_p50_s": pct(egress, 50),
        "ack_egress_max_s": round(max(egress), 4) if egress else None,
    }


def end_broadcast(http: httpx.Client, broadcast_id: int) -> None:
    """Stop a round's broadcast before the next; one that already ended on its own (a
    short text played through on a quiet machine) answers 409 and is left as it is."""
    response = http.post(f"/api/v1/broadcasts/{broadcast_id}/stop")
    if response.status_code != 409:
        response.raise_for_status()


def bridge_stats(http: httpx.Client) -> dict[str, Any]:
    """The service bridge's counters (messages received, dropped on a full queue...)."""
    try:
        status = http.get("/api/v1/dispatch/status", timeout=120).json()
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__}
    return {k: status.get(k) for k in ("received", "dropped", "overflow", "queue_depth", "ingest")}


def wait_moving(value: Callable[[], int], target: int, timeout_s: float) -> bool:
    """Until ``value()`` reaches ``target``; False once it stops moving for STALL_S."""
    deadline = time.monotonic() + timeout_s
    last, moved = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = value()
        if current >= target:
            return True
        if current != last:
            last, moved = current, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            return False
        time.sleep(0.5)
    return False


# ----------------------------------------------------------------------------- baseline


def bare_baseline(
    broker: Any, n: int, rounds: int, workdir: Path, warmups: int = 0
) -> dict[str, Any]:
    """One QoS 1 publish to a group topic, a QoS 1 reply from each of N bare clients
    (``warmups`` rounds first, reported apart, as the service's are)."""
    ready = workdir / "bare.ready"
    fleet = ChildProcess(
        python_argv(
            __file__,
            *("--bare-fleet", str(n)),
            *("--bare-port", str(broker.port)),
            *("--bare-ready", str(ready)),
        ),
        log_path=workdir / "bare.log",
    ).start()
    replies: dict[int, tuple[float, float]] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seen = now()
        data = json.loads(msg.payload)
        with lock:
            if data["round"] == current[0]:
                replies[int(data["i"])] = (seen, float(data["t"]))

    current = [0]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare-pub", protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    out: dict[str, Any] = {"clients": n}
    try:
        t = time.monotonic()
        if not poll(lambda: ready.exists() or not fleet.running, timeout_s=600):
            raise TimeoutError("bare clients did not come up")
        fleet.alive()
        out["connect_s"] = round(time.monotonic() - t, 1)
        client.connect(broker.host, broker.port, keepalive=60)
        client.subscribe(f"{REPLY_TOPIC}/+", qos=1)
        client.loop_start()
        time.sleep(1)
        results = []
        for index in range(warmups + rounds):
            with lock:
                replies.clear()
                current[0] = index + 1
            cpu = CpuWatch({"broker": broker.pid, "bare_fleet": fleet.pid})
            t0 = now()
            client.publish(GROUP_TOPIC, json.dumps({"round": index + 1}), qos=1)
            complete = poll(lambda: len(replies) >= n, timeout_s=120, every_s=0.02)
            used = cpu.read()
            with lock:
                got = dict(replies)
            seen = [s - t0 for s, _ in got.values()]
            took = [c for _, c in got.values()]
            egress = [s - c for s, c in got.values()]
            results.append(
                {
                    "round": index + 1,
                    "replies": len(got),
                    "all_replies_s": round(max(seen), 3) if complete else None,
                    "first_reply_s": round(min(seen), 3) if seen else None,
                    "reply_p50_s": pct(seen, 50),
                    "reply_p95_s": pct(seen, 95),
                    "delivery_spread_s": round(max(took) - min(took), 3) if took else None,
                    # from a client's own reply time to the reply reaching the publisher
                    "reply_egress_p50_s": pct(egress, 50),
                    "reply_egress_max_s": round(max(egress), 4) if egress else None,
                    # as the service's rounds' `cpu_until_received_all_broker`
                    "cpu_until_all_replies": used,
                }
            )
            time.sleep(1)
        out["warmup_rounds"], out["rounds"] = results[:warmups], results[warmups:]
        out["bare_fleet"] = memory(fleet.pid)
    finally:
        with contextlib.suppress(Exception):
            paho_loop.close(client)
        fleet.stop(120)
    return out


def bare_reply(i: int, payload: bytes) -> bytes:
    """A bare client's whole handling of the group message: its reply (client ``i``, the
    message's round, the client's time); `bench_station_command` times it too."""
    data = json.loads(payload)
    return json.dumps({"i": i, "round": data.get("round"), "t": now()}).encode()


def bare_fleet(n: int, port: int, ready: Path) -> None:
    """N bare clients (paho on one asyncio loop): subscribe, reply once per message."""
    from firmware_bridge.simulator.aio_mqtt import AioMqttClient
    from firmware_bridge.simulator.fleet import _raise_fd_limit

    _raise_fd_limit(n + 256)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        executor = ThreadPoolExecutor(max_workers=32)
        slots = asyncio.Semaphore(64)
        clients: list[AioMqttClient] = []

        async def one(i: int) -> None:
            def on_message(message: mqtt.MQTTMessage) -> None:
                reply = bare_reply(i, message.payload)
                client.publish(f"{REPLY_TOPIC}/{i}", reply, qos=1, retain=False)

            client = AioMqttClient(
                client_id=f"bare-{i}",
                protocol=MQTTProtocolVersion.MQTTv5,
                keepalive=60,
                executor=executor,
                clean_start=True,
                on_message=on_message,
            )
            async with slots:
                await client.connect("127.0.0.1", port, timeout_s=30)
                await client.subscribe([(GROUP_TOPIC, 1)], timeout_s=30)
            clients.append(client)

        await asyncio.gather(*(one(i) for i in range(n)))
        ready.write_bytes(str(len(clients)).encode())  # noqa: ASYNC240 - once, tiny

        async def tick() -> None:
            while True:
                await asyncio.sleep(1)
                for client in clients:
                    client.tick()

        ticker = asyncio.create_task(tick())
        await stop.wait()
        ticker.cancel()
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        executor.shutdown(wait=False)

    asyncio.run(main())


# ----------------------------------------------------------------------------- report


def summarise(result: dict[str, Any]) -> None:
    rounds = result.get("rounds") or []
    base_rounds = baseline_rounds(result)
    base_all = median_of(base_rounds, "all_replies_s")
    base_spread = median_of(base_rounds, "delivery_spread_s")
    figures = {
        "received_all_broker_s": median_of(rounds, "received_all_broker_s"),
        "received_all_stored_s": median_of(rounds, "received_all_stored_s"),
        "received_all_api_stream_s": median_of(rounds, "received_all_api_stream_s"),
        "delivery_spread_s": median_of(rounds, "delivery_spread_s"),
        "start_spread_s": median_of(rounds, "start_spread_s"),
        "start_offset_p50_s": median_of(rounds, "start_offset_p50_s"),
        "start_offset_p95_s": median_of(rounds, "start_offset_p95_s"),
        "api_call_s": median_of(rounds, "api_call_s"),
        "published_broker_s": median_of(rounds, "published_broker_s"),
        "received_first_broker_s": median_of(rounds, "received_first_broker_s"),
        "ack_egress_p50_s": median_of(rounds, "ack_egress_p50_s"),
        "ack_egress_max_s": median_of(rounds, "ack_egress_max_s"),
    }
    result["summary"] = {
        "median_of_rounds": figures,
        "server_timing_ms": median_phases(rounds),
        "baseline_all_replies_s": base_all,
        # each half of the bare loop on its own (null: not run, or failed)
        "baseline_before_all_replies_s": median_of(
            baseline_rounds(result, "baseline_before"), "all_replies_s"
        ),
        "baseline_after_all_replies_s": median_of(
            baseline_rounds(result, "baseline"), "all_replies_s"
        ),
        "baseline_delivery_spread_s": base_spread,
        "baseline_reply_egress_p50_s": median_of(base_rounds, "reply_egress_p50_s"),
        "baseline_reply_egress_max_s": median_of(base_rounds, "reply_egress_max_s"),
        "ratio_received_all_broker_vs_baseline": ratio(figures["received_all_broker_s"], base_all),
        "ratio_received_all_stored_vs_baseline": ratio(figures["received_all_stored_s"], base_all),
        "ratio_received_all_api_stream_vs_baseline": ratio(
            figures["received_all_api_stream_s"], base_all
        ),
        "ratio_delivery_spread_vs_baseline": ratio(figures["delivery_spread_s"], base_spread),
        "ratio_start_spread_vs_baseline_delivery_spread": ratio(
            figures["start_spread_s"], base_spread
        ),
    }


def server_timing(value: str | None) -> dict[str, float]:
    """The API call's ``Server-Timing``, {phase: milliseconds} (`broadcaster.web.timing`)."""
    from broadcaster.web.timing import parse

    return parse(value)


def median_phases(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Each Server-Timing phase's median over the rounds that reported it, in order."""
    reported = [r.get("server_timing_ms") or {} for r in rounds]
    names = dict.fromkeys(name for phases in reported for name in phases)
    return {
        name: round(statistics.median(p[name] for p in reported if name in p), 1) for name in names
    }


def warmup_rounds(args: argparse.Namespace) -> int:
    return max(0, int(getattr(args, "warmup_rounds", 0) or 0))


WARMUP_HELP = (
    "rounds run first and reported apart (warmup_rounds), out of the medians: a service "
    "process's first broadcast compiles its SQL statements (its API call took 20-30 ms "
    "longer at 108 stations), the simulators' first command is their first too; the "
    "bare loop gets as many (default 1)"
)

#: the simulated stations' "flash" (``--sim-flash``): ``disk`` in the work directory,
#: ``ram`` on a RAM filesystem when the machine has one with room
SIM_FLASH = ("disk", "ram")
SIM_FLASH_HELP = (
    "where the simulated stations keep their flash (spool, state, media cache): 'disk' "
    "(default) in the work directory, whose file system and journal the service's "
    "database shares; 'ram' on /dev/shm when it has room (else as 'disk'), as in the "
    "field, where each station writes its own flash. Alternating runs gave 'ram' a "
    "small gain at 1,000 stations and a loss at 10,000 (docs/benchmark-history.md)"
)
#: room asked of the RAM filesystem per station (its media cache, spool and state)
SIM_FLASH_BYTES_PER_STATION = 256 * 1024
RAM_FS = Path("/dev/shm")


def stations_flash(workdir: Path, n: int, flash: str | None) -> Path:
    """The simulator's ``--state-dir``: on the RAM filesystem for ``ram`` when there is
    room for ``n`` stations (else, as for ``disk``, in the work directory)."""
    if flash == "ram" and RAM_FS.is_dir():
        with contextlib.suppress(OSError):
            if shutil.disk_usage(RAM_FS).free > n * SIM_FLASH_BYTES_PER_STATION:
                return Path(tempfile.mkdtemp(prefix=f"bench-sim-{n}-", dir=RAM_FS))
    return workdir / "sim"


def filesystem_of(path: Path) -> str | None:
    """The file system type ``path`` is on (Linux: the longest mount point above it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
        print(f"work directory kept: {path}", file=sys.stderr)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmp:
        yield Path(tmp)


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", default="108,1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lead-s", type=float, default=2.0, help="the API's default lead")
    parser.add_argument("--setup-timeout-s", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--sim-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="simulator processes (each a slice of the stations; default one per core)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the service with py-spy over the rounds (collapsed stacks in DIR)",
    )
    parser.add_argument(
        "--profile-hz",
        type=int,
        default=PROFILE_HZ,
        help=f"py-spy's sampling rate (default {PROFILE_HZ}: more falls behind under load; "
        "on a quiet machine 200 sees a 1,000-station round's command handling)",
    )
    parser.add_argument(
        "--service-nice",
        type=int,
        default=0,
        help="run the service's threads at this niceness during the rounds (e.g. 10: the "
        "simulated stations and the broker, which in the field run on their own hardware, "
        "get the shared cores first; the service still has them whenever they wait)",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=0.0,
        help=SETTLE_HELP,
    )
    add_rig_options(parser)
    parser.add_argument("--bare-fleet", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-ready", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_fleet:
        bare_fleet(args.bare_fleet, args.bare_port, args.bare_ready)
        return 0

    report: dict[str, Any] = {
        "benchmark": "broadcast",
        "cpu_count": os.cpu_count(),
        "broker_config": BROKER_LIMITS,
        "rounds_per_size": args.rounds,
        "warmup_rounds_per_size": warmup_rounds(args),
        "simulator_flash": args.sim_flash,
        "simulator_processes": args.sim_processes,
        "settle_max_s": args.settle_s,
        "service_settings": dict(args.service_setting),
        "runs": [],
    }
    return run_report(report, args, lambda size, path: run_size(size, args, path))


def add_rig_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark on this rig takes: warm-up rounds, the stations' flash."""
    parser.add_argument("--warmup-rounds", type=int, default=1, help=WARMUP_HELP)
    parser.add_argument("--sim-flash", choices=SIM_FLASH, default="disk", help=SIM_FLASH_HELP)
    parser.add_argument(
        "--baseline-after-only",
        action="store_true",
        help="run the bare loop only after the service's rounds (as before the thirty-"
        "second session), not also before them",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run the service on this PostgreSQL server (a schema of its own, dropped "
        "afterwards: the province's set-up) instead of an SQLite file in the work "
        "directory (the city's), e.g. postgresql://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument(
        "--service-setting",
        action="append",
        default=[],
        type=service_setting,
        metavar="NAME=VALUE",
        help="a setting for the service process, e.g. BROADCASTER_FANOUT_QUIET_S=0 (the "
        "service otherwise gets none of this shell's BROADCASTER_* variables); repeatable, "
        "recorded in the report",
    )


def service_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("BROADCASTER_"):
        raise argparse.ArgumentTypeError(f"not BROADCASTER_NAME=VALUE: {text!r}")
    return name, value


def rounds_main(
    doc: str | None,
    name: str,
    round_fn: RoundFn,
    summarise_run: Callable[[dict[str, Any]], None],
    *,
    default_sizes: str,
    before_size: Callable[[], None] | None = None,
    media_follows: bool = False,
    settle_s: float = 0.0,
) -> int:
    """The command line of a benchmark that replaces the broadcast round (bench_cap,
    bench_emergency): the same rig, options and report, its own rounds and summary."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", default=default_sizes)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lead-s", type=float, default=2.0)
    parser.add_argument("--setup-timeout-s", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--sim-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--settle-s",
        type=float,
        default=settle_s,
        help=SETTLE_HELP,
    )
    add_rig_options(parser)
    parser.add_argument(
        "--media-follows",
        action=argparse.BooleanOptionalAction,
        default=media_follows,
        help="the simulated stations announce proposal 0005 (a play before its audio)",
    )
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": name,
        "cpu_count": os.cpu_count(),
        "rounds_per_size": args.rounds,
        "warmup_rounds_per_size": warmup_rounds(args),
        "simulator_flash": args.sim_flash,
        "simulator_processes": args.sim_processes,
        "stations_media_follows": args.media_follows,
        "settle_max_s": args.settle_s,
        "service_settings": dict(args.service_setting),
        "runs": [],
    }

    def one(size: int, path: Path) -> dict[str, Any]:
        if before_size is not None:
            before_size()
        run = run_size(size, args, path, round_fn=round_fn)
        summarise_run(run)
        return run

    return run_report(report, args, one)


def run_report(
    report: dict[str, Any],
    args: argparse.Namespace,
    run_one: Callable[[int, Path], dict[str, Any]],
) -> int:
    """Run every size of ``--sizes`` into ``report["runs"]``; print and write the JSON
    (with what it ran on: CPU, clock, load, versions, before and after)."""
    report["machine"] = describe_machine()
    with workspace(args.keep) as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            started = time.monotonic()
            print(f"== {size} stations", file=sys.stderr, flush=True)
            run = run_one(size, tmp / f"n{size}")
            run["wall_s"] = round(time.monotonic() - started, 1)
            report["runs"].append(run)
            print(json.dumps(run.get("summary"), indent=2), file=sys.stderr, flush=True)
    after = cpu_state()
    report["machine_after"] = {
        "loadavg": after["loadavg"],
        "cpu_mhz": after["cpu_mhz"],
        # steal > 0: the hypervisor ran someone else on these cores during the run
        "cpu_shares_during_run": cpu_shares(report["machine"]["cpu_times_s"], after["cpu_times_s"]),
    }
    report_json(report, args.out)
    return 0 if all("error" not in r for r in report["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
