"""Shared by the benchmarks: the median and the worst of repeated calls, and the JSON
report each prints and writes."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def report_json(report: Any, out: Path | None) -> None:
    """Print ``report`` as indented JSON (Vietnamese as it is, not escaped) and, given
    ``--out``, write the same text there (UTF-8, its folder made if missing)."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
