"""Benchmark the ingest pipeline against plain ffmpeg on a long recording.

Generates a speech-like recording (pink noise with speech's crest factor shaped into
syllables and phrases; 44.1 kHz stereo 16-bit WAV, 10 minutes by default), then times,
in the same run and on the same file:

1. ``process_file`` (probe, decode, BS.1770 analysis, gain/limiter, MP3 64k mono CBR,
   re-measure), run in a fresh spawned process as in production, which also reports
   its peak RSS (``ru_maxrss`` of the Python worker, and of its largest ffmpeg child);
2. a bare transcode: ``ffmpeg -i in.wav -ac 1 -b:a 64k out.mp3``;
3. ffmpeg's single-pass ``loudnorm`` filter: ``-af loudnorm=I=-16:TP=-1 -ac 1 -b:a 64k``
   (plus ``-ar 44100``: loudnorm works at 192 kHz and MP3 cannot be written at that rate).

Each output's loudness and true peak are measured with ffmpeg's ``ebur128`` (not timed)
so speed can be weighed against accuracy.  Prints JSON; ``--out FILE.json`` saves it.

    .venv/bin/python benchmarks/bench_audio_ingest.py --out bench.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from timing import report_json  # noqa: E402

from audio_library.pipeline import ProcessingOptions, process_file  # noqa: E402
from tests.support.audio import ebur128  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402

RATE = 44100


def write_speech_like(path: Path, seconds: float, *, seed: int = 1) -> None:
    """Write the test recording in 10-second blocks (constant memory)."""
    rng = np.random.default_rng(seed)
    block = 10 * RATE
    total = int(seconds * RATE)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / RATE
            channels = []
            for _ in range(2):
                spectrum = np.fft.rfft(rng.standard_normal(n))
                freqs = np.fft.rfftfreq(n, 1 / RATE)
                spectrum[1:] /= np.sqrt(freqs[1:])
                spectrum[0] = 0
                noise = np.fft.irfft(spectrum, n)
                noise /= np.sqrt(np.mean(noise**2))
                channels.append(2.5 * np.tanh(noise / 2.5))
            envelope = (0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2.0 * t))) * (
                np.sin(2 * np.pi * 0.25 * t) > -0.6
            )
            stereo = np.stack(channels, axis=1) * envelope[:, None] * 0.06
            pcm = np.round(np.clip(stereo, -1, 1) * 32767).astype("<i2")
            out.writeframes(pcm.tobytes())


def _worker(src: str, work: str, queue: Any) -> None:
    started = time.perf_counter()
    result = process_file(src, options=ProcessingOptions(), work_dir=work)
    elapsed = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put(
        {
            "seconds": elapsed,
            "peak_rss_mb": own / 1024,
            "peak_rss_ffmpeg_child_mb": children / 1024,
            "rendition": str(result.rendition_path),
            "loudness_before_lufs": result.loudness_before_lufs,
            "loudness_after_lufs": result.loudness_after_lufs,
            "true_peak_after_dbtp": result.true_peak_after_dbtp,
            "gain_db": result.gain_db,
            "limiter_applied": result.limiter_applied,
        }
    )


def run_pipeline(src: Path, work: Path) -> dict[str, Any]:
    """process_file in a spawned worker; its timing and peak memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_worker, args=(str(src), str(work), queue))
    proc.start()
    report: dict[str, Any] = queue.get(timeout=3600)
    proc.join()
    return report


def run_ffmpeg(args: list[str]) -> float:
    """Wall time of one ffmpeg command."""
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)
    return time.perf_counter() - started


def loudness(path: Path) -> dict[str, float]:
    """Integrated loudness and true peak per ffmpeg's ebur128 filter."""
    lufs, true_peak = ebur128(path)
    return {"lufs": lufs, "true_peak_dbtp": true_peak}


def main(argv: list[str] | None = None) -> int:
    stop_children_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        root = Path(tmp)
        src = root / "in.wav"
        write_speech_like(src, args.minutes * 60)

        pipeline = run_pipeline(src, root / "work")
        bare_out = root / "bare.mp3"
        bare = run_ffmpeg(["-i", str(src), "-ac", "1", "-b:a", "64k", str(bare_out)])
        loudnorm_out = root / "loudnorm.mp3"
        loudnorm = run_ffmpeg(
            [
                "-i",
                str(src),
                "-af",
                "loudnorm=I=-16:TP=-1",
                "-ac",
                "1",
                "-ar",
                str(RATE),
                "-b:a",
                "64k",
                str(loudnorm_out),
            ]
        )
        report = {
            "input": {
                "minutes": args.minutes,
                "format": "wav pcm_s16le 44.1 kHz stereo",
                "bytes": src.stat().st_size,
            },
            "seconds": {
                "process_file": round(pipeline["seconds"], 3),
                "ffmpeg_bare_mp3": round(bare, 3),
                "ffmpeg_loudnorm_single_pass": round(loudnorm, 3),
            },
            "ratio": {
                "process_file_vs_bare": round(pipeline["seconds"] / bare, 2),
                "process_file_vs_loudnorm": round(pipeline["seconds"] / loudnorm, 2),
            },
            "realtime_factor_process_file": round(args.minutes * 60 / pipeline["seconds"], 1),
            "peak_rss_mb": {
                "process_file_worker": round(pipeline["peak_rss_mb"], 1),
                "largest_ffmpeg_child": round(pipeline["peak_rss_ffmpeg_child_mb"], 1),
            },
            "process_file_result": {
                k: pipeline[k]
                for k in (
                    "loudness_before_lufs",
                    "loudness_after_lufs",
                    "true_peak_after_dbtp",
                    "gain_db",
                    "limiter_applied",
                )
            },
            "ebur128_of_outputs": {
                "process_file": loudness(Path(pipeline["rendition"])),
                "ffmpeg_bare_mp3": loudness(bare_out),
                "ffmpeg_loudnorm_single_pass": loudness(loudnorm_out),
            },
            "machine": {"python": sys.version.split()[0], "cpus": multiprocessing.cpu_count()},
        }
    report_json(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
