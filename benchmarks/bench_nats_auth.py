"""Station accounts on the NATS cluster at 1,000 and 10,000 stations.

A real 3-node NATS Server cluster on loopback (``tests/support/nats_cluster.py``) whose
users the service's backend (`broadcaster.broker.nats_auth.NatsAuth`) writes:

- ``provision_s``: one batch creating every station's role and account (what
  ``broadcaster stations credentials --all`` sends: bcrypt hashing, the JSON model and
  the NATS include file written, the nodes signalled);
- ``reload_s``: from ``SIGHUP`` until all three nodes report the new configuration
  (``/varz`` ``config_load_time``), beside ``bare_reload_s``, the same reload with the
  service account alone, measured in the same run;
- ``noop_sync_s``: reading every client and role back (what a sync that finds nothing
  to change costs);
- ``connect_ms``: median MQTT CONNECT -> CONNACK of a station with its secret (the
  node verifies the bcrypt hash), over ``--connects`` stations;
- ``auth_file_mb`` and each node's RSS after the reload.

Wall times beside CPU times (this process for provisioning and the sync, the three
nodes for a reload) and the machine's load average: on a shared machine the wall
times measure the contention as much as the work.

    python benchmarks/bench_nats_auth.py --sizes 1000,10000 --out FILE.json
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from timing import report_json  # noqa: E402

from broadcaster.broker import dynsec as ds  # noqa: E402
from broadcaster.broker.nats_auth import NatsAuth  # noqa: E402
from broadcaster.broker.provisioning import (  # noqa: E402
    ADMIN_ROLE,
    SERVER_ROLE,
    admin_acls,
    server_acls,
    station_acls,
    station_client_id,
    station_role,
)
from firmware_bridge.topics import Topics  # noqa: E402
from tests.support.nats_cluster import NatsCluster  # noqa: E402
from tests.support.process import (  # noqa: E402
    cpu_seconds,
    memory_mb,
    stop_children_on_sigterm,
)

T = Topics()


def _nodes_cpu(cluster: NatsCluster) -> float:
    return sum(cpu_seconds(n.proc.pid) for n in cluster.nodes if n.proc is not None)


def _timed_reload(cluster: NatsCluster, auth: NatsAuth) -> tuple[float, float]:
    """(wall seconds until every node reloaded, CPU seconds the three nodes spent)."""
    before = cluster.config_loads()
    cpu = _nodes_cpu(cluster)
    started = time.perf_counter()
    auth.reload()
    cluster.wait_reloaded(before, timeout_s=300)
    return time.perf_counter() - started, _nodes_cpu(cluster) - cpu


def _connect_ms(host: str, port: int, sid: str, password: str) -> float:
    done: list[float] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=station_client_id(sid), protocol=mqtt.MQTTv311
    )
    client.username_pw_set(sid, password)
    client.on_connect = lambda c, u, f, rc, p: done.append(0.0 if rc.is_failure else 1.0)
    started = time.perf_counter()
    client.connect(host, port, keepalive=30)
    while not done:
        client.loop(timeout=0.05)
        if time.perf_counter() - started > 30:
            raise TimeoutError(f"{sid}: no CONNACK")
    elapsed = (time.perf_counter() - started) * 1000
    client.disconnect()
    if done[0] != 1.0:
        raise RuntimeError(f"{sid}: connection refused")
    return elapsed


def run_size(size: int, connects: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        auth_file = Path(tmp) / "auth" / "loa-auth.conf"
        cluster = NatsCluster(Path(tmp) / "cluster", auth_file)
        auth = NatsAuth(auth_file, cluster.pid_files, username="broadcaster")
        auth.init(
            "broadcaster",
            secrets.token_urlsafe(16),
            {
                SERVER_ROLE: [a.to_json() for a in sorted(server_acls(T))],
                ADMIN_ROLE: [a.to_json() for a in sorted(admin_acls())],
            },
        )
        cluster.start()
        try:
            bare = _timed_reload(cluster, auth)
            sids = [f"st{i:05d}" for i in range(size)]
            passwords = {sid: secrets.token_urlsafe(32) for sid in sids}
            commands: list[ds.Command] = []
            for n, sid in enumerate(sids):
                groups = (f"xa-{n % 96:02d}",)
                commands.append(ds.create_role(station_role(sid), station_acls(T, sid, groups)))
                commands.append(
                    ds.create_client(
                        sid,
                        passwords[sid],
                        clientid=station_client_id(sid),
                        roles=[station_role(sid)],
                    )
                )
            before = cluster.config_loads()
            started = time.perf_counter()
            cpu = time.process_time()
            ds.run(auth, commands)
            provision = time.perf_counter() - started
            provision_cpu = time.process_time() - cpu
            cluster.wait_reloaded(before, timeout_s=300)
            provision_and_reload = time.perf_counter() - started
            reload = _timed_reload(cluster, auth)
            started = time.perf_counter()
            cpu = time.process_time()
            ds.run(auth, [ds.list_clients(), ds.list_roles()])  # as provisioning.broker_view
            noop_sync = time.perf_counter() - started
            noop_sync_cpu = time.process_time() - cpu
            node = cluster.nodes[0]
            samples = [
                _connect_ms(cluster.host, node.mqtt_port, sid, passwords[sid])
                for sid in sids[:: max(1, size // connects)][:connects]
            ]
            rss = {n.name: round(memory_mb(n.proc.pid)[0], 1) for n in cluster.nodes if n.proc}
            return {
                "stations": size,
                "provision_s": round(provision, 2),
                "provision_cpu_s": round(provision_cpu, 2),
                "provision_until_reloaded_s": round(provision_and_reload, 2),
                "reload_s": round(reload[0], 3),
                "reload_nodes_cpu_s": round(reload[1], 3),
                "bare_reload_s": round(bare[0], 3),
                "bare_reload_nodes_cpu_s": round(bare[1], 3),
                "noop_sync_s": round(noop_sync, 3),
                "noop_sync_cpu_s": round(noop_sync_cpu, 3),
                "load_average_1m": round(os.getloadavg()[0], 1),
                "connect_ms_median": round(statistics.median(samples), 2),
                "connects": len(samples),
                "auth_file_mb": round(auth_file.stat().st_size / 1e6, 2),
                "node_rss_mb": rss,
            }
        finally:
            cluster.stop()


def main() -> None:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--connects", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = [run_size(int(s), args.connects) for s in args.sizes.split(",")]
    report_json({"benchmark": "nats_auth", "results": results}, args.out)


if __name__ == "__main__":
    main()
