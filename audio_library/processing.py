"""Media work off the request thread: a process pool running the ingest pipeline.

`MediaProcessor` owns a `ProcessPoolExecutor` (forkserver start method: the service has
threads - MQTT, scheduler - that must not be forked), created on first use, or at
start-up by `warm` (the service does it, so the first spoken emergency does not wait
for the pool's processes, their imports and espeak-ng's voice data: 4 s cold against
1.3 s warm measured for a 9-s bulletin on a loaded 2-core machine).  Its processes end
with the service, however it ends (`end_with_parent`).  The jobs
are top-level functions taking and returning picklable values.  Callers block on the
result from a worker thread (FastAPI runs sync endpoints in its threadpool), so the
event loop and the request thread do no audio work.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_library.compose import compose
from audio_library.pipeline import ProcessingOptions, ProcessResult, process_file, process_speech
from audio_library.settings import AudioSettings
from audio_library.tts.base import get_engine
from audio_library.tts.synth import synthesize_to_file

#: how often a worker looks for its service where the kernel cannot tell it (no pidfd)
PARENT_POLL_S = 2.0


def end_with_parent(parent: int) -> None:
    """Pool initializer: end this worker as soon as the process that made the pool
    (``parent``, the service) is gone, however it ended (``SIGKILL`` too), and leave
    Ctrl-C to the service: a terminal sends ``SIGINT`` to its whole foreground process
    group, the workers too, and the service shuts its pool down itself (a worker hit by
    it would print a ``KeyboardInterrupt`` traceback in the middle of that).

    Nothing else would end it: a worker blocks reading its call queue, whose write end it
    holds itself (a `multiprocessing` queue is sent to the worker whole), and it holds
    the write end of the forkserver's liveness pipe, so the forkserver (its parent, not
    the service) never sees the service go either.  Once the workers are gone the
    forkserver and the resource tracker end by themselves.  A daemon thread waits on a
    pidfd of the service (Linux 5.3+), or polls it every `PARENT_POLL_S`."""

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def gone() -> bool:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it is there, run by someone else
        return False

    try:
        handle: int | None = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(0)  # gone before this worker started
    except (AttributeError, OSError):
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while not gone():
                time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


@dataclass(frozen=True, slots=True)
class TTSOptions:
    engine: str
    max_chars: int
    chunk_chars: int
    pause_ms: int


def job_process(src: str, options: ProcessingOptions, work_dir: str) -> ProcessResult:
    return process_file(src, options=options, work_dir=work_dir)


def job_tts(
    text: str, voice: str, rate: int, tts: TTSOptions, options: ProcessingOptions, work_dir: str
) -> ProcessResult:
    wav = synthesize_to_file(
        text,
        voice,
        rate,
        get_engine(tts.engine),
        work_dir,
        max_chars=tts.max_chars,
        chunk_chars=tts.chunk_chars,
        pause_ms=tts.pause_ms,
    )
    try:
        return process_speech(wav, options=options, work_dir=work_dir)
    finally:
        wav.unlink(missing_ok=True)


WARM_TEXT = "Xin chào bà con. Đây là bản tin thử của loa truyền thanh phường, xin cảm ơn."


def job_warm(
    engine: str, voices: Sequence[str], options: ProcessingOptions, work_dir: str
) -> float:
    """Bring a pool worker to speed (at start, so the first emergency is not the one that
    pays): this module's imports (numpy, scipy) are done by loading it; espeak-ng's
    voice data and the ffmpeg binaries are read into the page cache by speaking a word
    in every voice and running the whole pipeline once.  Returns its seconds."""
    started = time.monotonic()
    tts = get_engine(engine)
    work = Path(work_dir)
    for index, voice in enumerate(voices):
        wav = work / f"warm-{os.getpid()}-{index}.wav"
        tts.synthesize(WARM_TEXT, voice, 0, wav)
        if index == 0:
            # The speech fast path learns the encoder's loudness loss here (per process).
            process_speech(wav, options=options, work_dir=work).rendition_path.unlink()
        wav.unlink(missing_ok=True)
    return time.monotonic() - started


def job_compose(
    parts: Sequence[str], gap_ms: int, crossfade_ms: int, options: ProcessingOptions, work_dir: str
) -> ProcessResult:
    joined = Path(work_dir) / "composed.wav"
    compose(
        parts, joined, gap_ms=gap_ms, crossfade_ms=crossfade_ms, sample_rate=options.sample_rate
    )
    try:
        return process_file(joined, options=options, work_dir=work_dir)
    finally:
        joined.unlink(missing_ok=True)


class MediaProcessor:
    """Runs media jobs in a process pool; `run` blocks the calling (worker) thread."""

    def __init__(self, settings: AudioSettings, *, workers: int = 2) -> None:
        self.settings = settings
        self.options = ProcessingOptions.from_settings(settings)
        self.tts = TTSOptions(
            engine=settings.tts_engine,
            max_chars=settings.tts_max_chars,
            chunk_chars=settings.tts_chunk_chars,
            pause_ms=settings.tts_pause_ms,
        )
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=end_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def submit(self, fn: Any, *args: Any) -> Future[ProcessResult]:
        future: Future[ProcessResult] = self._executor().submit(fn, *args)
        return future

    def warm(self, work_dir: Path) -> list[float]:
        """Start every pool worker now and warm it (`job_warm`); the seconds each took.
        Blocks the calling thread (call it from a background thread at start-up)."""
        voices = list(get_engine(self.tts.engine).voices)
        pool = self._executor()
        futures = [
            pool.submit(job_warm, self.tts.engine, voices, self.options, str(work_dir))
            for _ in range(self._workers)
        ]
        return [f.result() for f in futures]

    def process(self, src: Path, work_dir: Path) -> ProcessResult:
        return self.submit(job_process, str(src), self.options, str(work_dir)).result()

    def synthesize(self, text: str, voice: str, rate: int, work_dir: Path) -> ProcessResult:
        return self.submit(
            job_tts, text, voice, rate, self.tts, self.options, str(work_dir)
        ).result()

    def compose(
        self, parts: Sequence[Path], gap_ms: int, crossfade_ms: int, work_dir: Path
    ) -> ProcessResult:
        return self.submit(
            job_compose, [str(p) for p in parts], gap_ms, crossfade_ms, self.options, str(work_dir)
        ).result()

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
