"""Live paging benchmark: mouth-to-station latency through the service, beside a bare
ffmpeg -> Icecast -> reader chain on the same Icecast in the same run.

The rig: Mosquitto and Icecast2 (our configuration, `broadcaster.live.icecast`) on free
ports; ``broadcaster seed tan-an`` into a fresh SQLite file; ``broadcaster serve --role
all`` as a child process with ``BROADCASTER_LIVE_ICECAST_URL``; the simulator for the
paged stations in this process (`FleetThread`), every station reading the stream over
HTTP as a speaker would.

The "operator" is :class:`tests.support.icecast.Voice`: 16 kHz PCM written in real time
(20 ms frames) into ffmpeg, silence with a loud 1 kHz marker tone every ``--period-s``
seconds; the wall-clock time at which each tone's first sample is written is its
*mouth* time.  Its encoder makes WebM/Opus (what the browser's MediaRecorder sends),
and the chunks go over the microphone WebSocket (``/api/v1/live/audio``) as the page
sends them.  On ``--listeners`` of the paged stations the bytes the station reads
(`SimSettings.stream_tap`) are decoded (ffmpeg) and the time the tone is *heard* (first
10 ms block above the threshold after 200 ms of quiet) is recorded.  Per marker:

- ``mouth_to_station_s``: heard - mouth (p50, p95, max over markers and listeners);
- ``on_air_s``: from the session frame to the service saying it is on air (the mount
  answers and the play command is stored);
- ``all_reading_s``: from then until every paged station has read stream bytes;
- ``stop_all_s``: from the socket closing (the browser leaving) until every station's
  play ended.

Baseline, same Icecast, same Voice: ffmpeg encodes the PCM straight to MP3 and pushes
it to its own mount (``icecast://``); one HTTP reader decodes it the same way:
``baseline_mouth_to_ear_s``.  The difference is what the service adds (WebM/Opus from
the "browser", the WebSocket, the re-encode) plus the station's reading.

    python benchmarks/bench_live.py --out FILE.json [--areas tan-an] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_broadcast as bb  # noqa: E402
import httpx  # noqa: E402
from timing import report_json  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from firmware_bridge.simulator import FleetConfig, FleetThread, SimSettings, StationSpec  # noqa: E402
from tests.support.icecast import (  # noqa: E402
    WEBM,
    OnsetDetector,
    Voice,
    latencies,
    running_icecast,
)
from tests.support.mosquitto import Mosquitto, free_port  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402
from tests.support.service import ServiceProcess, run_cli, service_env  # noqa: E402

MP3 = ["-c:a", "libmp3lame", "-b:a", "64k", "-ac", "1", "-ar", "44100", "-flush_packets", "1"]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def baseline(icecast: Any, seconds: float, period_s: float) -> dict[str, Any]:
    """ffmpeg -> Icecast -> one reader, no service."""
    push = f"icecast://source:{icecast.source_password}@{icecast.host}:{icecast.port}/bare.mp3"
    voice = Voice([*MP3, "-content_type", "audio/mpeg", "-f", "mp3", push], period_s=period_s)
    voice.start()
    detector = OnsetDetector()
    try:
        url = f"{icecast.public_url}/bare.mp3"
        deadline = time.monotonic() + 10
        while True:
            try:
                with httpx.stream("GET", url, timeout=5) as response:
                    if response.status_code == 200:
                        stop = time.monotonic() + seconds
                        for chunk in response.iter_raw():
                            detector.feed(chunk)
                            if time.monotonic() > stop:
                                break
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the bare mount never answered")
            time.sleep(0.1)
    finally:
        voice.stop()
        detector.close()
    found = latencies(voice.marks, detector.onsets, period_s)
    return {"markers": len(voice.marks), "mouth_to_ear_s": summary(found)}


def through_service(
    args: argparse.Namespace, workdir: Path, broker: Mosquitto, icecast: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    database_url = f"sqlite:///{workdir}/broadcaster.db"
    port = free_port()
    env = service_env(
        database_url=database_url,
        mqtt_url=broker.url,
        media_dir=workdir / "media",
        public_base_url=f"http://127.0.0.1:{port}",
        extra={"BROADCASTER_LIVE_ICECAST_URL": icecast.source_url},
    )
    service = ServiceProcess(role="all", port=port, env=env, log_path=workdir / "service.log")
    detectors: dict[str, OnsetDetector] = {}
    fleet: FleetThread | None = None
    voice: Voice | None = None
    try:
        run_cli(["seed", "tan-an"], env)
        token, _, _ = bb.fill_registry(database_url, 108)
        service.start()
        service.wait_ready(timeout_s=120, worker="active")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.base_url, headers=headers, timeout=60) as http:
            sids: list[str] = []
            for area in args.areas.split(","):
                page = http.get(f"/api/v1/stations?area={area}&limit=500").json()
                sids.extend(s["sid"] for s in page["items"])
        out["stations"] = len(sids)
        listeners = sids[: args.listeners]
        for sid in listeners:
            detectors[sid] = OnsetDetector()

        def tap(sid: str, ref: str, chunk: bytes) -> None:
            detector = detectors.get(sid)
            if detector is not None:
                detector.feed(chunk)

        fleet = FleetThread(
            FleetConfig(
                mqtt_url=broker.url,
                state_dir=workdir / "sim",
                settings=replace(SimSettings(), stream_tap=tap),
            ),
            [StationSpec(sid) for sid in sids],
        )
        fleet.start(timeout_s=120)
        time.sleep(3)  # births, desired and reported of the start settle
        url = service.base_url.replace("http://", "ws://") + "/api/v1/live/audio"
        with connect(url, additional_headers=headers, open_timeout=10) as ws:
            t0 = time.monotonic()
            ws.send(json.dumps({"targets": {"areas": args.areas.split(",")}, "title": "bench"}))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
            voice = Voice(WEBM, stdout=subprocess.PIPE, period_s=args.period_s).start()

            def pump() -> None:
                assert voice is not None
                assert voice.process is not None
                assert voice.process.stdout is not None
                while chunk := voice.process.stdout.read1(4096):  # type: ignore[attr-defined]
                    try:
                        ws.send(chunk)
                    except Exception:
                        return

            threading.Thread(target=pump, daemon=True).start()
            frame = json.loads(ws.recv(timeout=30))
            assert frame["type"] == "live", frame
            on_air = time.monotonic()
            out["on_air_s"] = round(on_air - t0, 3)
            cmd_id = _cmd_id(service.base_url, headers, frame["broadcast_id"])

            def reading() -> int:
                assert fleet is not None
                count = 0
                for sid in sids:
                    plays = [p for p in fleet.station(sid).plays if p.cmd_id == cmd_id]
                    if plays and plays[0].stream is not None and plays[0].stream.bytes:
                        count += 1
                return count

            deadline = time.monotonic() + 30
            while reading() < len(sids) and time.monotonic() < deadline:
                time.sleep(0.02)
            out["reading"] = reading()
            out["all_reading_s"] = round(time.monotonic() - on_air, 3)
            time.sleep(args.seconds)
            ws.close()
            gone = time.monotonic()

        def playing() -> int:
            assert fleet is not None
            return sum(
                1
                for sid in sids
                for p in fleet.station(sid).plays
                if p.cmd_id == cmd_id and p.outcome == "playing"
            )

        deadline = time.monotonic() + 30
        while playing() and time.monotonic() < deadline:
            time.sleep(0.02)
        out["still_playing"] = playing()
        out["stop_all_s"] = round(time.monotonic() - gone, 3)
        voice.stop()
        for detector in detectors.values():
            detector.close()
        found = [
            value
            for detector in detectors.values()
            for value in latencies(voice.marks, detector.onsets, args.period_s)
        ]
        out["markers"] = len(voice.marks)
        out["listeners"] = len(detectors)
        out["mouth_to_station_s"] = summary(found)
        out["server_memory_after"] = bb.memory(service.pid)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["error_trace"] = traceback.format_exc()[-2000:]
        out["service_log_tail"] = service.log_tail(30)
    finally:
        if voice is not None:
            voice.stop()
        for detector in detectors.values():
            detector.close()
        if fleet is not None:
            fleet.stop()
        service.stop()
    return out


def _cmd_id(base_url: str, headers: dict[str, str], broadcast_id: int) -> str:
    answer = httpx.get(f"{base_url}/api/v1/broadcasts/{broadcast_id}", headers=headers)
    answer.raise_for_status()
    return str(answer.json()["cmd_id"])


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--areas", default="xa-loi-binh-nhon", help="comma-separated area codes to page"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to speak")
    parser.add_argument("--period-s", type=float, default=2.0, help="one marker tone per period")
    parser.add_argument("--listeners", type=int, default=3, help="stations whose audio is timed")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "live",
        "cpu_count": os.cpu_count(),
        "areas": args.areas,
        "seconds": args.seconds,
    }
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(workdir / "broker").start()
        try:
            with running_icecast(workdir / "icecast") as icecast:
                report["baseline"] = baseline(icecast, args.seconds, args.period_s)
                report["service"] = through_service(args, workdir, broker, icecast)
        finally:
            broker.stop()
    service = report["service"].get("mouth_to_station_s", {})
    bare = report["baseline"]["mouth_to_ear_s"]
    if service.get("p50") is not None and bare.get("p50"):
        report["mouth_to_station_p50_vs_baseline"] = {
            "service_s": service["p50"],
            "baseline_s": bare["p50"],
            "added_s": round(service["p50"] - bare["p50"], 3),
            "ratio": bb.ratio(service["p50"], bare["p50"]),
        }
    report_json(report, args.out)
    return 1 if "error" in report["service"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
