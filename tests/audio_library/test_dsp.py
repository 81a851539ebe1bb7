"""Streaming loudness / true peak against pyloudnorm and ffmpeg; limiter guarantees."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from audio_library.dsp import (
    LimiterShape,
    LoudnessMeter,
    TruePeakMeter,
    integrated_loudness,
    limiter_gain,
    oversampled_envelope,
    true_peak_dbtp,
)


def _feed_in_chunks(meter: LoudnessMeter, x: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    i = 0
    while i < x.size:
        step = int(rng.integers(1, 30_000))
        meter.feed(x[i : i + step])
        i += step


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
def test_loudness_matches_pyloudnorm(audio, rate: int) -> None:
    x = audio.speech_like(8.0, rate=rate) * 0.05
    reference = pyloudnorm.Meter(rate).integrated_loudness(x)
    meter = LoudnessMeter(rate)
    _feed_in_chunks(meter, x)
    assert meter.integrated() == pytest.approx(reference, abs=0.05)


def test_loudness_of_full_scale_1khz_sine_is_minus_3() -> None:
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS.
    rate = 48000
    t = np.arange(5 * rate) / rate
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), rate) == pytest.approx(-3.01, abs=0.05)


def test_silence_is_minus_infinity() -> None:
    assert integrated_loudness(np.zeros(48000), 48000) == -math.inf
    assert integrated_loudness(np.full(48000, 1e-5), 48000) == -math.inf  # under -70 LUFS


def test_clip_shorter_than_one_block_still_measures() -> None:
    rate = 44100
    t = np.arange(int(0.2 * rate)) / rate
    value = integrated_loudness(0.5 * np.sin(2 * np.pi * 1000 * t), rate)
    assert -12.0 < value < -8.0


def test_true_peak_finds_intersample_peak() -> None:
    # fs/4 sine at 45 degrees: every sample is +-0.707 but the waveform reaches 1.0.
    n = np.arange(48000)
    x = np.sin(np.pi / 2 * n + np.pi / 4)
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(x) == pytest.approx(0.0, abs=0.2)


def test_true_peak_streaming_equals_whole_signal(audio) -> None:
    x = audio.speech_like(3.0) * 0.3
    whole = oversampled_envelope(np.concatenate([np.zeros(16), x, np.zeros(16)]))[16:-16]
    meter = TruePeakMeter()
    rng = np.random.default_rng(5)
    parts = []
    i = 0
    while i < x.size:
        step = int(rng.integers(1, 5000))
        parts.append(meter.feed(x[i : i + step]))
        i += step
    parts.append(meter.flush())
    streamed = np.concatenate(parts)
    assert streamed.size == x.size
    np.testing.assert_allclose(streamed, whole, rtol=1e-9, atol=1e-12)
    assert meter.dbtp == pytest.approx(20 * np.log10(whole.max()))


def test_true_peak_agrees_with_ffmpeg_ebur128(audio, tmp_path: Path) -> None:
    x = np.clip(audio.speech_like(6.0) * 0.35, -1, 1)
    wav = audio.write_float_wav(tmp_path / "x.wav", x)
    _, ffmpeg_peak = audio.ebur128(wav)
    loudness, _ = audio.ebur128(wav)
    assert true_peak_dbtp(x.astype(np.float32).astype(np.float64)) == pytest.approx(
        ffmpeg_peak, abs=0.3
    )
    assert integrated_loudness(x, 44100) == pytest.approx(loudness, abs=0.15)


def test_limiter_keeps_every_sample_under_the_ceiling() -> None:
    rate = 44100
    shape = LimiterShape(rate)
    rng = np.random.default_rng(3)
    n = 20_000
    env = np.abs(rng.standard_normal(n + shape.past + shape.future)) * 0.3
    env[5000] = 3.0  # a big isolated peak
    gain, ceiling = 2.0, 0.8
    g = limiter_gain(env, gain=gain, ceiling=ceiling, shape=shape)
    assert g.size == n
    middle = env[shape.past : shape.past + n]
    assert np.all(gain * middle * g <= ceiling * (1 + 1e-12))
    assert np.all((g > 0) & (g <= 1))
    # Smooth: the gain never jumps by more than a small step between samples.
    assert np.max(np.abs(np.diff(g))) < 0.05


def test_limiter_is_transparent_under_the_ceiling() -> None:
    shape = LimiterShape(44100)
    env = np.full(10_000 + shape.past + shape.future, 0.1)
    g = limiter_gain(env, gain=2.0, ceiling=0.5, shape=shape)
    assert np.all(g == 1.0)


def test_limiter_ramps_before_and_recovers_after_a_peak() -> None:
    rate = 44100
    shape = LimiterShape(rate)
    n = 10_000
    env = np.full(n + shape.past + shape.future, 0.1)
    peak_at = shape.past + 5000
    env[peak_at] = 1.0
    g = limiter_gain(env, gain=1.0, ceiling=0.5, shape=shape)
    assert g[5000] <= 0.5
    assert g[5000 - shape.attack - 1] == pytest.approx(1.0)  # untouched before look-ahead
    assert 0.5 < g[5000 - shape.attack // 2] < 1.0  # ramping down ahead of the peak
    assert g[5000 + shape.hold + shape.attack + 1] == pytest.approx(1.0)  # recovered


def test_peak_only_meter_matches_envelope_meter(audio) -> None:
    x = audio.speech_like(4.0) * 0.4
    full, light = TruePeakMeter(), TruePeakMeter(envelope=False)
    for start in range(0, x.size, 7919):
        full.feed(x[start : start + 7919])
        assert light.feed(x[start : start + 7919]).size == 0
    full.flush()
    light.flush()
    assert light.peak == pytest.approx(full.peak, rel=1e-12)
