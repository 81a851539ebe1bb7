"""The real service as a child process (``broadcaster serve``), for crash and fail-over
tests and the benchmarks.

``ServiceProcess(...).start()`` runs ``broadcaster serve --role ROLE --port PORT`` with
the given ``BROADCASTER_*`` environment, logging to a file; ``wait_ready()`` polls
``/readyz``; the rest (``kill()``, ``stop()``, the log) is
:class:`~tests.support.process.ChildProcess`. ``run_cli`` runs any other ``broadcaster``
command (``seed tan-an``...) with the same environment.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from kernel.security import Role as UserRole
from tests.api import make_user
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.process import ChildProcess, ProcessGroup, broadcaster_argv
from tests.support.protocol import Recorder

__all__ = [
    "TEST_SECRET",
    "Deployment",
    "ServiceProcess",
    "deploy",
    "run_cli",
    "serve_on_a_free_port",
    "service_env",
]

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"


def service_env(
    *,
    database_url: str,
    mqtt_url: str,
    media_dir: Path,
    public_base_url: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The process environment for the service: ours minus any BROADCASTER_*, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(
        {
            "BROADCASTER_ENVIRONMENT": "test",
            "BROADCASTER_SECRET_KEY": TEST_SECRET,
            "BROADCASTER_DATABASE_URL": database_url,
            "BROADCASTER_MQTT_URL": mqtt_url,
            "BROADCASTER_MQTT_DYNSEC": "false",
            "BROADCASTER_MEDIA_DIR": str(media_dir),
            "BROADCASTER_PUBLIC_BASE_URL": public_base_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    timeout_s: float = 180.0,
) -> str:
    """Run ``broadcaster ARGS`` to completion and return its output; raise
    ``RuntimeError`` with the output if it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        proc = ChildProcess(
            broadcaster_argv(*args),
            env=env,
            log_path=log_path or Path(scratch) / "cli.log",
            name=f"broadcaster {' '.join(args)}",
        )
        return proc.run(timeout_s).output()


class ServiceProcess(ChildProcess):
    """One ``broadcaster serve`` child process on 127.0.0.1:``port``."""

    def __init__(
        self,
        *,
        role: str,
        port: int,
        env: Mapping[str, str],
        log_path: Path,
        log_level: str = "info",
    ) -> None:
        super().__init__(
            broadcaster_argv(
                "serve",
                *("--role", role),
                *("--host", "127.0.0.1"),
                *("--port", str(port)),
                *("--log-level", log_level),
            ),
            env=env,
            log_path=log_path,
            name=f"service ({role})",
        )
        self.role = role
        self.port = port

    @classmethod
    def on_a_free_port(
        cls,
        *,
        database_url: str,
        mqtt_url: str,
        workdir: Path,
        role: str = "all",
        log_level: str = "warning",
    ) -> ServiceProcess:
        """A service (not started) on a free port, its media and log in ``workdir``."""
        port = free_port()
        env = service_env(
            database_url=database_url,
            mqtt_url=mqtt_url,
            media_dir=workdir / "media",
            public_base_url=f"http://127.0.0.1:{port}",
        )
        return cls(
            role=role,
            port=port,
            env=env,
            log_path=workdir / "service.log",
            log_level=log_level,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """``(status code, body)`` of ``/readyz``, or None if it does not answer."""
        try:
            response = httpx.get(f"{self.base_url}/readyz", timeout=2.0)
        except httpx.HTTPError:
            return None
        try:
            body = response.json()
        except ValueError:
            body = {}
        return response.status_code, body

    def worker_state(self) -> str | None:
        """``active``, ``standby``, ``api only``... as ``/readyz`` says, or None."""
        answer = self.readiness()
        if answer is None:
            return None
        return str(answer[1].get("checks", {}).get("dispatch", {}).get("worker"))

    def wait_ready(self, timeout_s: float = 60.0, *, worker: str | None = None) -> None:
        """Until ``/readyz`` answers 200 (and, if given, the worker is in that state)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"service ({self.role}) exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            answer = self.readiness()
            if (
                answer is not None
                and answer[0] == 200
                and (worker is None or self.worker_state() == worker)
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"service ({self.role}) not ready in {timeout_s:.0f} s "
                    f"(last /readyz: {answer}):\n{self.log_tail()}"
                )
            time.sleep(0.1)


def serve_on_a_free_port(
    group: ProcessGroup, *, attempts: int = 3, timeout_s: float = 60.0, name: str = "serve"
) -> str:
    """``broadcaster serve`` in ``group`` on a port chosen just before; its base URL once
    ``/readyz`` answers 200 (database and broker).  Another process may take the port
    between choosing and binding: then it tries another one."""
    for _ in range(attempts):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        group.env["BROADCASTER_PUBLIC_BASE_URL"] = base  # media URLs for the stations
        proc = group.start(name, "serve", "--port", str(port), "--log-level", "warning")
        deadline = time.monotonic() + timeout_s
        while proc.running:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"broadcaster serve not ready in {timeout_s:.0f} s:\n{proc.log_tail()}"
                )
            time.sleep(0.1)
        group.stop(name)
        assert "address already in use" in proc.output(), proc.log_tail()
    raise AssertionError("no free port for broadcaster serve")


@dataclass
class Deployment:
    """A seeded database, a broker with its recorder, an administrator, and the
    environment the service's processes get (:meth:`new_service`)."""

    tmp: Path
    broker: Mosquitto
    recorder: Recorder
    env: dict[str, str]
    api_port: int
    engine: Engine
    factory: sessionmaker[Session]
    admin: dict[str, str] = field(default_factory=dict)
    services: list[ServiceProcess] = field(default_factory=list)

    def new_service(self, role: str = "all", port: int | None = None) -> ServiceProcess:
        """A service process (not started); by default on the API port."""
        name = f"{role}-{len(self.services)}"
        proc = ServiceProcess(
            role=role,
            port=port or self.api_port,
            env=self.env,
            log_path=self.tmp / "logs" / f"{name}.log",
        )
        self.services.append(proc)
        return proc

    def http(self) -> httpx.Client:
        """An administrator's client of the API port."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}", headers=self.admin, timeout=30
        )

    def stop(self) -> None:
        """Stop every service process; close the database engine."""
        for service in self.services:
            service.stop()
        self.engine.dispose()


D = TypeVar("D", bound=Deployment)


def deploy(
    kind: type[D],
    *,
    database_url: str,
    tmp: Path,
    broker: Mosquitto,
    recorder: Recorder,
    seed: Callable[[D], object],
) -> D:
    """A :class:`Deployment` (or subclass) whose database ``seed`` fills, with an
    administrator added after it."""
    api_port = free_port()
    env = service_env(
        database_url=database_url,
        mqtt_url=broker.url,
        media_dir=tmp / "media",
        public_base_url=f"http://127.0.0.1:{api_port}",
    )
    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    deployment = kind(tmp, broker, recorder, env, api_port, engine, factory)
    try:
        seed(deployment)
        deployment.admin = make_user(
            deployment.factory, "admin", UserRole.ADMIN, can_emergency=True
        )
    except BaseException:
        engine.dispose()
        raise
    return deployment
