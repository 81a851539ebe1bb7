"""Audio for tests and benchmarks: signals made at run time, ffmpeg conversions, speech
from espeak-ng, and ``ebur128``: loudness and true peak measured independently of our
own meter, with ffmpeg's EBU R128 filter.

Nothing binary is committed: every input is synthesised (numpy signals written with
`wave`, converted by ffmpeg; speech by espeak-ng).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RATE",
    "SPEECH_TEXT",
    "convert",
    "ebur128",
    "espeak",
    "ffmpeg",
    "ffprobe_json",
    "pink_noise",
    "scale_to_lufs",
    "sine",
    "speech_like",
    "write_amr_nb",
    "write_float_wav",
    "write_wav",
]

RATE = 44100


def write_wav(path: Path, signal: NDArray[np.floating], rate: int = RATE) -> Path:
    """Write mono or (n, channels) float signal as 16-bit PCM, clipping at full scale."""
    data = np.asarray(signal, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    pcm = np.round(np.clip(data, -1.0, 32767 / 32768) * 32768).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(data.shape[1])
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())
    return path


def ffmpeg(*args: str) -> None:
    """``ffmpeg -v error -y ARGS``; raises if it fails."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def write_float_wav(path: Path, signal: NDArray[np.floating], rate: int = RATE) -> Path:
    """Write a float signal as 32-bit float WAV (values above 1.0 survive) via ffmpeg."""
    raw = path.with_suffix(".f32")
    np.asarray(signal, dtype="<f4").tofile(raw)
    ffmpeg(
        "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(raw), "-c:a", "pcm_f32le", str(path)
    )
    raw.unlink()
    return path


def pink_noise(seconds: float, *, seed: int = 1, rate: int = RATE) -> NDArray[np.float64]:
    """Pink (1/f) noise with unit RMS."""
    n = int(seconds * rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return np.asarray(noise / np.sqrt(np.mean(noise**2)), dtype=np.float64)


def speech_like(seconds: float, *, seed: int = 2, rate: int = RATE) -> NDArray[np.float64]:
    """Speech-like test signal: pink noise with speech's crest factor, shaped into
    syllables (~4 per second) and phrases separated by pauses.

    Gaussian peaks are softened (tanh at 2.5 sigma) so the peak-to-loudness ratio is
    about 14 dB, as for a close-miked voice, rather than the 20+ dB of raw noise bursts.
    """
    noise = pink_noise(seconds, seed=seed, rate=rate)
    noise = 2.5 * np.tanh(noise / 2.5)
    t = np.arange(noise.size) / rate
    syllables = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2.0 * t))
    phrases = (np.sin(2 * np.pi * 0.25 * t) > -0.6).astype(np.float64)
    return np.asarray(noise * syllables * phrases, dtype=np.float64)


def sine(
    seconds: float, freq: float = 440.0, amp: float = 0.5, rate: int = RATE
) -> NDArray[np.float64]:
    """A sine tone."""
    t = np.arange(int(seconds * rate)) / rate
    return np.asarray(amp * np.sin(2 * np.pi * freq * t), dtype=np.float64)


def scale_to_lufs(
    signal: NDArray[np.float64], lufs: float, rate: int = RATE
) -> NDArray[np.float64]:
    """Scale a mono signal to an integrated loudness (pyloudnorm as the reference)."""
    import pyloudnorm

    measured = pyloudnorm.Meter(rate).integrated_loudness(signal)
    return np.asarray(signal * 10 ** ((lufs - measured) / 20), dtype=np.float64)


def convert(src: Path, dest: Path, *args: str) -> Path:
    """Transcode with ffmpeg (codec chosen from `args` or the destination's extension)."""
    ffmpeg("-i", str(src), *args, str(dest))
    return dest


def write_amr_nb(path: Path, seconds: float, *, seed: int = 3) -> Path:
    """An AMR-NB file (RFC 4867 storage format) of random 12.2 kbit/s speech frames.

    Debian's ffmpeg can decode AMR but has no AMR encoder (no libopencore_amrnb
    encoder, no native one).  AMR-NB frames are codec parameters, and every bit pattern
    of a 12.2 kbit/s frame (mode 7: 244 bits in 31 bytes after a 0x3C header) is a
    valid frame, so random payloads give a genuine AMR stream that ffmpeg's decoder
    turns into noisy 'speech' - enough to prove phone recordings are accepted.
    """
    rng = np.random.default_rng(seed)
    frames = int(seconds / 0.020)
    payload = rng.integers(0, 256, size=(frames, 31), dtype=np.uint8)
    header = np.full((frames, 1), 0x3C, dtype=np.uint8)
    path.write_bytes(b"#!AMR\n" + np.hstack([header, payload]).tobytes())
    return path


_SUMMARY_I = re.compile(r"I:\s+(-?[\d.]+|-inf)\s+LUFS")
_SUMMARY_PEAK = re.compile(r"Peak:\s+(-?[\d.]+|-inf)\s+dBFS")


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file per ffmpeg's ebur128 filter."""
    meter = "ebur128=peak=true:framelog=verbose"
    done = subprocess.run(
        ["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", meter, "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = done.stderr[done.stderr.rindex("Summary:") :]
    loudness = _SUMMARY_I.search(summary)
    peak = _SUMMARY_PEAK.search(summary)
    assert loudness is not None, summary
    assert peak is not None, summary

    def value(text: str) -> float:
        return -math.inf if text == "-inf" else float(text)

    return value(loudness.group(1)), value(peak.group(1))


def ffprobe_json(path: Path) -> dict[str, object]:
    """ffprobe's format+streams report."""
    report_args = ("-print_format", "json", "-show_format", "-show_streams")
    done = subprocess.run(
        ["ffprobe", "-v", "error", *report_args, str(path)], capture_output=True, check=True
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


def espeak(text: str, path: Path, voice: str = "vi-vn-x-south") -> Path:
    """Speech from espeak-ng (22.05 kHz mono WAV)."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "160", "-b", "1", "-w", str(path), text],
        check=True,
    )
    return path


SPEECH_TEXT = (
    "Ủy ban nhân dân phường bảy thông báo: từ ngày hai mươi sáu tháng mười một, người dân "
    "mang theo căn cước công dân đến nhà văn hóa khu phố ba để làm thủ tục cấp thẻ bảo "
    "hiểm y tế. Mọi thắc mắc xin liên hệ cán bộ phụ trách."
)
