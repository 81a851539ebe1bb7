"""The real service as a child process (``broadcaster serve``), for crash and fail-over
tests and the benchmarks.

``ServiceProcess(...).start()`` runs ``broadcaster serve --role ROLE --port PORT`` with
the given ``BROADCASTER_*`` environment, logging to a file; ``wait_ready()`` polls
``/readyz``; ``kill()`` is SIGKILL (nothing is flushed, sockets die with the process),
``stop()`` SIGTERM then SIGKILL. ``run_cli`` runs any other ``broadcaster`` command
(``seed tan-an``...) with the same environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["TEST_SECRET", "ServiceProcess", "run_cli", "service_env"]

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
_ENTRY = "from broadcaster.cli import main; main()"


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
    args: Sequence[str], env: Mapping[str, str], *, timeout_s: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run ``broadcaster ARGS`` to completion; raise with its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"broadcaster {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


class ServiceProcess:
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
        self.role = role
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ServiceProcess:
        """Launch the process (returns at once; see :meth:`wait_ready`)."""
        assert not self.running, "already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start --role {self.role} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _ENTRY,
                    "serve",
                    *("--role", self.role),
                    *("--host", "127.0.0.1"),
                    *("--port", str(self.port)),
                    *("--log-level", self.log_level),
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

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

    def kill(self) -> None:
        """SIGKILL and reap."""
        self._end(signal.SIGKILL, 10.0)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in time."""
        self._end(signal.SIGTERM, timeout_s)

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
