"""A real Mosquitto broker for tests, on a free port, with its own config file.

``Mosquitto(tmp_path).start()`` writes ``mosquitto.conf`` into the directory, starts
``mosquitto -c``, and returns once the listener accepts TCP connections. ``stop()``
(SIGTERM: persistence is saved), ``kill()`` (SIGKILL) and ``restart()`` (same port, same
data directory, so retained messages and persistent sessions survive when
``persistence`` is on). ``extra_config`` lines are appended verbatim, e.g. to load the
dynamic-security plugin.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.process import ChildProcess

__all__ = [
    "DYNSEC_PLUGIN",
    "Mosquitto",
    "dynsec_init",
    "find_mosquitto",
    "free_port",
    "requires_mosquitto",
]

DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def dynsec_init(config_file: Path, admin: str, password: str) -> list[str]:
    """Create a dynamic-security file with an admin client; return the config lines."""
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config_file), admin, password],
        check=True,
        capture_output=True,
    )
    return [f"plugin {DYNSEC_PLUGIN}", f"plugin_opt_config_file {config_file}"]


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    candidates = (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def requires_mosquitto() -> Any:
    """A ``skipif`` marker for tests that start a real broker."""
    import pytest  # lazily: the benchmark imports this module without pytest

    return pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (and ``bind(0)``)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_slice() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range (so
    no client connection of any process can take one between choosing and binding),
    one slice per pytest-xdist worker (so two workers never choose the same one)."""
    low_ephemeral, _ = _ephemeral_range()
    low, high = 10_000, low_ephemeral
    if high - low < 2_000:  # an unusual kernel setting: no room below it
        return range(0)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    index = int(re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "")) or 0)
    size = (high - low) // workers
    start = low + (index % workers) * size
    return range(start, start + size)


_next_port: list[int] = []


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 and likely to stay free until a server binds it.

    A port from ``bind(0)`` is one of the kernel's ephemeral ports, which any process's
    next outgoing connection (to PostgreSQL, to a broker) may take before the server
    binds it: seen in CI as "address already in use".  Ports are therefore taken in
    turn from a slice below the ephemeral range (:func:`_port_slice`), never twice in
    one process, starting at a random place so processes outside pytest-xdist rarely
    meet; each is checked free before it is handed out."""
    ports = _port_slice()
    if ports:
        if not _next_port:
            _next_port.append(random.randrange(len(ports)))
        for _ in range(len(ports)):
            port = ports[_next_port[0] % len(ports)]
            _next_port[0] += 1
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


class Mosquitto:
    """One mosquitto process bound to 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        persistence: bool = False,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = found
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.extra_config = list(extra_config)
        self._proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:{port}``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's process id (while it runs)."""
        assert self._proc is not None, "broker not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.running

    def write_config(self) -> Path:
        """Write the config file and return its path."""
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            "max_keepalive 65535",
            # as `broadcaster mqtt bootstrap` writes it: the service acknowledges QoS 1
            # messages only once stored, so a burst waits in the broker's queue
            "max_queued_messages 100000",
            "max_inflight_messages 1000",
        ]
        if os.geteuid() == 0:
            # Run as root, mosquitto would switch to user "mosquitto", which cannot read
            # pytest's private temp directories (password file, persistence).
            lines.append("user root")
        if self.persistence:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            lines += [
                "persistence true",
                f"persistence_location {self.data_dir}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        self.write_config()
        self._proc = ChildProcess(
            [self.binary, "-c", str(self.config_path)], log_path=self.log_path, name="mosquitto"
        ).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._proc.running:
                raise RuntimeError(f"mosquitto exited early:\n{self.read_log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return self
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"mosquitto did not listen on {self.port}:\n{self.read_log()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (persistence is written) and wait."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: nothing is saved, clients see their sockets die."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self, timeout_s: float = 10.0) -> Mosquitto:
        """Stop and start again on the same port and data directory."""
        self.stop()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.start(timeout_s)
            except RuntimeError:
                # The port may linger briefly; retry until the deadline.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def ctrl(self, username: str, password: str, *args: str) -> str:
        """Run ``mosquitto_ctrl -u username -P password ARGS`` against this broker."""
        done = subprocess.run(
            [
                "mosquitto_ctrl",
                *("-h", self.host, "-p", str(self.port)),
                *("-u", username, "-P", password),
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def read_log(self) -> str:
        """The broker's log so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        if self._proc is None:
            return
        if sig is signal.SIGKILL:
            self._proc.kill()
        else:
            self._proc.stop(timeout_s)
        self._proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
