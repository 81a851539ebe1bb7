"""Garbage collection in a process that runs stations.

CPython's cyclic collector looks at every object it tracks on a full (oldest-generation)
collection, and a process running hundreds or thousands of stations tracks millions
(paho clients, asyncio tasks, parsed messages). A full collection then took 80-350 ms
(1,000 stations in two processes) and stopped every station of the process at once, at
a moment of the collector's choosing: twice in the middle of a broadcast, 500 stations
took the command a tenth to a third of a second late (``benchmarks/bench_broadcast.py``).
Real stations each have a processor of their own and never pause together.

`station_heap` keeps those pauses out of the stations' way: once the stations are up,
what is alive is frozen (``gc.freeze``: out of the collector's sight), the automatic full
collections are switched off (the oldest generation's threshold out of reach) and, every
`FULL_COLLECTION_EVERY_S`, one full collection of everything runs (unfreeze, collect,
freeze again), so cyclic garbage, a reconnected station's old client for one, is still
reclaimed. Young collections go on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator

__all__ = ["FULL_COLLECTION_EVERY_S", "station_heap"]

log = logging.getLogger(__name__)

#: how often the stations' process collects all of its garbage
FULL_COLLECTION_EVERY_S = 300.0
#: the oldest generation's threshold while `station_heap` holds: never reached
_NEVER = 1_000_000


def _full_collection() -> float:
    """Collect everything, then freeze what survived; the milliseconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return 1000 * (time.perf_counter() - started)


async def _collect_every(every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        took_ms = _full_collection()
        log.debug("full collection: %.0f ms, %d objects frozen", took_ms, gc.get_freeze_count())


@contextlib.asynccontextmanager
async def station_heap(every_s: float = FULL_COLLECTION_EVERY_S) -> AsyncIterator[None]:
    """Within: full collections only every ``every_s``, on our schedule (see the module
    doc). Enter it once the stations are up; on exit the collector is as it was."""
    thresholds = gc.get_threshold()
    took_ms = _full_collection()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    log.debug("stations' heap frozen: %d objects, %.0f ms", gc.get_freeze_count(), took_ms)
    keeper = asyncio.create_task(_collect_every(every_s))
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        gc.set_threshold(*thresholds)
        gc.unfreeze()
