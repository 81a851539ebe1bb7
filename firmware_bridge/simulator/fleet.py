"""A fleet of virtual stations in one process, and ways to run it.

* :class:`Fleet` is the asyncio object: it owns the shared pieces (clock, connect
  thread pool, HTTP client, a connect semaphore that smooths the first connection
  storm) and one :class:`~.station.Station` per station id. A single ticker task calls
  every connection's keep-alive housekeeping and flushes state once a second.
* :func:`run_fleet` runs a fleet until an event is set (the CLI's path).
* :class:`FleetThread` runs a fleet on its own event loop in a background thread with a
  blocking, thread-safe API for pytest and benchmarks (``start``, ``stop``,
  ``station``, ``kill``, ``restart``, ``drop_link``...). Every call is executed on the
  fleet's loop, so tests never touch station state from another thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from firmware_bridge.errors import ConfigError
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.simulator.clock import SimClock
from firmware_bridge.simulator.config import FleetContext, SimSettings, StationSpec, StationStatus
from firmware_bridge.simulator.faults import Fault, FaultSpec, assign_faults
from firmware_bridge.simulator.media import MediaFetcher
from firmware_bridge.simulator.station import Station
from firmware_bridge.topics import DEFAULT_PREFIX, Topics, is_valid_id

__all__ = ["Fleet", "FleetConfig", "FleetSummary", "FleetThread", "run_fleet"]

log = logging.getLogger(__name__)

#: stations ticked between two looks at the network (`Fleet.tick_all`): a tick writes
#: what each station changed, about 0.1 ms a station, and 500 in one go held every other
#: station's messages back for 20-60 ms, in the middle of a broadcast
TICK_SLICE = 32

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How to run a fleet: broker, storage, speed and shared station settings."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    state_dir: Path = Path("var/simulator")
    topic_prefix: str = DEFAULT_PREFIX
    speed: float = 1.0
    seed: int | None = None
    settings: SimSettings = field(default_factory=SimSettings)
    connect_concurrency: int = 64
    download_concurrency: int = 16
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """Fleet-wide counts for dashboards and the CLI."""

    stations: int
    alive: int
    online: int
    playing: int
    events_sent: int
    spooled: int
    faulted: int
    fault_injected: int
    connects: int


class Fleet:
    """Many virtual stations sharing one event loop."""

    def __init__(
        self,
        config: FleetConfig,
        stations: Sequence[StationSpec],
        faults: Sequence[FaultSpec] = (),
    ) -> None:
        sids = [spec.sid for spec in stations]
        bad = [sid for sid in sids if not is_valid_id(sid)]
        if bad:
            raise ConfigError(f"invalid station ids: {bad[:5]}")
        if len(set(sids)) != len(sids):
            raise ConfigError("duplicate station ids")
        self.config = config
        self.specs = list(stations)
        self.fault_specs = list(faults)
        self.url = MqttUrl.parse(config.mqtt_url)
        self.topics = Topics(config.topic_prefix)
        self.clock = SimClock(config.speed)
        self._stations: dict[str, Station] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._fetcher: MediaFetcher | None = None
        self.started = False

    async def start(self) -> None:
        """Boot every station (connections proceed in the background)."""
        if self.started:
            return
        self.started = True
        # per station: its connection, a frozen one (power loss), its spool's file
        _raise_fd_limit(len(self.specs) * 3 + 256)
        config = self.config
        rng = random.Random(config.seed)
        assigned = assign_faults(self.fault_specs, [s.sid for s in self.specs], rng)
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, min(32, config.connect_concurrency)),
            thread_name_prefix="sim-connect",
        )
        self._fetcher = MediaFetcher(concurrency=config.download_concurrency)
        tls = None
        if self.url.tls:
            tls = ssl.create_default_context(cafile=config.ca_file)
        ctx = FleetContext(
            settings=config.settings,
            topics=self.topics,
            url=self.url,
            clock=self.clock,
            state_dir=Path(config.state_dir),
            fetcher=self._fetcher,
            executor=self._executor,
            connect_slots=asyncio.Semaphore(max(1, config.connect_concurrency)),
            tls=tls,
        )
        for spec in self.specs:
            station_rng = random.Random(rng.getrandbits(64))
            self._stations[spec.sid] = Station(
                spec, ctx, assigned.get(spec.sid, set()), station_rng
            )
        for station in self._stations.values():
            await station.boot()
        self._tasks.append(asyncio.create_task(self._tick(), name="fleet-ticker"))
        for sid, faults in assigned.items():
            if Fault.POWER in faults:
                self._tasks.append(
                    asyncio.create_task(self._power_cycles(sid, random.Random(rng.random())))
                )
        log.info(
            "fleet of %d stations started against %s (speed x%g, %d faulty)",
            len(self._stations),
            self.url.redacted(),
            config.speed,
            len(assigned),
        )

    async def stop(self) -> None:
        """Stop every station cleanly (each publishes its own death) and release resources."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(s.shutdown() for s in self._stations.values()))
        if self._fetcher is not None:
            await self._fetcher.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.started = False
        log.info("fleet stopped")

    # ------------------------------------------------------------------ access

    @property
    def sids(self) -> list[str]:
        """Station ids in start order."""
        return [spec.sid for spec in self.specs]

    def station(self, sid: str) -> Station:
        """The live station object (use from the fleet's loop only)."""
        try:
            return self._stations[sid]
        except KeyError as exc:
            raise KeyError(f"no simulated station {sid!r}") from exc

    def status(self, sid: str) -> StationStatus:
        """A snapshot of one station."""
        return self.station(sid).status()

    def summary(self) -> FleetSummary:
        """Counts across the fleet."""
        stations = list(self._stations.values())
        return FleetSummary(
            stations=len(stations),
            alive=sum(s.alive for s in stations),
            online=sum(s.online for s in stations),
            playing=sum(s.player.current is not None for s in stations),
            events_sent=sum(s.events_sent for s in stations),
            spooled=sum(s.spooled for s in stations),
            faulted=sum(bool(s.health.active) or (self.started and not s.alive) for s in stations),
            fault_injected=sum(bool(s.faults) for s in stations),
            connects=sum(s.connects for s in stations),
        )

    async def wait_online(
        self, sids: Sequence[str] | None = None, *, timeout_s: float = 30.0
    ) -> bool:
        """Wait until the given stations (default: all) are online."""
        targets = [self.station(sid) for sid in (sids or self.sids)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all(s.online for s in targets):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def kill(self, sid: str, mode: Literal["silent", "abort"] = "silent") -> None:
        """Power loss of one station (see :meth:`Station.kill`)."""
        await self.station(sid).kill(mode)

    async def restart(self, sid: str) -> None:
        """Boot a station again."""
        await self.station(sid).restart()

    def drop_link(self, sid: str) -> None:
        """Drop one station's connection without DISCONNECT (it reconnects)."""
        self.station(sid).drop_link()

    def inject(self, sid: str, fault: Fault, active: bool = True) -> None:
        """Switch a health fault of one station on or off (see :meth:`Station.inject`)."""
        self.station(sid).inject(fault, active)

    # ------------------------------------------------------------------ internals

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.tick_all()

    async def tick_all(self) -> None:
        """One tick of every station (keep-alive, what it changed written to its flash),
        `TICK_SLICE` stations at a time: the loop reads the network in between, so the
        others' messages are not held back until the last station is written."""
        for index, station in enumerate(list(self._stations.values()), 1):
            try:
                station.tick()
            except Exception:
                log.exception("%s: tick failed", station.sid)
            if index % TICK_SLICE == 0:
                await asyncio.sleep(0)

    async def _power_cycles(self, sid: str, rng: random.Random) -> None:
        settings = self.config.settings.faults
        station = self._stations[sid]
        while True:
            await asyncio.sleep(rng.uniform(*settings.power_after_s))
            log.info("%s: power lost", sid)
            await station.kill("silent")
            await asyncio.sleep(rng.uniform(*settings.power_outage_s))
            log.info("%s: power back", sid)
            await station.restart()


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        log.warning("could not raise the open-file limit to %d (soft %d)", wanted, soft)


async def run_fleet(
    config: FleetConfig,
    stations: Sequence[StationSpec],
    faults: Sequence[FaultSpec] = (),
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[Fleet], Awaitable[None]] | None = None,
) -> None:
    """Run a fleet until ``stop`` is set (forever if ``None``), then stop it cleanly."""
    fleet = Fleet(config, stations, faults)
    await fleet.start()
    try:
        if on_started is not None:
            await on_started(fleet)
        await (stop or asyncio.Event()).wait()
    finally:
        await fleet.stop()


class FleetThread:
    """A :class:`Fleet` on its own event loop in a background thread.

    >>> fleet = FleetThread(FleetConfig(mqtt_url=url, state_dir=tmp), [StationSpec("st-1")])
    >>> fleet.start()            # returns once every station is online
    >>> fleet.station("st-1").bdseq
    >>> fleet.stop()
    """

    def __init__(
        self,
        config: FleetConfig,
        stations: Sequence[StationSpec],
        faults: Sequence[FaultSpec] = (),
    ) -> None:
        self.fleet = Fleet(config, stations, faults)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, *, wait_online: bool = True, timeout_s: float = 30.0) -> FleetThread:
        """Start the loop thread and the fleet; optionally wait until all stations are online."""
        self._thread = threading.Thread(target=self._main, name="sim-fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("fleet did not start")
        if self._error is not None:
            raise RuntimeError("fleet failed to start") from self._error
        if wait_online and not self.wait_online(timeout_s=timeout_s):
            raise TimeoutError("stations did not all come online")
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the fleet cleanly and join the thread."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout_s)
        self._loop = None

    def __enter__(self) -> FleetThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            log.exception("fleet thread crashed")

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.fleet.start()
        finally:
            self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.fleet.stop()

    # ------------------------------------------------------------------ blocking API

    def run(self, fn: Callable[[Fleet], Awaitable[T]], *, timeout_s: float = 60.0) -> T:
        """Run ``fn(fleet)`` on the fleet's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("fleet is not running")

        async def call() -> T:
            return await fn(self.fleet)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout_s)

    def call(self, fn: Callable[[Fleet], T], *, timeout_s: float = 30.0) -> T:
        """Run the plain function ``fn(fleet)`` on the fleet's loop."""

        async def call(fleet: Fleet) -> T:
            return fn(fleet)

        return self.run(call, timeout_s=timeout_s)

    def station(self, sid: str) -> StationStatus:
        """A snapshot of one station."""
        return self.call(lambda fleet: fleet.status(sid))

    def summary(self) -> FleetSummary:
        """Fleet-wide counts."""
        return self.call(lambda fleet: fleet.summary())

    def now(self) -> datetime:
        """The fleet's station time (what a station without clock fault reads)."""
        return self.fleet.clock.now()

    def wait_online(self, sids: Sequence[str] | None = None, *, timeout_s: float = 30.0) -> bool:
        """Block until the given stations (default: all) are online."""
        return self.run(
            lambda fleet: fleet.wait_online(sids, timeout_s=timeout_s), timeout_s=timeout_s + 5
        )

    def kill(self, sid: str, mode: Literal["silent", "abort"] = "silent") -> None:
        """Power loss: the station vanishes without DISCONNECT."""
        self.run(lambda fleet: fleet.kill(sid, mode))

    def restart(self, sid: str) -> None:
        """Boot a (killed) station again."""
        self.run(lambda fleet: fleet.restart(sid))

    def drop_link(self, sid: str) -> None:
        """A link flap on one station."""
        self.call(lambda fleet: fleet.drop_link(sid))

    def inject(self, sid: str, fault: Fault, active: bool = True) -> None:
        """Switch a health fault of one station on or off (it reports at once)."""
        self.call(lambda fleet: fleet.inject(sid, fault, active))
