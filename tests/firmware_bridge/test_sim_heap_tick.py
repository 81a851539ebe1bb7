"""A simulator process keeps its stations' loop moving: its tick writes the stations'
flash a slice at a time, and its garbage collector pauses on the simulator's schedule,
not in the middle of a broadcast (`firmware_bridge.simulator.heap`)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from firmware_bridge.simulator import FleetConfig
from firmware_bridge.simulator.fleet import TICK_SLICE, Fleet
from firmware_bridge.simulator.heap import station_heap


class _Ticker:
    def __init__(self, sid: str, log: list[str], *, fails: bool = False) -> None:
        self.sid = sid
        self._log = log
        self._fails = fails

    def tick(self) -> None:
        self._log.append(self.sid)
        if self._fails:
            raise OSError("flash full")


def test_a_tick_lets_the_network_in_between_slices_of_stations(tmp_path: Path) -> None:
    log: list[str] = []
    fleet = Fleet(FleetConfig(state_dir=tmp_path), [])
    count = 3 * TICK_SLICE + 5
    fleet._stations = {  # type: ignore[assignment]  # stations that only tick
        f"s{i}": _Ticker(f"s{i}", log, fails=i == 7) for i in range(count)
    }

    async def main() -> None:
        done = asyncio.Event()

        async def network() -> None:  # what the loop does between slices
            while not done.is_set():
                log.append("net")
                await asyncio.sleep(0)

        reader = asyncio.create_task(network())
        await asyncio.sleep(0)
        await fleet.tick_all()
        done.set()
        await reader

    asyncio.run(main())
    ticked = [entry for entry in log if entry != "net"]
    assert ticked == [f"s{i}" for i in range(count)]  # each once, in order, past a failure
    runs, run = [], 0
    for entry in log:
        if entry == "net":
            runs.append(run)
            run = 0
        else:
            run += 1
    runs.append(run)
    assert max(runs) == TICK_SLICE  # never more stations in a row than one slice


def test_full_collections_run_on_the_simulators_schedule_and_still_reclaim() -> None:
    before = gc.get_threshold()

    class Node:
        me: Node | None = None

    async def main() -> None:
        async with station_heap(every_s=0.05):
            assert gc.get_freeze_count() > 0  # what was alive is out of the collector's way
            assert gc.get_threshold()[:2] == before[:2]
            assert gc.get_threshold()[2] > 10_000  # no automatic full collection
            gc.disable()  # nor any other: only the schedule may reclaim the cycle below
            try:
                node = Node()
                node.me = node
                gone = weakref.ref(node)
                del node
                await asyncio.sleep(0.02)
                assert gone() is not None
                for _ in range(100):
                    if gone() is None:
                        break
                    await asyncio.sleep(0.02)
                assert gone() is None
            finally:
                gc.enable()

    asyncio.run(main())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
