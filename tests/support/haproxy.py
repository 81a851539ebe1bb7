"""HAProxy (Debian's ``haproxy``) in front of several ``broadcaster serve --role api``
replicas, for the replicated-service tests: one address, health checks on ``/readyz``,
a failed connection retried on another replica.

``HAProxy(directory, port, backends).start()`` writes the configuration (the same shape
as ``deploy/haproxy/broadcaster.cfg``: see :func:`render_config`), checks it with
``haproxy -c`` and runs ``haproxy -db`` (foreground) as a
:class:`~tests.support.process.ChildProcess`; ``wait_up()`` waits until it answers and
``server_states()`` reads what its health checks think of each replica from the
runtime socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.process import ChildProcess

__all__ = ["HAProxy", "find_haproxy", "render_config", "requires_haproxy"]


def find_haproxy() -> str | None:
    found = shutil.which("haproxy")
    if found is None and Path("/usr/sbin/haproxy").exists():
        found = "/usr/sbin/haproxy"
    return found


def requires_haproxy() -> Any:
    """A ``skipif`` marker for tests that start HAProxy (``scripts/system-deps.sh``)."""
    import pytest

    return pytest.mark.skipif(find_haproxy() is None, reason="haproxy is not installed")


def render_config(
    *,
    port: int,
    backends: Sequence[tuple[str, int]],
    socket_path: Path | None = None,
    check_interval_ms: int = 1000,
) -> str:
    """The load balancer's configuration: HTTP on 127.0.0.1:``port``, round robin over
    ``backends`` ((name, port) on 127.0.0.1), each checked with ``GET /readyz`` every
    ``check_interval_ms`` (a check may take 5 s on a loaded machine; down after 3
    failures, up after 2 successes); a request whose
    connection fails is retried on another replica (``option redispatch``); each answer
    names the replica that gave it (``X-Replica``).  Long
    server timeouts keep the dashboard's progress streams (server-sent events) open."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{backend_port} check inter {check_interval_ms} fall 3 rise 2"
        for name, backend_port in backends
    )
    stats = f"    stats socket {socket_path} mode 600 level admin\n" if socket_path else ""
    return f"""global
    log stdout format raw local0 info
{stats}
defaults
    mode http
    log global
    option httplog
    option redispatch 1
    retries 3
    retry-on conn-failure empty-response
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout http-request 10s
    timeout check 5s

frontend broadcaster
    bind 127.0.0.1:{port}
    option forwardfor
    http-response set-header X-Replica %s
    default_backend api

backend api
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
{servers}
"""


class HAProxy(ChildProcess):
    """One ``haproxy`` process on 127.0.0.1:``port`` in front of ``backends``."""

    def __init__(self, directory: Path, port: int, backends: Sequence[tuple[str, int]]) -> None:
        binary = find_haproxy()
        assert binary is not None, "haproxy is not installed (scripts/system-deps.sh)"
        self.binary = binary
        self.port = port
        self.directory = directory
        self.socket_path = directory / "haproxy.sock"
        self.config_path = directory / "haproxy.cfg"
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(port=port, backends=backends, socket_path=self.socket_path)
        )
        super().__init__(
            [binary, "-db", "-f", str(self.config_path)],
            log_path=directory / "haproxy.log",
            name="haproxy",
        )

    def check(self) -> str:
        """``haproxy -c``: raise with its output if the configuration is invalid."""
        done = subprocess.run(
            [self.binary, "-c", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"haproxy -c failed:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def start(self) -> HAProxy:
        self.check()
        super().start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout_s: float = 30.0, *, servers_up: int = 1) -> None:
        """Until ``/readyz`` answers 200 through the balancer and at least
        ``servers_up`` replicas pass their health checks."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.alive()
            try:
                ok = httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok and sum(1 for s in self.server_states().values() if s == "UP") >= servers_up:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"haproxy not up with {servers_up} replicas: {self.server_states()}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def command(self, line: str) -> str:
        """One command on the runtime (stats) socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(f"{line}\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """``{replica name: UP | DOWN | ...}`` as the health checks see them."""
        try:
            answer = self.command("show stat")
        except OSError:
            return {}
        lines = answer.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        states: dict[str, str] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "api" and row.get("svname") not in ("BACKEND", None):
                states[row["svname"]] = row.get("status", "").split(" ")[0]
        return states
