"""A real Icecast2 for live-paging tests and benchmarks: our own configuration
(`broadcaster.live.icecast`) on a free port under the test's folder, started and stopped
with the test; and a voice that talks into it like an operator (:class:`Voice`: PCM
paced in real time through ffmpeg, with a loud marker tone whose wall-clock start is
known, so a listener can time mouth-to-ear latency)."""

from __future__ import annotations

import contextlib
import math
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broadcaster.live.icecast import IcecastSetup, find_icecast, start_on_a_free_port
from tests.support.mosquitto import free_port

requires_icecast = pytest.mark.skipif(
    find_icecast() is None, reason="icecast2 is not installed (scripts/system-deps.sh)"
)

RATE = 16_000
FRAME_S = 0.02
#: ffmpeg output arguments making what the browser's MediaRecorder sends: WebM/Opus,
#: a cluster every 100 ms, written out at once.
WEBM = [
    "-c:a", "libopus", "-b:a", "32k", "-flush_packets", "1",
    "-f", "webm", "-cluster_time_limit", "100", "pipe:1",
]  # fmt: skip


@contextlib.contextmanager
def running_icecast(directory: Path) -> Iterator[IcecastSetup]:
    """Icecast on a free port under ``directory`` for the duration of the block (on
    another port if a server outside this test run took the chosen one first)."""
    server, setup = start_on_a_free_port(directory, free_port)
    try:
        yield setup
    finally:
        died = not server.running
        server.stop()
    if died:  # after the block: a test that failed on it shows why too
        log = (directory / "icecast.log").read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"Icecast on port {setup.port} exited during the block:\n{log[-3000:]}")


def pcm_frame(seconds: float, *, tone_hz: float | None, t0: float = 0.0) -> bytes:
    """``seconds`` of 16 kHz mono s16le: silence, or a loud sine at ``tone_hz``."""
    count = int(RATE * seconds)
    if tone_hz is None:
        return b"\x00\x00" * count
    return b"".join(
        struct.pack("<h", int(20000 * math.sin(2 * math.pi * tone_hz * (t0 + i / RATE))))
        for i in range(count)
    )


class Voice:
    """An operator speaking: PCM written in real time into ``ffmpeg`` (arguments after
    the input), alternating silence and a 1 kHz marker tone of ``tone_s`` every
    ``period_s``; :attr:`marks` holds the wall-clock time each tone started."""

    def __init__(
        self,
        output: list[str],
        *,
        period_s: float = 2.0,
        tone_s: float = 0.4,
        stdout: int | None = subprocess.DEVNULL,
    ) -> None:
        self.command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error",
            "-probesize", "32", "-analyzeduration", "0",
            "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0",
            *output,
        ]  # fmt: skip
        self.period_s = period_s
        self.tone_s = tone_s
        self.marks: list[float] = []
        self._stdout = stdout
        self._stop = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Voice:
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=self._stdout, stderr=subprocess.DEVNULL
        )
        self._thread = threading.Thread(target=self._speak, daemon=True)
        self._thread.start()
        return self

    def _speak(self) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        silence = pcm_frame(FRAME_S, tone_hz=None)
        tone = [pcm_frame(FRAME_S, tone_hz=1000.0, t0=i * FRAME_S) for i in range(50)]
        start = time.monotonic()
        frame = 0
        period = int(self.period_s / FRAME_S)
        tone_frames = int(self.tone_s / FRAME_S)
        while not self._stop.is_set():
            at = start + frame * FRAME_S
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            phase = frame % period
            # the first second is silence (the stream settles), then a tone each period
            loud = frame * FRAME_S >= 1.0 and phase < tone_frames
            if loud and phase == 0:
                self.marks.append(time.time())
            try:
                self.process.stdin.write(tone[phase % 50] if loud else silence)
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            frame += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.process is not None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            if self.process.stdout is not None:
                self.process.stdout.close()


class OnsetDetector:
    """Decodes an MP3 stream fed chunk by chunk (ffmpeg) and records the wall-clock time
    at which each loud passage begins after silence: when a listener *hears* a marker."""

    def __init__(self, threshold: int = 6000, on_onset: Callable[[float], None] | None = None):
        self.onsets: list[float] = []
        self.threshold = threshold
        self._on_onset = on_onset
        self.process = subprocess.Popen(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error",
                "-fflags", "+nobuffer", "-probesize", "2048", "-analyzeduration", "0",
                "-f", "mp3", "-i", "pipe:0",
                "-f", "s16le", "-ac", "1", "-ar", "8000", "-flush_packets", "1", "pipe:1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.process.stdin.write(chunk)

    def _read(self) -> None:
        assert self.process.stdout is not None
        quiet = 0
        while True:
            block = self.process.stdout.read(160)  # 10 ms at 8 kHz
            if not block:
                return
            samples = struct.unpack(f"<{len(block) // 2}h", block[: len(block) // 2 * 2])
            peak = max((abs(s) for s in samples), default=0)
            if peak >= self.threshold:
                if quiet >= 20:  # at least 200 ms of quiet before
                    self.onsets.append(time.time())
                    if self._on_onset is not None:
                        self._on_onset(self.onsets[-1])
                quiet = 0
            else:
                quiet += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._thread.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def latencies(marks: list[float], onsets: list[float], period_s: float) -> list[float]:
    """For each marker, the delay to the first onset heard after it (within a period)."""
    found = []
    for mark in marks:
        later = [o - mark for o in onsets if 0 <= o - mark < period_s]
        if later:
            found.append(min(later))
    return found
