"""Waveform peaks for previews in the dashboard.

The file is decoded by ffmpeg as a stream of mono float blocks; each run of
`SUB_BLOCK` samples is reduced to its min and max as it arrives, and at the end those
runs are grouped into the requested number of buckets.  Memory is two floats per
`SUB_BLOCK` samples (about 3.7 MB for three hours at 44.1 kHz), and bucket edges are
exact to within `SUB_BLOCK` samples (23 ms) without knowing the length in advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audio_library.ffmpeg_tools import decode_blocks

SUB_BLOCK = 1024
PEAK_RATE = 44100
MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Peaks:
    """Per-bucket minimum and maximum sample values in [-1, 1]."""

    mins: list[float]
    maxs: list[float]
    duration_ms: int
    sample_rate: int

    @property
    def buckets(self) -> int:
        """Number of buckets (may be fewer than asked for very short audio)."""
        return len(self.mins)

    @property
    def abs_peaks(self) -> list[float]:
        """Per-bucket absolute peak, for single-sided bar displays."""
        return [max(-lo, hi) for lo, hi in zip(self.mins, self.maxs, strict=True)]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "mins": self.mins,
            "maxs": self.maxs,
            "duration_ms": self.duration_ms,
            "sample_rate": self.sample_rate,
        }


def compute_peaks(path: str | Path, *, buckets: int = 800, sample_rate: int = PEAK_RATE) -> Peaks:
    """Min/max peaks of `path` in `buckets` equal slices of its duration."""
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be between 1 and {MAX_BUCKETS}")
    sub_mins: list[NDArray[np.float32]] = []
    sub_maxs: list[NDArray[np.float32]] = []
    carry = np.zeros(0, dtype=np.float32)
    total = 0
    for block in decode_blocks(Path(path), sample_rate=sample_rate):
        total += block.size
        data = np.concatenate([carry, block]) if carry.size else block
        whole = data.size - data.size % SUB_BLOCK
        if whole:
            shaped = data[:whole].reshape(-1, SUB_BLOCK)
            sub_mins.append(shaped.min(axis=1))
            sub_maxs.append(shaped.max(axis=1))
        carry = data[whole:]
    if carry.size:
        sub_mins.append(np.array([carry.min()], dtype=np.float32))
        sub_maxs.append(np.array([carry.max()], dtype=np.float32))
    mins = np.concatenate(sub_mins) if sub_mins else np.zeros(0, dtype=np.float32)
    maxs = np.concatenate(sub_maxs) if sub_maxs else np.zeros(0, dtype=np.float32)
    count = min(buckets, mins.size)
    if count == 0:
        return Peaks(mins=[], maxs=[], duration_ms=0, sample_rate=sample_rate)
    edges = np.linspace(0, mins.size, count + 1).astype(np.int64)[:-1]
    bucket_mins = np.clip(np.minimum.reduceat(mins, edges), -1.0, 1.0)
    bucket_maxs = np.clip(np.maximum.reduceat(maxs, edges), -1.0, 1.0)
    return Peaks(
        mins=[round(float(v), 4) for v in bucket_mins],
        maxs=[round(float(v), 4) for v in bucket_maxs],
        duration_ms=round(total * 1000 / sample_rate),
        sample_rate=sample_rate,
    )
