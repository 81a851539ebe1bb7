"""Simulator benchmark: N virtual stations in one process against a private mosquitto.

Starts its own broker, then runs ``python -m firmware_bridge.simulator`` as a separate
process (so its RSS and CPU are measured alone) and subscribes to
``loa/v1/st/+/state``. Reports, as JSON:

- ``births_s``: from the simulator's launch until all N births were seen;
- ``rss_mb``: the simulator's resident memory once all are online, and its peak;
- ``cpu_percent_startup`` / ``cpu_percent_steady``: CPU time over wall time (100 =
  one core) during the connection storm and during a quiet window afterwards
  (telemetry every 60 s per station, the protocol default);
- ``deaths_s``: from SIGTERM until every station's own death was seen (clean stop).

    python benchmarks/bench_simulator_fleet.py --stations 1000 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from timing import report_json  # noqa: E402

from firmware_bridge import paho_loop  # noqa: E402
from tests.support.loa import poll  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.process import (  # noqa: E402
    ChildProcess,
    cpu_seconds,
    memory_mb,
    python_argv,
    stop_children_on_sigterm,
)


class StateWatcher:
    """Counts births and deaths per station."""

    def __init__(self, host: str, port: int) -> None:
        self.online: set[str] = set()
        self.dead: set[str] = set()
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-watcher")
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe("loa/v1/st/+/state", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        sid = msg.topic.split("/")[3]
        online = json.loads(msg.payload)["online"]
        with self.lock:
            (self.online if online else self.dead).add(sid)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.online), len(self.dead)

    def stop(self) -> None:
        paho_loop.close(self.client)


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    n = args.stations

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        watcher = StateWatcher(broker.host, broker.port)
        proc = ChildProcess(
            python_argv(
                *("-m", "firmware_bridge.simulator", "--stations", str(n)),
                *("--mqtt-url", broker.url, "--state-dir", str(Path(tmp) / "state")),
                *("--no-live", "--seed", "1"),
            ),
            log_path=Path(tmp) / "simulator.log",
        )
        launched = time.monotonic()
        proc.start()
        result: dict[str, Any] = {"stations": n, "cpu_count": os.cpu_count()}
        try:
            all_up = poll(lambda: watcher.counts()[0] >= n, timeout_s=120, every_s=0.02)
            up_at = time.monotonic()
            result["births_seen"] = watcher.counts()[0]
            result["births_s"] = round(up_at - launched, 2) if all_up else None
            cpu_startup = cpu_seconds(proc.pid)
            result["cpu_percent_startup"] = round(100 * cpu_startup / (up_at - launched), 1)
            rss, _ = memory_mb(proc.pid)
            result["rss_mb_after_births"] = round(rss, 1)

            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.steady_s)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            result["steady_window_s"] = args.steady_s
            result["cpu_percent_steady"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
            rss, peak = memory_mb(proc.pid)
            result["rss_mb_steady"] = round(rss, 1)
            result["rss_mb_peak"] = round(peak, 1)

            stop_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            all_dead = poll(lambda: watcher.counts()[1] >= n, timeout_s=120, every_s=0.02)
            result["deaths_seen"] = watcher.counts()[1]
            result["deaths_s"] = round(time.monotonic() - stop_at, 2) if all_dead else None
            result["exit_code"] = proc.wait(60)
        finally:
            proc.kill()
            watcher.stop()
            broker.stop()
            if result.get("exit_code") != 0:
                result["stderr_tail"] = proc.output()[-2000:]

    report_json(result, args.out)
    return 0 if result.get("births_s") is not None and result.get("exit_code") == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
