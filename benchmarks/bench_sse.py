"""Progress streams against the registry: does a crowd of open broadcast progress
streams (the dashboard's broadcast page, ``GET /api/v1/broadcasts/{id}/events``) slow
``GET /api/v1/stations``?

One ``broadcaster serve --role all`` child process on SQLite with Tân An's 108
stations (a real Mosquitto, no station online) and one active emergency broadcast to
all of them, waiting for its stations (its 30-minute validity window).  In the same
run, the median and p95 of ``--requests`` sequential ``GET /api/v1/stations?limit=200``:

- ``bare``: no stream open;
- ``streams``: with ``--streams`` (default 100) progress streams open on the broadcast
  (asyncio httpx clients in a thread of this process, reading every event);
- ``streams_changing``: the same while the broadcast's progress moves: every 0.2 s a
  station's target is acknowledged (an MQTT ack published as that station would), so
  the hub reads and every stream gets events.

Also recorded: the service's CPU per scenario, the events the streams received, and the
hub's state from the service.

    python benchmarks/bench_sse.py --out FILE.json [--streams 100] [--requests 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_broadcast as bb  # noqa: E402
import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from timing import report_json  # noqa: E402

from firmware_bridge import paho_loop  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402
from tests.support.service import ServiceProcess, run_cli  # noqa: E402


def latencies(http: httpx.Client, n: int) -> dict[str, Any]:
    took: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        response = http.get("/api/v1/stations", params={"limit": 200})
        took.append((time.perf_counter() - t) * 1000)
        response.raise_for_status()
    return {
        "requests": n,
        "median_ms": round(statistics.median(took), 1),
        "p95_ms": bb.pct(took, 95),
        "max_ms": round(max(took), 1),
    }


class Streams:
    """N progress streams held open in a thread of their own (one asyncio loop)."""

    def __init__(self, base_url: str, token: str, broadcast_id: int, n: int) -> None:
        self.events = 0
        self.comments = 0
        self.open = 0
        self.errors: list[str] = []
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(base_url, token, broadcast_id, n)), daemon=True
        )
        self._thread.start()

    async def _main(self, base_url: str, token: str, broadcast_id: int, n: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60, read=None),
            limits=limits,
        ) as client:
            tasks = [asyncio.create_task(self._one(client, broadcast_id, n)) for _ in range(n)]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient, broadcast_id: int, n: int) -> None:
        try:
            async with client.stream("GET", f"/api/v1/broadcasts/{broadcast_id}/events") as r:
                r.raise_for_status()
                self.open += 1
                if self.open >= n:
                    self._ready.set()
                async for line in r.aiter_lines():
                    if line.startswith("event: progress"):
                        self.events += 1
                    elif line.startswith(":"):
                        self.comments += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self._ready.set()

    def wait_open(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


class Acker:
    """Moves the broadcast's progress: one station's RECEIVED ack every ``every_s``."""

    def __init__(self, host: str, port: int, cmd_id: str, sids: list[str], every_s: float) -> None:
        self.sent = 0
        self._stopping = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sse-acker")
        client.connect(host, port)
        client.loop_start()
        self._client = client
        self._thread = threading.Thread(target=self._run, args=(cmd_id, sids, every_s), daemon=True)
        self._thread.start()

    def _run(self, cmd_id: str, sids: list[str], every_s: float) -> None:
        for sid in sids:
            if self._stopping.wait(every_s):
                return
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            payload = json.dumps({"cmd_id": cmd_id, "status": "RECEIVED", "at": at})
            self._client.publish(f"loa/v1/st/{sid}/ack", payload, qos=1)
            self.sent += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        paho_loop.close(self._client)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from tests.support.mosquitto import Mosquitto

    result: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    broker = Mosquitto(workdir / "broker", extra_config=bb.BROKER_LIMITS).start()
    database_url = f"sqlite:///{workdir}/broadcaster.db"
    service = ServiceProcess.on_a_free_port(
        database_url=database_url, mqtt_url=broker.url, workdir=workdir
    )
    try:
        run_cli(["seed", "tan-an"], service.env)
        token, sids, _ = bb.fill_registry(database_url, 108)
        service.start()
        service.wait_ready(timeout_s=300, worker="active")
        with httpx.Client(
            base_url=service.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            made = http.post(
                "/api/v1/broadcasts",
                json={
                    "targets": {"areas": ["tan-an"]},
                    "content": {"text": "Cảnh báo triều cường, bà con chú ý."},
                    "tier": "emergency",
                    "title": "Bench progress streams",
                },
            )
            made.raise_for_status()
            broadcast = made.json()
            latencies(http, 10)  # warm the connection and the caches
            cpu = bb.ProcWatch(service.pid)
            result["bare"] = latencies(http, args.requests) | {"server": cpu.read()}

            streams = Streams(service.base_url, token, broadcast["id"], args.streams)
            if not streams.wait_open(120):
                raise TimeoutError(f"only {streams.open}/{args.streams} streams opened")
            time.sleep(2)
            cpu = bb.ProcWatch(service.pid)
            result["streams"] = latencies(http, args.requests) | {"server": cpu.read()}
            events_before = streams.events
            acker = Acker(broker.host, broker.port, broadcast["cmd_id"], sids, 0.2)
            cpu = bb.ProcWatch(service.pid)
            result["streams_changing"] = latencies(http, args.requests) | {
                "server": cpu.read(),
                "acks_published": acker.sent,
                "progress_events_received": streams.events - events_before,
            }
            acker.stop()
            result["streams_open"] = streams.open
            result["stream_errors"] = streams.errors[:5]
            result["keep_alive_comments"] = streams.comments
            streams.stop()
        bare = result["bare"]["median_ms"]
        result["summary"] = {
            "stations_get_median_ms": {
                "bare": bare,
                f"{args.streams}_streams": result["streams"]["median_ms"],
                f"{args.streams}_streams_changing": result["streams_changing"]["median_ms"],
            },
            "ratio_streams_vs_bare": bb.ratio(result["streams"]["median_ms"], bare),
            "ratio_changing_vs_bare": bb.ratio(result["streams_changing"]["median_ms"], bare),
        }
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["service_log_tail"] = service.log_tail(30)
    finally:
        service.stop()
        broker.stop()
    return result


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        result = {"benchmark": "sse", "cpu_count": os.cpu_count(), **run(args, Path(tmp))}
    report_json(result, args.out)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
