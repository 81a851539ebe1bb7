"""Shared by the benchmarks: the median and the worst of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeat: int = 20, digits: int = 2) -> dict[str, float]:
    """Call ``fn`` ``repeat`` times: median and max wall time in milliseconds."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(samples), digits),
        "max_ms": round(max(samples), digits),
    }
