"""Desired-state republish benchmark: a city-wide change to N stations' retained
``desired`` documents, beside a bare paho loop publishing N retained messages of the same
size on the same broker.

For each size N (default 1,000 and 10,000): Mosquitto with the broadcast benchmark's
limits; ``broadcaster seed tan-an`` into a fresh SQLite file (the relay chain plays on
every station) grown to N stations; then, in this process, with the service's own code
(``broadcaster.dispatch.desired`` over a real :class:`~firmware_bridge.client.Bridge`):

- ``initial``: build and apply every station's document (all new: all published);
- ``city_wide_change``: every station's default volume changes (one statement), then
  build and apply: every document changed, every one republished;
- ``unchanged``: build and apply again: nothing to publish (the cost of a no-op check);
- ``baseline``: a bare paho client publishes N retained QoS 1 messages of the documents'
  mean size on N topics and waits for every PUBACK.

Each step records ``build_s``, ``apply_s``, ``total_s``, the counts, the number of
distinct plans, and the ratio of the change's total to the baseline.

    python benchmarks/bench_desired.py --out FILE.json [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import paho.mqtt.client as mqtt  # noqa: E402
from bench_broadcast import BROKER_LIMITS, fill_registry, run_report  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from firmware_bridge import paho_loop  # noqa: E402
from kernel.local_time import SITE_ZONE  # noqa: E402
from tests.support.loa import poll  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402

TZ = SITE_ZONE
PROFILE = False


def republish(factory: Any, library: Any, bridge: Any) -> dict[str, Any]:
    """One ``build`` + ``apply`` over every station, timed."""
    from broadcaster.dispatch import desired
    from kernel.db import utcnow

    with factory() as session:
        now = utcnow()
        t = time.monotonic()
        docs = desired.build(session, library, tz=TZ, now=now)
        built = time.monotonic()
        result = desired.apply(session, bridge, docs, tz=TZ, now=now)
        session.commit()
        done = time.monotonic()
    sizes = [len(doc.payload(1, now)) for doc in docs[:: max(1, len(docs) // 50)]]
    return {
        "build_s": round(built - t, 2),
        "apply_s": round(done - built, 2),
        "total_s": round(done - t, 2),
        "documents": len(docs),
        "distinct_plans": len({id(doc.plan) for doc in docs}),
        "changed": result.changed,
        "published": result.published,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "mean_payload_bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
    }


def bare_retained(host: str, port: int, n: int, size: int) -> dict[str, Any]:
    """N retained QoS 1 publishes of ``size`` bytes from one paho client, until every
    PUBACK is back."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare-desired", protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(0)  # no client-side cap: like the bridge's batches
    client.max_queued_messages_set(0)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        payload = b"x" * size
        t = time.monotonic()
        infos = [
            client.publish(f"bench/desired/{i}", payload, qos=1, retain=True) for i in range(n)
        ]
        for info in infos:
            info.wait_for_publish(120)
        took = time.monotonic() - t
        acked = sum(info.is_published() for info in infos)
    finally:
        paho_loop.close(client)
    return {"messages": n, "payload_bytes": size, "acked": acked, "total_s": round(took, 2)}


def run_size(n: int, workdir: Path) -> dict[str, Any]:
    from sqlalchemy import update

    from audio_library.service import MediaLibrary
    from audio_library.settings import AudioSettings
    from broadcaster import db
    from firmware_bridge.client import Bridge, BridgeConfig
    from stations.models import Station
    from tests.support.mosquitto import Mosquitto
    from tests.support.service import ServiceProcess, run_cli

    out: dict[str, Any] = {"stations": n, "loadavg_at_start": list(os.getloadavg())}
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir / "broker", extra_config=BROKER_LIMITS).start()
    database_url = f"sqlite:///{workdir}/broadcaster.db"
    service = ServiceProcess.on_a_free_port(
        database_url=database_url, mqtt_url=broker.url, workdir=workdir
    )
    run_cli(["seed", "tan-an"], service.env)
    fill_registry(database_url, n)
    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    library = MediaLibrary(
        AudioSettings(),
        root=workdir / "media",
        url_secret=b"bench" * 8,
        public_base_url="http://127.0.0.1:8000",
        workers=1,
    )
    bridge = Bridge(BridgeConfig(url=broker.url), lambda batch: None)
    bridge.start()
    try:
        if not poll(lambda: bridge.connected, timeout_s=30):
            raise TimeoutError("bridge did not connect")
        out["initial"] = republish(factory, library, bridge)
        with db.session_scope(factory) as session:
            session.execute(update(Station).values(default_volume=Station.default_volume - 5))
        if PROFILE:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            out["city_wide_change"] = profiler.runcall(republish, factory, library, bridge)
            stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
            stats.print_stats(30)
        else:
            out["city_wide_change"] = republish(factory, library, bridge)
        out["unchanged"] = republish(factory, library, bridge)
        size = out["city_wide_change"]["mean_payload_bytes"]
        out["baseline"] = bare_retained(broker.host, broker.port, n, size)
        out["ratio_change_vs_baseline"] = round(
            out["city_wide_change"]["total_s"] / max(out["baseline"]["total_s"], 1e-3), 1
        )
        out["summary"] = {
            "city_wide_change_total_s": out["city_wide_change"]["total_s"],
            "unchanged_total_s": out["unchanged"]["total_s"],
            "baseline_total_s": out["baseline"]["total_s"],
            "ratio_change_vs_baseline": out["ratio_change_vs_baseline"],
        }
    finally:
        bridge.stop()
        library.shutdown()
        engine.dispose()
        broker.stop()
    return out


def main() -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true", help="cProfile the change (stderr)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    report: dict[str, Any] = {"benchmark": "desired", "cpu_count": os.cpu_count(), "runs": []}
    return run_report(report, args, run_size)


if __name__ == "__main__":
    raise SystemExit(main())
