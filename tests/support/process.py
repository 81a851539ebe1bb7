"""Child processes for tests and benchmarks: the one runner everything that starts a
process uses (the service, the simulator, a bare fleet, any ``broadcaster`` command).

``ChildProcess(argv, env=..., log_path=...)`` writes the process's output (stdout and
stderr) to a log file; ``start()`` returns at once, ``run()`` waits for it to finish and
raises with the log's tail if it fails; ``stop()`` is SIGTERM then SIGKILL if it does not
exit in time, ``kill()`` is SIGKILL; ``alive()`` asserts it is still running;
``wait_for_output()`` waits for a line in its log, ``tell()`` writes to its stdin.
:class:`ProcessGroup` keeps the named commands of one test or benchmark.
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
from typing import Self

__all__ = [
    "ROOT",
    "ChildProcess",
    "ProcessGroup",
    "broadcaster_argv",
    "child_pids",
    "cpu_seconds",
    "memory_mb",
    "python_argv",
    "stop_children_on_sigterm",
]

ROOT = Path(__file__).resolve().parents[2]
_ENTRY = "from broadcaster.cli import main; main()"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stop_children_on_sigterm() -> None:
    """SIGTERM ends this process the way Ctrl-C does: a `SystemExit` raised through every
    ``finally`` and context manager, so a benchmark stopped with ``kill`` still stops
    the brokers, services and simulators it started (by default the signal ended it at
    once and left them running)."""

    def end(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, end)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_seconds_fine(pid: int) -> float:
    """CPU time a process's live threads have run, to the nanosecond (the scheduler's
    ``/proc/PID/task/TID/schedstat``; `cpu_seconds` counts 10 ms ticks, too coarse for a
    50 ms window).  A thread that ended is no longer counted: read it over windows the
    process keeps its threads through."""
    total = 0
    found = False
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
            found = True
    if not found:
        raise ProcessLookupError(pid)
    return total / 1e9


def child_pids(pid: int) -> list[int]:
    """Every descendant of a process, depth first (Linux ``/proc``); [] once it is gone."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(child_pids(int(child)))
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) memory of a process in MiB (Linux ``/proc``)."""
    rss = peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return rss, peak


def python_argv(*args: str) -> list[str]:
    """This interpreter with ``args`` (``-m module``, ``-c code`` or a script)."""
    return [sys.executable, *args]


def broadcaster_argv(*args: str, script: bool = False) -> list[str]:
    """``broadcaster ARGS`` in this interpreter; with ``script``, the installed console
    script next to it when there is one (what an operator runs)."""
    entry = Path(sys.executable).with_name("broadcaster")
    if script and entry.exists():
        return [str(entry), *args]
    return python_argv("-c", _ENTRY, *args)


class ChildProcess:
    """One child process with its output in ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        name: str | None = None,
        stdin: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.stdin = stdin
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.name = name or log_path.stem
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self) -> Self:
        """Launch the process (returns at once); output is appended to the log."""
        assert not self.running, f"{self.name} already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.name} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def tell(self, line: str) -> None:
        """Write ``line`` to the process's standard input (started with ``stdin=True``)."""
        assert self.proc is not None, f"{self.name} not started"
        assert self.proc.stdin is not None, f"{self.name} has no stdin"
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def wait_for_output(self, text: str, timeout_s: float = 30.0) -> None:
        """Until ``text`` is in the log; fails if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if not self.running:
                raise AssertionError(f"{self.name} exited before {text!r}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from {self.name}:\n{self.log_tail()}")
            time.sleep(0.02)

    def run(self, timeout_s: float = 180.0) -> Self:
        """Start and wait for the process to finish; raise with its output if it fails."""
        self.start()
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"{self.name} still running after {timeout_s:.0f} s:\n{self.log_tail()}"
            ) from None
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}:\n{self.log_tail()}")
        return self

    def output(self) -> str:
        """Everything in the log so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> None:
        """Assert the process is still running (with its log if not)."""
        assert self.running, f"{self.name} exited {self.returncode}:\n{self.log_tail()}"

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.wait(timeout_s)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` and return at once (see :meth:`wait`)."""
        assert self.proc is not None, f"{self.name} not started"
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in time; the exit code."""
        return self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> int | None:
        """SIGKILL and reap (nothing is flushed, sockets die with the process)."""
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout_s: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdin is not None:
            proc.stdin.close()
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ProcessGroup:
    """Named ``broadcaster`` commands of one test or benchmark, each a
    :class:`ChildProcess` logging to ``directory/NAME.log``; ``stop_all()`` at the end
    stops whatever still runs, the newest first."""

    def __init__(self, directory: Path, env: Mapping[str, str], *, script: bool = False) -> None:
        self.directory = directory
        self.env = dict(env)
        self.script = script
        self.running: dict[str, ChildProcess] = {}

    def child(self, name: str, *args: str) -> ChildProcess:
        """``broadcaster ARGS`` (not started)."""
        return ChildProcess(
            broadcaster_argv(*args, script=self.script),
            env=self.env,
            log_path=self.directory / f"{name}.log",
            name=name,
        )

    def run(self, name: str, *args: str, timeout_s: float = 180) -> str:
        """Run a command to completion; its output (``RuntimeError`` if it fails)."""
        return self.child(name, *args).run(timeout_s).output()

    def start(self, name: str, *args: str) -> ChildProcess:
        self.running[name] = self.child(name, *args).start()
        return self.running[name]

    def __getitem__(self, name: str) -> ChildProcess:
        return self.running[name]

    def stop(self, name: str, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        proc = self.running.pop(name, None)
        return None if proc is None else proc.stop(timeout_s)

    def alive(self, name: str) -> None:
        self.running[name].alive()

    def stop_all(self) -> None:
        for name in list(reversed(self.running)):
            self.stop(name)
