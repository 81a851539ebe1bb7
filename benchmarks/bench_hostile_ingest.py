"""Reads during an ingest burst, and a restart with a poison message (issue 15).

The whole service as a real process (``broadcaster serve``, SQLite) against a private
Mosquitto with the limits ``broadcaster mqtt bootstrap`` writes.  One station sends a
burst of 10,000 QoS 1 proof-of-play events as fast as the broker takes them while a
reader keeps calling ``GET /api/v1/stations?limit=200`` (an administrator's token):

- ``baseline``: the same GET with no ingest running, in the same run (the bare figure);
- ``burst``: GET latencies during the burst (p50/p95/p99/max), the ratio of p99 to the
  baseline p99, how long storing took, and ``lost`` = sent - stored (must be 0);
- ``restart_with_poison``: the service is stopped, a station publishes a 120,000-deep
  JSON document (the poison that killed the network thread) plus a valid event into
  the service's broker session, and the service is started again: seconds until
  ``/readyz`` says ready, and until a command posted then is on the broker.  The
  machine's load average is recorded beside it (process start-up is mostly imports).

    python benchmarks/bench_hostile_ingest.py --rounds 2 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from timing import report_json  # noqa: E402

from broadcaster import db  # noqa: E402
from broadcaster.dispatch.models import StationEvent  # noqa: E402
from firmware_bridge import paho_loop  # noqa: E402
from firmware_bridge.messages import Event, dump_message, utcnow  # noqa: E402
from firmware_bridge.topics import Topics  # noqa: E402
from kernel.security import Role  # noqa: E402
from stations import tan_an  # noqa: E402
from tests.api import make_user  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

T = Topics()
SENDER, OTHER = "lbn-cau-tre", "p2-kp-1"
BROKER_LIMITS = ["max_queued_messages 200000", "max_inflight_messages 1000"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else float("nan"),
    }


class Reader(threading.Thread):
    """GET /api/v1/stations in a loop, timing each call."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=120)
        self.latencies: list[float] = []
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.perf_counter()
            try:
                response = self.client.get("/api/v1/stations", params={"limit": 200})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            if not ok:
                self.errors += 1
            time.sleep(0.02)


def publish_burst(broker: Mosquitto, count: int, tag: str) -> float:
    """Send ``count`` QoS 1 events from one station; seconds until the broker took all."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"st-{SENDER}-{tag}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    infos = []
    at = utcnow()
    for n in range(count):
        event = Event(event_id=f"{tag}-{n}", type="fault.raised", at=at, fault="storage_low")
        infos.append(client.publish(T.event(SENDER), dump_message(event), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    took = time.perf_counter() - started
    paho_loop.close(client)
    return took


def stored(factory: Any, tag: str) -> int:
    with db.read_session(factory) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(StationEvent)
                .where(StationEvent.event_id.like(f"{tag}-%"))
            )
            or 0
        )


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp_text:
        tmp = Path(tmp_text)
        broker = Mosquitto(tmp / "broker", persistence=True, extra_config=BROKER_LIMITS).start()
        database_url = f"sqlite:///{tmp}/broadcaster.db"
        engine = db.make_engine(database_url)
        db.upgrade(engine)
        factory = db.make_sessionmaker(engine)
        with db.session_scope(factory) as session:
            tan_an.load(session)
        admin = make_user(factory, "bench-admin", Role.ADMIN)
        service = ServiceProcess.on_a_free_port(
            database_url=database_url, mqtt_url=broker.url, workdir=tmp
        )
        result: dict[str, Any] = {"events_per_burst": args.events, "rounds": []}
        try:
            service.start().wait_ready(timeout_s=120, worker="active")
            # baseline: the same GET, nothing else running
            reader = Reader(service.base_url, admin)
            reader.start()
            time.sleep(args.baseline_s)
            reader.stop_event.set()
            reader.join()
            result["baseline"] = summary(reader.latencies)
            result["baseline"]["errors"] = reader.errors

            for round_no in range(args.rounds):
                tag = f"burst{round_no}"
                reader = Reader(service.base_url, admin)
                reader.start()
                started = time.perf_counter()
                sent_s = publish_burst(broker, args.events, tag)
                deadline = time.monotonic() + 600
                while stored(factory, tag) < args.events and time.monotonic() < deadline:
                    time.sleep(0.2)
                stored_s = time.perf_counter() - started
                reader.stop_event.set()
                reader.join()
                count = stored(factory, tag)
                burst = summary(reader.latencies)
                burst.update(
                    {
                        "errors": reader.errors,
                        "broker_took_all_s": round(sent_s, 2),
                        "all_stored_s": round(stored_s, 2),
                        "stored": count,
                        "lost": args.events - count,
                        "p99_vs_baseline": round(burst["p99_ms"] / result["baseline"]["p99_ms"], 2),
                        "load_average": load_average(),
                    }
                )
                result["rounds"].append(burst)
                print(json.dumps({"round": round_no, **burst}), flush=True)

            # restart with a poison message waiting in the service's broker session
            service.stop()
            poison = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="st-poisoner")
            poison.connect(broker.host, broker.port)
            poison.loop_start()
            poison.publish(
                T.state(SENDER), b"[" * 120_000 + b"]" * 120_000, qos=1
            ).wait_for_publish(10)
            good = Event(event_id="after-poison-0", type="fault.raised", at=utcnow(), fault="other")
            poison.publish(T.event(OTHER), dump_message(good), qos=1).wait_for_publish(10)
            seen = threading.Event()
            watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-watcher")
            watcher.on_message = lambda *_a: seen.set()
            watcher.connect(broker.host, broker.port)
            watcher.subscribe(T.cmd(OTHER), qos=1)
            watcher.loop_start()
            time.sleep(0.5)
            load = load_average()
            started = time.perf_counter()
            service.start().wait_ready(timeout_s=180, worker="active")
            ready_s = time.perf_counter() - started
            with httpx.Client(base_url=service.base_url, headers=admin, timeout=60) as http:
                made = http.post(f"/api/v1/stations/{OTHER}/commands", json={"type": "ping"})
                assert made.status_code == 201, made.text
            seen.wait(120)
            dispatching_s = time.perf_counter() - started
            result["restart_with_poison"] = {
                "ready_s": round(ready_s, 2),
                "dispatching_s": round(dispatching_s, 2),
                "command_published": seen.is_set(),
                "good_event_stored": stored(factory, "after-poison") == 1,
                "load_average_before": load,
            }
            print(json.dumps(result["restart_with_poison"]), flush=True)
            for client in (poison, watcher):
                paho_loop.close(client)
        finally:
            service.stop()
            broker.stop()
            engine.dispose()
    report_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
