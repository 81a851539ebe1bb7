"""Station ingest benchmark: the whole service against 1,000 simulated stations.

Everything runs as separate processes on this machine, so each is measured alone:

- a private Mosquitto (no persistence);
- ``broadcaster serve`` (SQLite in a temporary directory, dynamic security off), after
  ``broadcaster seed tan-an`` (108 stations and the relay chain) and
  ``broadcaster stations import`` of 892 more stations (1,000 in the registry);
- ``broadcaster simulate --stations N --api URL --token T`` (the simulator's fleet in
  its own process, so its CPU and memory are not counted as the server's);
- a flood publisher (its own process) of valid telemetry on the 1,000 station topics.

Measured, as JSON:

- ``online``: from launching ``simulate`` until ``GET /api/v1/stations?online=true``
  counts all N (``api_online_s``), for N = 108 (the Tân An registry, cold start; the
  issue asks for "within 10 s of the simulator's start") and N = 1,000; beside it, when
  the last of those N births reached the broker (``births_on_broker_s``: the simulator's
  share of that time);
- ``ingest``: telemetry messages per second the server *stores* (the ingest counter,
  checked against the rows in the ``telemetry`` table), for a paced flood and an
  unthrottled one: ``offered_per_s`` (written to the broker), ``received`` by the
  server's bridge, ``stored_per_s`` during the flood and until the backlog drained,
  ``dropped`` (the bridge's bounded queue was full), ``lost_before_server`` (QoS 0
  telemetry the broker shed because the server's connection was backed up);
- ``server_rss_mb``: the server's resident memory before the stations, steady with
  1,000 stations connected, after the floods, and its peak (VmHWM); ``server_cpu``.

    python benchmarks/bench_station_ingest.py --out FILE.json
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from machine import mosquitto_version  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from timing import report_json  # noqa: E402

from broadcaster import db  # noqa: E402
from broadcaster.auth import service as auth  # noqa: E402
from broadcaster.auth.models import TokenKind  # noqa: E402
from broadcaster.auth.schemas import UserCreate  # noqa: E402
from firmware_bridge import paho_loop  # noqa: E402
from firmware_bridge.messages import Telemetry, dump_message  # noqa: E402
from kernel.security import Role  # noqa: E402
from stations.models import Area, Station, TelemetrySample  # noqa: E402
from tests.support.loa import poll  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.process import (  # noqa: E402
    ChildProcess,
    ProcessGroup,
    cpu_seconds,
    memory_mb,
    stop_children_on_sigterm,
)
from tests.support.service import serve_on_a_free_port, service_env  # noqa: E402

# ---------------------------------------------------------------------------- processes


class BirthWatcher:
    """Notes when each station's latest birth was seen on the broker."""

    def __init__(self, host: str, port: int) -> None:
        self.births: dict[str, float] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-births")
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe("loa/v1/st/+/state", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload and json.loads(msg.payload).get("online"):
            with self.lock:
                self.births[msg.topic.split("/")[3]] = time.monotonic()

    def since(self, started: float) -> list[float]:
        with self.lock:
            return sorted(at for at in self.births.values() if at >= started)

    def stop(self) -> None:
        paho_loop.close(self.client)


# ---------------------------------------------------------------------------- flood


def flood(host: str, port: int, sids: list[str], rate: float, seconds: float, result: Any) -> None:
    """Publish valid telemetry round-robin on the stations' topics (QoS 0, as stations
    do) at ``rate`` messages/s (0: as fast as possible) for ``seconds``; report how many
    were written to the broker."""
    written = 0

    def on_publish(*_args: Any) -> None:
        nonlocal written
        written += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-flood")
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    now = dt.datetime.now(dt.UTC)
    messages = [
        (
            f"loa/v1/st/{sid}/telemetry",
            dump_message(
                Telemetry.model_validate(
                    {
                        "seq": n,
                        "at": now,
                        "uptime_s": 3600,
                        "volume": 70,
                        "playing": None,
                        "rssi_dbm": -71.5,
                        "amp_temp_c": 41.2,
                        "supply_v": 13.1,
                        "on_battery": False,
                        "speaker_ok": True,
                        "storage_free_mb": 812.0,
                    }
                )
            ),
        )
        for n, sid in enumerate(sids)
    ]
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * elapsed) if rate > 0 else sent + 200
        while sent < due:
            topic, payload = messages[sent % len(messages)]
            client.publish(topic, payload, qos=0)
            sent += 1
        time.sleep(0.005 if rate > 0 else 0)
    duration = time.monotonic() - started
    # let paho write what it has queued (bounded)
    poll(lambda: written >= sent, timeout_s=30, every_s=0.05)
    paho_loop.close(client)
    result.put({"queued": sent, "written": written, "seconds": duration, "started": started})


# ---------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(
        self, tmp: Path, procs: ProcessGroup, database_url: str, watcher: BirthWatcher
    ) -> None:
        self.tmp = tmp
        self.watcher = watcher
        self.procs = procs
        self.api = ""
        self.database_url = database_url
        self.engine = db.make_engine(database_url)
        self.factory = db.make_sessionmaker(self.engine)
        self.http = httpx.Client(timeout=60)
        self.token = ""

    def serve(self) -> ChildProcess:
        """``broadcaster serve`` on a free port; returns once ready."""
        self.api = serve_on_a_free_port(self.procs)
        self.http.base_url = httpx.URL(self.api)
        return self.procs["serve"]

    def admin_token(self) -> str:
        with self.factory() as session:
            user = auth.create_user(
                session,
                UserCreate(username="bench", password="bench horse battery", role=Role.ADMIN),
            )
            token, _ = auth.issue_token(session, user, kind=TokenKind.SESSION)
            session.commit()
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"
        return token

    def add_stations(self, total: int) -> list[str]:
        """Import stations up to ``total`` (``vt-sim-0001``... sort after Tân An's sids)."""
        with self.factory() as session:
            existing = session.scalar(select(func.count()).select_from(Station)) or 0
            hamlets = list(session.scalars(select(Area.code).where(Area.level == "hamlet")))
        path = self.tmp / "stations.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["sid", "name", "kind", "area_code"])
            for i in range(1, total - existing + 1):
                writer.writerow(
                    [f"vt-sim-{i:04d}", f"Trạm mô phỏng {i}", "hamlet", hamlets[i % len(hamlets)]]
                )
        self.procs.run("import", "stations", "import", str(path))
        with self.factory() as session:
            return list(session.scalars(select(Station.sid).order_by(Station.sid)))

    def online(self) -> int:
        response = self.http.get("/api/v1/stations", params={"online": "true", "limit": 1})
        response.raise_for_status()
        return int(response.json()["total"])

    def status(self) -> dict[str, Any]:
        response = self.http.get("/api/v1/dispatch/status")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def telemetry_rows(self) -> int:
        with self.factory() as session:
            return session.scalar(select(func.count()).select_from(TelemetrySample)) or 0

    def simulate(self, n: int, name: str) -> dict[str, float | None]:
        """Launch the simulator for the first ``n`` stations: seconds until all are online
        in the API, and until their births were all on the broker (simulator side)."""
        launched = time.monotonic()
        self.procs.start(
            name,
            "simulate",
            *("--stations", str(n), "--api", self.api, "--token", self.token),
            *("--state-dir", str(self.tmp / name), "--no-live", "--seed", "1"),
        )

        def up() -> bool:
            self.procs.alive(name)
            return self.online() >= n

        ok = poll(up, timeout_s=180, every_s=0.1)
        api_s = round(time.monotonic() - launched, 2) if ok else None
        births = self.watcher.since(launched)
        broker_s = round(births[n - 1] - launched, 2) if len(births) >= n else None
        return {"api_online_s": api_s, "births_on_broker_s": broker_s}

    def ingest(
        self, sids: list[str], rate: float, seconds: float, server_pid: int
    ) -> dict[str, Any]:
        before = self.status()
        rows_before = self.telemetry_rows()
        stored_before = int(before["ingest"].get("telemetry", 0))
        cpu0, wall0 = cpu_seconds(server_pid), time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        result: Any = ctx.Queue()
        host, port = self.procs.env["BROADCASTER_MQTT_URL"].removeprefix("mqtt://").split(":")
        publisher = ctx.Process(
            target=flood, args=(host, int(port), sids, rate, seconds, result), daemon=True
        )
        publisher.start()
        sent = result.get(timeout=seconds + 120)
        started = float(sent["started"])  # monotonic time is system-wide on Linux
        publisher.join(30)
        flood_end = time.monotonic()
        stored_in_flood = int(self.status()["ingest"].get("telemetry", 0)) - stored_before
        # wait for the backlog to drain: counters still for two seconds, queue empty
        last: tuple[int, int] = (-1, -1)
        stable_since = time.monotonic()
        drain_deadline = time.monotonic() + 180
        drained_at = flood_end
        while time.monotonic() < drain_deadline:
            st = self.status()
            now = (int(st["received"]), int(st["ingest"].get("telemetry", 0)))
            if now != last or st["queue_depth"]:
                last = now
                stable_since = time.monotonic()
                drained_at = stable_since
            elif time.monotonic() - stable_since >= 2.0:
                break
            time.sleep(0.2)
        after = self.status()
        cpu1, wall1 = cpu_seconds(server_pid), time.monotonic()
        stored = int(after["ingest"].get("telemetry", 0)) - stored_before
        received = int(after["received"]) - int(before["received"])
        busy_s = max(drained_at - started, 1e-9)
        return {
            "target_rate_per_s": rate or "unthrottled",
            "flood_s": round(sent["seconds"], 2),
            "offered": sent["written"],
            "offered_per_s": round(sent["written"] / sent["seconds"]),
            "received": received,
            "stored": stored,
            "stored_rows_in_table": self.telemetry_rows() - rows_before,
            "stored_during_flood_per_s": round(stored_in_flood / sent["seconds"]),
            "stored_per_s": round(stored / busy_s),
            "drain_s": round(max(0.0, drained_at - flood_end), 2),
            "dropped": int(after["dropped"]) - int(before["dropped"]),
            "invalid": sum(after["invalid"].values()) - sum(before["invalid"].values()),
            "lost_before_server": max(0, sent["written"] - received),
            "server_cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        }

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--flood-s", type=float, default=15.0)
    parser.add_argument("--paced-rate", type=float, default=2000.0, help="messages/s")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    n = args.stations
    result: dict[str, Any] = {
        "stations": n,
        "cpu_count": os.cpu_count(),
        "database": "sqlite",
        "mqtt": f"mosquitto {mosquitto_version() or ''}",
    }

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as name:
        tmp = Path(name)
        broker = Mosquitto(tmp / "broker").start()
        database_url = f"sqlite:///{tmp}/broadcaster.db"
        env = service_env(
            database_url=database_url,
            mqtt_url=broker.url,
            media_dir=tmp / "media",
            public_base_url="http://127.0.0.1:9",  # set by serve_on_a_free_port
            extra={"NO_COLOR": "1"},
        )
        procs = ProcessGroup(tmp, env, script=True)
        watcher = BirthWatcher(broker.host, broker.port)
        bench = Bench(tmp, procs, database_url, watcher)
        try:
            procs.run("seed", "seed", "tan-an")
            sids = bench.add_stations(n)
            result["registered"] = len(sids)
            bench.admin_token()
            server = bench.serve()
            time.sleep(3)  # the first desired-state build for 1,000 stations settles
            result["server_rss_mb"] = {"before_stations": memory_mb(server.pid)[0]}

            first = min(108, n)
            result["online"] = {str(first): bench.simulate(first, "simulate-108")}
            procs.stop("simulate-108")
            if not poll(lambda: bench.online() == 0, timeout_s=60, every_s=0.1):
                raise RuntimeError("stations did not go offline after the simulator stopped")
            result["online"][str(n)] = bench.simulate(n, "simulate-all")

            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.steady_s)
            cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
            result["server_rss_mb"][f"steady_{n}_connected"] = memory_mb(server.pid)[0]
            result["server_cpu_percent_steady"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
            result["steady_window_s"] = args.steady_s

            result["ingest"] = {
                "paced": bench.ingest(sids, args.paced_rate, args.flood_s, server.pid),
                "unthrottled": bench.ingest(sids, 0, args.flood_s, server.pid),
            }
            result["server_rss_mb"]["after_floods"], result["server_rss_mb"]["peak"] = memory_mb(
                server.pid
            )
            result["online_after_floods"] = bench.online()
            result["ok"] = True
        except Exception as exc:
            result["ok"] = False
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["serve_log_tail"] = procs.child("serve").log_tail(40)
        finally:
            procs.stop_all()
            bench.close()
            watcher.stop()
            broker.stop()

    report_json(result, args.out)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
