"""Waveform peaks for previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_library.exceptions import NotAudio
from audio_library.peaks import compute_peaks


def test_peaks_follow_the_signal(audio, tmp_path: Path) -> None:
    rate = audio.RATE
    signal = np.concatenate([np.zeros(2 * rate), audio.sine(2.0, 440.0, 0.5)])
    src = audio.convert(audio.write_wav(tmp_path / "x.wav", signal), tmp_path / "x.flac")
    peaks = compute_peaks(src, buckets=100)
    assert peaks.buckets == 100
    assert peaks.duration_ms == 4000
    assert max(peaks.maxs[:45]) == 0.0
    assert min(peaks.mins[:45]) == 0.0
    assert all(0.49 <= v <= 0.51 for v in peaks.maxs[55:])
    assert all(-0.51 <= v <= -0.49 for v in peaks.mins[55:])
    assert all(0.49 <= v <= 0.51 for v in peaks.abs_peaks[55:])
    assert set(peaks.as_dict()) == {"mins", "maxs", "duration_ms", "sample_rate"}


def test_short_file_gives_fewer_buckets(audio, tmp_path: Path) -> None:
    src = audio.write_wav(tmp_path / "blip.wav", audio.sine(0.05, 1000.0, 0.2))
    peaks = compute_peaks(src, buckets=800)
    assert 1 <= peaks.buckets <= 3
    assert peaks.duration_ms == 50


def test_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(NotAudio):
        compute_peaks(junk)
    with pytest.raises(ValueError, match="buckets"):
        compute_peaks(junk, buckets=0)
