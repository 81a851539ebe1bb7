"""The streaming server of live paging: a real Icecast2 (Debian ``icecast2``).

:func:`write_config` writes an Icecast configuration of our own (listener on
127.0.0.1 or a given address, random source and admin passwords, logs to stderr, no
burst on connect: a listener starts at the live edge, which is what paging needs) and
returns the URL the service pushes to (``http://source:<password>@host:port``, the
value of ``BROADCASTER_LIVE_ICECAST_URL``).  :class:`IcecastServer` runs it as a child
process (``make demo``, tests, benchmarks).  Icecast refuses to run as root: as root the
configuration drops to the ``icecast2`` account the Debian package creates.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import http.client
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

__all__ = [
    "IcecastServer",
    "IcecastSetup",
    "PortTaken",
    "find_icecast",
    "start_on_a_free_port",
    "write_config",
]

#: The Debian package's unprivileged account, used when started as root.
DEBIAN_USER = ("icecast2", "icecast")


def find_icecast() -> str | None:
    """The Icecast binary (``icecast2`` on Debian), or None."""
    return shutil.which("icecast2") or shutil.which("icecast")


@dataclass(frozen=True)
class IcecastSetup:
    """A written configuration: where, which port, and the source login."""

    config_path: Path
    host: str
    port: int
    source_password: str
    admin_password: str

    @property
    def source_url(self) -> str:
        """``BROADCASTER_LIVE_ICECAST_URL``: where the service pushes (with the login)."""
        return f"http://source:{self.source_password}@{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The base of the mount URLs stations are given."""
        return f"http://{self.host}:{self.port}"


def _owner() -> str:
    if os.geteuid() != 0:
        return ""
    user, group = DEBIAN_USER
    try:
        pwd.getpwnam(user)
        grp.getgrnam(group)
    except KeyError as exc:
        raise RuntimeError(
            "Icecast refuses to run as root and the icecast2 account does not exist: "
            "install the Debian package icecast2"
        ) from exc
    return f"<changeowner><user>{user}</user><group>{group}</group></changeowner>"


def write_config(
    directory: Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    max_clients: int = 5000,
    max_sources: int = 32,
) -> IcecastSetup:
    """Write ``directory/icecast.xml`` (mode 600, fresh random passwords)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = secrets.token_urlsafe(18)
    admin = secrets.token_urlsafe(18)
    share = Path("/usr/share/icecast2")
    text = f"""<icecast>
  <location>Tân An</location>
  <admin>broadcaster@localhost</admin>
  <limits>
    <clients>{max_clients}</clients>
    <sources>{max_sources}</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>5</source-timeout>
    <burst-on-connect>0</burst-on-connect>
    <burst-size>0</burst-size>
  </limits>
  <authentication>
    <source-password>{escape(source)}</source-password>
    <relay-password>{escape(secrets.token_urlsafe(18))}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>{escape(admin)}</admin-password>
  </authentication>
  <hostname>{escape(host)}</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>{escape(host)}</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>{share}</basedir>
    <logdir>{escape(str(directory.resolve()))}</logdir>
    <webroot>{share / "web"}</webroot>
    <adminroot>{share / "admin"}</adminroot>
  </paths>
  <logging>
    <accesslog>-</accesslog>
    <errorlog>-</errorlog>
    <loglevel>2</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>
    {_owner()}
  </security>
</icecast>
"""
    path = directory / "icecast.xml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return IcecastSetup(path, host, port, source, admin)


def _answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _is_ours(setup: IcecastSetup) -> bool:
    """Whether the server answering on the setup's port knows its admin password (another
    Icecast, or any other server, does not)."""
    token = base64.b64encode(f"admin:{setup.admin_password}".encode()).decode()
    connection = http.client.HTTPConnection(setup.host, setup.port, timeout=2.0)
    try:
        connection.request("GET", "/admin/stats", headers={"Authorization": f"Basic {token}"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class PortTaken(RuntimeError):
    """Another server answers on the configured port (Icecast could not bind it)."""


class IcecastServer:
    """Icecast as a child process on the configuration ``setup``."""

    def __init__(self, setup: IcecastSetup, *, log: Path | None = None) -> None:
        self.setup = setup
        self._log_path = log or setup.config_path.with_name("icecast.log")
        self._log: IO[bytes] | None = None
        self._child: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> IcecastServer:
        binary = find_icecast()
        if binary is None:
            raise RuntimeError("icecast2 is not installed (scripts/system-deps.sh installs it)")
        self._log = self._log_path.open("ab")
        self._child = subprocess.Popen(
            [binary, "-c", str(self.setup.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        host, port = self.setup.host, self.setup.port
        while not _answers(host, port):
            if self._child.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Icecast did not start; see {self._log_path}")
            time.sleep(0.05)
        # something answers: ours, unless another server held the port and Icecast, not
        # able to bind it, is exiting (it would be found gone only at the first stream)
        if not _is_ours(self.setup):
            self.stop()
            raise PortTaken(
                f"port {port} on {host} is taken by another server; "
                f"Icecast did not start, see {self._log_path}"
            )
        return self

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


def start_on_a_free_port(
    directory: Path, choose_port: Callable[[], int], *, attempts: int = 3
) -> tuple[IcecastServer, IcecastSetup]:
    """Icecast configured under ``directory`` on a port ``choose_port`` finds free,
    started; if another server takes that port first (`PortTaken`), again on the next
    port it finds, at most ``attempts`` times (the last refusal is raised)."""
    for attempt in range(1, attempts + 1):
        setup = write_config(directory, port=choose_port())
        try:
            return IcecastServer(setup).start(), setup
        except PortTaken:
            if attempt == attempts:
                raise
    raise ValueError("attempts must be at least 1")
