"""A fleet spread over N operating-system processes (one per core by default).

One asyncio process tops out at a few thousand stations and, on a small machine, takes
CPU the service under test needs; a benchmark of the service should measure the service.
:class:`ProcessFleet` splits the station list into N slices (``specs[i::N]``, so every
slice gets a share of every area) and runs one :class:`~.fleet.Fleet` per slice in its own
process (``multiprocessing`` spawn context). Each child reports its
:class:`~.fleet.FleetSummary` once a second over a queue; :meth:`ProcessFleet.summary`
adds them up. Stopping sets a shared event: every child stops its fleet cleanly (each
station publishes its own death) and exits. A child also stops on SIGTERM or SIGINT, so
Ctrl-C on the process group behaves like the one-process CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
from collections.abc import Sequence
from dataclasses import fields, replace
from multiprocessing.process import BaseProcess
from typing import Any

from firmware_bridge.simulator.config import StationSpec
from firmware_bridge.simulator.faults import FaultSpec
from firmware_bridge.simulator.fleet import Fleet, FleetConfig, FleetSummary
from firmware_bridge.simulator.heap import station_heap

__all__ = ["ProcessFleet", "combine", "default_processes", "split", "stop_on_signals"]

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 1.0


def default_processes() -> int:
    """One process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def split(specs: Sequence[StationSpec], processes: int) -> list[list[StationSpec]]:
    """``processes`` non-empty slices (fewer when there are fewer stations), interleaved."""
    count = max(1, min(processes, len(specs)))
    return [list(specs[i::count]) for i in range(count)]


def combine(summaries: Sequence[FleetSummary]) -> FleetSummary:
    """The field-by-field sum of several fleets' summaries."""
    totals = {f.name: sum(getattr(s, f.name) for s in summaries) for f in fields(FleetSummary)}
    return FleetSummary(**totals)


def _empty(stations: int) -> FleetSummary:
    return FleetSummary(stations, 0, 0, 0, 0, 0, 0, 0, 0)


class ProcessFleet:
    """N child processes, each running a :class:`Fleet` over its slice of the stations.

    The same ``start`` / ``summary`` / ``stop`` shape as :class:`Fleet` (the CLI drives
    either), plus :attr:`pids` for benchmarks that read each process's CPU time.
    """

    def __init__(
        self,
        config: FleetConfig,
        stations: Sequence[StationSpec],
        faults: Sequence[FaultSpec] = (),
        *,
        processes: int | None = None,
        log_level: str = "WARNING",
    ) -> None:
        Fleet(config, stations, faults)  # validates ids and the URL in the parent
        self.config = config
        self.slices = split(stations, processes or default_processes())
        self.fault_specs = list(faults)
        self.log_level = log_level.upper()
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._reports: Any = self._ctx.Queue()
        self._latest = [_empty(len(s)) for s in self.slices]
        self._children: list[BaseProcess] = []
        self.started = False

    @property
    def pids(self) -> list[int]:
        """The child processes' ids (after :meth:`start`)."""
        return [p.pid for p in self._children if p.pid is not None]

    async def start(self) -> None:
        """Launch every child; return once each has booted its stations (they connect in
        the background)."""
        if self.started:
            return
        self.started = True
        for index, specs in enumerate(self.slices):
            config = self.config
            if config.seed is not None:
                config = replace(config, seed=config.seed + index)
            child = self._ctx.Process(
                target=_child_main,
                args=(
                    index,
                    config,
                    specs,
                    self.fault_specs,
                    self._stop,
                    self._reports,
                    self.log_level,
                ),
                name=f"sim-{index}",
                daemon=False,
            )
            child.start()
            self._children.append(child)
        # like Fleet.start: return once every station has booted (connections go on)
        reported: set[int] = set()
        while len(reported) < len(self._children):
            try:
                index, summary = await asyncio.to_thread(self._reports.get, True, 1.0)
            except queue.Empty:
                dead = [c.name for c in self._children if not c.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"simulator process(es) exited while starting: {dead}"
                    ) from None
                continue
            self._latest[index] = summary
            reported.add(index)
        log.info(
            "fleet of %d stations in %d processes", sum(map(len, self.slices)), len(self.slices)
        )

    def summary(self) -> FleetSummary:
        """The latest reported counts of every child, added up."""
        self._drain()
        return combine(self._latest)

    async def wait_online(self, *, timeout_s: float = 30.0) -> bool:
        """Wait until every child reports all its stations online."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            s = self.summary()
            if s.online >= s.stations:
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.1)

    async def stop(self, timeout_s: float = 120.0) -> None:
        """Stop every child cleanly (deaths published); kill what does not exit in time."""
        self._stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for child in self._children:
            await asyncio.to_thread(child.join, max(0.1, deadline - loop.time()))
            if child.is_alive():
                log.warning("%s did not stop in time: killed", child.name)
                child.kill()
                await asyncio.to_thread(child.join, 5)
        self._drain()
        self.started = False

    def _drain(self) -> None:
        while True:
            try:
                index, summary = self._reports.get_nowait()
            except queue.Empty:
                return
            except (EOFError, OSError):  # pragma: no cover - queue closed at exit
                return
            self._latest[index] = summary


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets on SIGINT or SIGTERM (where signals are supported)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _child_main(
    index: int,
    config: FleetConfig,
    specs: list[StationSpec],
    faults: list[FaultSpec],
    stop: Any,
    reports: Any,
    log_level: str,
) -> None:
    """One child: run a fleet over ``specs`` until ``stop`` is set or a signal arrives."""
    logging.basicConfig(level=log_level, format=f"sim-{index} %(name)s: %(message)s")
    asyncio.run(_child_run(index, Fleet(config, specs, faults), stop, reports))


async def _child_run(index: int, fleet: Fleet, stop: Any, reports: Any) -> None:
    signalled = stop_on_signals()
    await fleet.start()
    last: FleetSummary | None = None
    try:
        async with station_heap():
            while not signalled.is_set() and not stop.is_set():
                summary = fleet.summary()
                if summary != last:
                    reports.put((index, summary))
                    last = summary
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signalled.wait(), _REPORT_EVERY_S)
    finally:
        await fleet.stop()
        reports.put((index, fleet.summary()))
