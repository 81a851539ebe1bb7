"""A real NATS Server cluster (MQTT gateway + JetStream) for tests, on free ports.

``NatsCluster(workdir, auth_file, nodes=3).start()`` writes one configuration per node
(its own client, route, MQTT and monitoring ports and its own JetStream store directory),
starts every ``nats-server`` through :class:`~tests.support.process.ChildProcess`, and
returns once each node answers ``/healthz`` (JetStream current) and accepts MQTT.
Every node ``include``\\ s the same ``auth_file``: the authorization block the service's
:class:`~broadcaster.broker.nats_auth.NatsAuth` writes (create it first, e.g. with
:func:`broadcaster.broker.service.init_nats_auth`).

``kill(i)`` is SIGKILL (a crashed node), ``start_node(i)`` starts it again on the same
ports and store; ``url(user, password)`` names every node's MQTT listener in one URL,
which is what the service and the simulator are given.  MQTT sessions, retained messages
and QoS 1 deliveries are JetStream streams replicated on every node
(``mqtt { stream_replicas: N }``), so they survive the loss of one node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.mosquitto import free_port
from tests.support.process import ChildProcess

__all__ = ["NatsCluster", "NatsNode", "find_nats_server", "requires_nats_server"]


def find_nats_server() -> str | None:
    """Path of the nats-server binary (Debian: /usr/sbin/nats-server), or None."""
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


def requires_nats_server() -> Any:
    """A ``skipif`` marker for tests that start a NATS cluster."""
    import pytest  # lazily: benchmarks import this module without pytest

    return pytest.mark.skipif(find_nats_server() is None, reason="nats-server is not installed")


@dataclass
class NatsNode:
    """One node's name, ports and files."""

    name: str
    directory: Path
    client_port: int
    route_port: int
    mqtt_port: int
    http_port: int
    proc: ChildProcess | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "nats.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "nats.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class NatsCluster:
    """``nodes`` nats-server processes on 127.0.0.1 forming one JetStream cluster."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, auth_file: Path, *, nodes: int = 3) -> None:
        binary = find_nats_server()
        if binary is None:
            raise RuntimeError("nats-server is not installed")
        self.binary = binary
        self.workdir = Path(workdir)
        self.auth_file = Path(auth_file).resolve()
        self.nodes = [
            NatsNode(
                name=f"n{i + 1}",
                directory=self.workdir / f"n{i + 1}",
                client_port=free_port(),
                route_port=free_port(),
                mqtt_port=free_port(),
                http_port=free_port(),
            )
            for i in range(nodes)
        ]

    # --- addresses ---------------------------------------------------------------------

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """``mqtt://[user:password@]host:p1,host:p2,...`` (every node's MQTT listener)."""
        auth = ""
        if username is not None:
            auth = quote(username, safe="") + (
                f":{quote(password, safe='')}" if password is not None else ""
            )
            auth += "@"
        hosts = ",".join(f"{self.host}:{n.mqtt_port}" for n in self.nodes)
        return f"mqtt://{auth}{hosts}"

    @property
    def pid_files(self) -> list[Path]:
        return [n.pid_file for n in self.nodes]

    # --- lifecycle ---------------------------------------------------------------------

    def write_config(self, node: NatsNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(
            f'"nats://{self.host}:{other.route_port}"' for other in self.nodes if other is not node
        )
        replicas = min(3, len(self.nodes))
        node.config_path.write_text(
            "\n".join(
                [
                    f"server_name: {node.name}",
                    f"listen: {self.host}:{node.client_port}",
                    f"http: {self.host}:{node.http_port}",
                    f'pid_file: "{node.pid_file}"',
                    f'jetstream {{ store_dir: "{node.directory / "js"}" }}',
                    "cluster {",
                    "  name: loa",
                    f"  listen: {self.host}:{node.route_port}",
                    f"  routes: [{routes}]",
                    "}",
                    "mqtt {",
                    f"  listen: {self.host}:{node.mqtt_port}",
                    f"  stream_replicas: {replicas}",
                    # QoS 1 redelivery to a station that did not acknowledge
                    '  ack_wait: "10s"',
                    "  max_ack_pending: 1000",
                    "}",
                    # nats-server 2.9 resolves includes relative to the config file only
                    f'include "{os.path.relpath(self.auth_file, node.directory)}"',
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def start(self, timeout_s: float = 60.0) -> NatsCluster:
        """Start every node and wait until the cluster serves MQTT."""
        try:
            for node in self.nodes:
                self.write_config(node)
                self._spawn(node)
            self.wait_healthy(self.nodes, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, index: int, timeout_s: float = 60.0) -> NatsNode:
        """(Re)start node ``index`` on its ports and JetStream store."""
        node = self.nodes[index]
        if not node.running:
            self._spawn(node)
        # a restarted node catches up stream by stream; serving MQTT needs the server
        # and the JetStream meta group only
        self.wait_healthy([node], timeout_s, server_only=True)
        return node

    def kill(self, index: int) -> NatsNode:
        """SIGKILL node ``index``: its clients see their sockets die."""
        node = self.nodes[index]
        if node.proc is not None:
            node.proc.kill()
            node.proc = None
        return node

    def stop(self) -> None:
        """SIGTERM every node (then SIGKILL if one does not exit)."""
        for node in self.nodes:
            if node.proc is not None:
                node.proc.stop(15)
                node.proc = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- readiness ---------------------------------------------------------------------

    def config_loads(self) -> dict[str, str]:
        """Each running node's ``config_load_time`` (``/varz``): it changes on a reload."""
        loads: dict[str, str] = {}
        for node in self.nodes:
            if not node.running:
                continue
            url = f"http://{self.host}:{node.http_port}/varz"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as answer,
            ):
                loads[node.name] = str(json.loads(answer.read())["config_load_time"])
        return loads

    def wait_reloaded(self, before: dict[str, str], timeout_s: float = 10.0) -> None:
        """Wait until every running node reloaded its configuration since ``before``."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = self.config_loads()
            if all(now.get(name) not in (None, seen) for name, seen in before.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS nodes did not reload: {before} -> {now}")
            time.sleep(0.05)

    def wait_healthy(
        self, nodes: Sequence[NatsNode], timeout_s: float, *, server_only: bool = False
    ) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(nodes)
        while waiting:
            node = waiting[0]
            if node.proc is None or not node.proc.running:
                raise RuntimeError(f"nats-server {node.name} exited:\n{node.read_log()[-3000:]}")
            if self._healthy(node, server_only=server_only):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nats-server {node.name} not healthy:\n{node.read_log()[-3000:]}"
                )
            time.sleep(0.1)

    def _healthy(self, node: NatsNode, *, server_only: bool) -> bool:
        url = f"http://{self.host}:{node.http_port}/healthz"
        if server_only:
            url += "?js-server-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - loopback http
                if answer.status != 200:
                    return False
        except OSError:
            return False
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, node.mqtt_port), 0.5),
        ):
            return True
        return False

    def _spawn(self, node: NatsNode) -> None:
        node.proc = ChildProcess(
            [self.binary, "-c", str(node.config_path)],
            log_path=node.log_path,
            name=f"nats-{node.name}",
        ).start()
