"""Process roles and the single active worker.

``broadcaster serve --role all|api|worker``:

- ``api`` serves HTTP only; commands it stores are published by the active worker
  (which polls the outbox every quarter second);
- ``worker`` competes for leadership (`dispatch.leader`) and, while it holds it, runs
  the MQTT bridge, the outbox publisher and the scheduled jobs;
- ``all`` (the default) is both in one process.  With SQLite this is the only
  supported shape: one process.  With PostgreSQL several processes may run; exactly one
  worker is active and a standby takes over within a few seconds of its death.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audio_library.service import MediaLibrary, recover_interrupted
from broadcaster.broker import service as broker
from broadcaster.dispatch.leader import POLL_S, LeaderLock, lock_for
from broadcaster.dispatch.outbox import Outgoing
from broadcaster.dispatch.worker import Worker
from broadcaster.settings import Environment, Settings
from kernel.errors import DomainError

log = logging.getLogger(__name__)


class Role(StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        factory: sessionmaker[Session],
        library: MediaLibrary,
        role: Role = Role.ALL,
        *,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_progress = on_progress
        self.engine = engine
        self.factory = factory
        self.library = library
        self.role = role
        self.worker: Worker | None = None
        self._lock: LeaderLock | None = None
        self._stopping = threading.Event()
        self._elector: threading.Thread | None = None
        self._recovery: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._refused: str | None = None

    @property
    def runs_worker(self) -> bool:
        return self.role in (Role.ALL, Role.WORKER)

    def start(self) -> None:
        if not self.runs_worker:
            return
        self._lock = lock_for(self.engine)
        self._elector = threading.Thread(target=self._elect, name="leader-election", daemon=True)
        self._elector.start()

    def _elect(self) -> None:
        assert self._lock is not None
        while not self._stopping.is_set():
            with self._state_lock:
                active = self.worker is not None
            if self._refused is not None:
                self._stopping.wait(POLL_S)
                continue
            if not active and self._lock.try_acquire():
                log.info("this process is now the active worker")
                self._become_worker()
                if self._refused is not None:
                    self._lock.release()
            elif active and not self._lock.still_held():
                log.error("lost the worker lock; stepping down")
                self._step_down()
            self._stopping.wait(POLL_S)

    def _broker_sync(self) -> Callable[[Session], None] | None:
        """Keep the broker's station accounts in line with the registry (dynsec)."""
        if not self.settings.mqtt_dynsec:
            return None
        client = broker.dynsec_client(self.settings)

        def sync(session: Session) -> None:
            try:
                report = broker.sync_registry(session, self.settings, client)
            except DomainError as exc:
                log.warning("broker account sync failed (will retry): %s", exc.message)
                return
            if report is not None and report.changed:
                log.info("broker accounts: %s", report.summary())

        return sync

    def _become_worker(self) -> None:
        try:
            for problem in broker.check_broker(self.settings):
                log.warning("MQTT broker: %s", problem)
        except DomainError as exc:  # insecure in production, or unreachable
            if self.settings.environment is Environment.PRODUCTION:
                log.critical("not starting the worker: %s", exc.message)
                self._refused = exc.message
                return
            log.warning("MQTT broker check: %s", exc.message)
        worker = Worker(
            self.settings,
            self.factory,
            self.library,
            after_plan=self._broker_sync(),
            on_progress=self.on_progress,
        )
        with self._state_lock:
            self.worker = worker
        worker.start()
        self._recovery = threading.Thread(
            target=recover_interrupted,
            args=(self.factory, self.library),
            name="audio-recovery",
            daemon=True,
        )
        self._recovery.start()

    def _step_down(self) -> None:
        with self._state_lock:
            worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    def stop(self) -> None:
        self._stopping.set()
        if self._elector is not None:
            self._elector.join(POLL_S * 3)
        self._step_down()
        if self._recovery is not None:
            self._recovery.join(30)
        if self._lock is not None:
            self._lock.release()

    @property
    def publishing(self) -> bool:
        """Is the outbox publisher in this process (its worker the active one)?"""
        with self._state_lock:
            return self.worker is not None

    def wake(self, ready: Iterable[Outgoing] = ()) -> None:
        with self._state_lock:
            worker = self.worker
        if worker is not None:
            worker.wake(ready)

    def wait_sent(self, command_ids: Iterable[int], timeout_s: float) -> None:
        """`Worker.wait_sent`; returns at once with no publisher in this process."""
        with self._state_lock:
            worker = self.worker
        if worker is not None:
            worker.wait_sent(command_ids, timeout_s)

    def wait_quiet(self) -> None:
        """`Worker.wait_quiet`: returns once the quiet moment after a command's fan-out is
        over (at once with no publisher in this process)."""
        with self._state_lock:
            worker = self.worker
        if worker is not None:
            worker.wait_quiet()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._state_lock:
            worker = self.worker
        if self._refused is not None:
            return False, {"role": self.role.value, "worker": "refused", "error": self._refused}
        if worker is None:
            state = "standby" if self.runs_worker else "api only"
            return True, {"role": self.role.value, "worker": state}
        health = worker.bridge.health()
        detail: dict[str, Any] = {
            "role": self.role.value,
            "worker": "active",
            "broker": health.connected,
            "mqtt_loop_alive": health.loop_alive,
            "last_message_at": None
            if health.last_message_at is None
            else health.last_message_at.isoformat(),
        }
        if not health.loop_alive:
            detail["error"] = "MQTT network loop stopped; restarting it"
        elif not health.connected:
            detail["error"] = "MQTT broker unreachable; retrying"
        return health.ok, detail

    def status(self) -> dict[str, Any]:
        with self._state_lock:
            worker = self.worker
        base: dict[str, Any] = {"role": self.role.value, "active_worker": worker is not None}
        if worker is not None:
            base.update(worker.status())
        return base
