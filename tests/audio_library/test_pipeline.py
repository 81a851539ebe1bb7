"""End-to-end ingest: real ffmpeg, loudness checked independently with ffmpeg's ebur128."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from audio_library.exceptions import (
    AudioTooLong,
    CorruptAudio,
    NotAudio,
    SilentAudio,
    TruncatedAudio,
)
from audio_library.pipeline import ProcessingOptions, ProcessResult, process_file
from audio_library.settings import AudioSettings
from tests.support.audio import ffmpeg

TARGET = -16.0
CEILING = -1.0
TP_TOLERANCE = 0.3
"""ebur128 and our meter use different oversampling filters: allow a few tenths of a dB."""

OPTIONS = ProcessingOptions(target_lufs=TARGET, true_peak_dbtp=CEILING)


def _check_rendition(audio, result: ProcessResult) -> None:
    loudness, peak = audio.ebur128(result.rendition_path)
    assert abs(loudness - TARGET) <= 1.0, (loudness, result)
    assert peak <= CEILING + TP_TOLERANCE, (peak, result)
    # Our own figures for the rendition agree with the independent meter.
    assert abs(result.loudness_after_lufs - loudness) <= 0.3
    assert abs(result.true_peak_after_dbtp - peak) <= 0.4


@pytest.fixture(scope="module")
def level_inputs(audio, media_dir: Path) -> dict[str, Path]:
    """Quiet (-40 LUFS) speech, loud (-8 LUFS, float WAV over 0 dBFS) and clipped input."""
    speech = audio.speech_like(12.0)
    quiet = audio.write_wav(media_dir / "quiet.wav", audio.scale_to_lufs(speech, -40.0))
    loud = audio.write_float_wav(media_dir / "loud.wav", audio.scale_to_lufs(speech, -8.0))
    clipped_signal = np.clip(audio.scale_to_lufs(speech, -6.0), -1.0, 1.0)
    clipped = audio.write_wav(media_dir / "clipped.wav", clipped_signal)
    return {"quiet": quiet, "loud": loud, "clipped": clipped}


@pytest.mark.parametrize(
    ("name", "before"),
    [("quiet", -40.0), ("loud", -8.0), ("clipped", None)],
)
def test_rendition_meets_loudness_and_true_peak(
    audio, level_inputs: dict[str, Path], work_dir: Path, name: str, before: float | None
) -> None:
    result = process_file(level_inputs[name], options=OPTIONS, work_dir=work_dir)
    _check_rendition(audio, result)
    if before is not None:
        assert abs(result.loudness_before_lufs - before) <= 0.2
    assert result.gain_db == pytest.approx(TARGET - result.loudness_before_lufs, abs=6.0)


def test_real_speech_with_peaks_is_limited_not_clipped(
    audio, speech_wav: Path, work_dir: Path, tmp_path: Path
) -> None:
    quiet = audio.convert(speech_wav, tmp_path / "quiet_speech.wav", "-af", "volume=-22dB")
    result = process_file(quiet, options=OPTIONS, work_dir=work_dir)
    _check_rendition(audio, result)
    assert result.limiter_applied
    assert result.limiter_max_reduction_db > 1.0
    # No hard clipping: decoded samples never sit flat at a rail.
    decoded = tmp_path / "decoded.f32"
    audio.convert(result.rendition_path, decoded, "-f", "f32le", "-ac", "1")
    samples = np.fromfile(decoded, dtype="<f4")
    assert np.max(np.abs(samples)) < 0.95


def test_rendition_is_cbr_mono_mp3_and_metadata_complete(
    audio, speech_wav: Path, work_dir: Path
) -> None:
    result = process_file(speech_wav, options=OPTIONS, work_dir=work_dir)
    report = audio.ffprobe_json(result.rendition_path)
    stream = report["streams"][0]
    assert report["format"]["format_name"] == "mp3"
    assert stream["codec_name"] == "mp3"
    assert stream["channels"] == 1
    assert stream["sample_rate"] == "44100"
    assert stream["bit_rate"] == "64000"
    assert result.rendition_bytes == result.rendition_path.stat().st_size
    assert len(result.rendition_sha256) == 64
    assert result.rendition_ext == "mp3"
    assert result.rendition_mime == "audio/mpeg"
    assert result.original.codec == "pcm_s16le"
    assert result.original.sample_rate == 22050
    assert abs(result.duration_ms - result.original.duration_s * 1000) < 30
    meta = result.as_metadata()
    assert "rendition_path" not in meta
    assert meta["original"]["ext"] == "wav"
    # Nothing but the rendition is left in the work dir.
    assert [p.name for p in work_dir.iterdir()] == [result.rendition_path.name]


def test_dual_mono_stereo_measures_like_bs1770_stereo(audio, tmp_path: Path) -> None:
    import pyloudnorm

    voice = audio.scale_to_lufs(audio.speech_like(8.0), -23.0)
    both = np.stack([voice, voice], axis=1)
    mono = audio.write_wav(tmp_path / "mono.wav", voice)
    stereo = audio.write_wav(tmp_path / "stereo.wav", both)
    a = process_file(mono, options=OPTIONS, work_dir=tmp_path / "a")
    b = process_file(stereo, options=OPTIONS, work_dir=tmp_path / "b")
    assert a.loudness_before_lufs == pytest.approx(-23.0, abs=0.1)
    # The 0.707 * (L + R) downmix reads a dual-mono file as BS.1770 reads it in stereo
    # (channel powers summed: +3 dB over one channel); the rendition is on target anyway.
    stereo_lufs = pyloudnorm.Meter(audio.RATE).integrated_loudness(both)
    assert b.loudness_before_lufs == pytest.approx(stereo_lufs, abs=0.1)
    assert b.loudness_after_lufs == pytest.approx(a.loudness_after_lufs, abs=0.2)


def test_same_input_gives_same_rendition_bytes(speech_wav: Path, tmp_path: Path) -> None:
    first = process_file(speech_wav, options=OPTIONS, work_dir=tmp_path / "a")
    second = process_file(speech_wav, options=OPTIONS, work_dir=tmp_path / "b")
    assert first.rendition_sha256 == second.rendition_sha256


FORMATS = [
    ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", "mp3"),
    ("m4a", ["-c:a", "aac", "-b:a", "96k"], "m4a", "aac"),
    ("ogg", ["-c:a", "libvorbis"], "ogg", "vorbis"),
    ("opus", ["-c:a", "libopus", "-b:a", "48k"], "opus", "opus"),
    ("flac", ["-c:a", "flac"], "flac", "flac"),
]


@pytest.mark.parametrize(("suffix", "args", "ext", "codec"), FORMATS)
def test_common_formats_are_accepted(
    audio, speech_wav: Path, tmp_path: Path, suffix: str, args: list[str], ext: str, codec: str
) -> None:
    # The file is given a misleading name: detection must come from the content.
    src = audio.convert(speech_wav, tmp_path / f"upload.{suffix}", *args)
    disguised = src.rename(tmp_path / "upload.bin")
    result = process_file(disguised, options=OPTIONS, work_dir=tmp_path / "work")
    assert result.original.ext == ext
    assert result.original.codec == codec
    _check_rendition(audio, result)


def test_amr_phone_recording_is_accepted(audio, tmp_path: Path) -> None:
    src = audio.write_amr_nb(tmp_path / "call.amr", 6.0)
    result = process_file(src, options=OPTIONS, work_dir=tmp_path / "work")
    assert result.original.codec == "amr_nb"
    assert result.original.ext == "amr"
    assert result.original.sample_rate == 8000
    assert 5800 <= result.duration_ms <= 6400
    _check_rendition(audio, result)


def test_png_renamed_mp3_is_not_audio(tmp_path: Path) -> None:
    png = _make_png(tmp_path / "picture.png")
    fake = png.rename(tmp_path / "bulletin.mp3")
    with pytest.raises(NotAudio) as info:
        process_file(fake, options=OPTIONS, work_dir=tmp_path / "work")
    assert "no audio stream" in info.value.message
    assert info.value.message_vi
    assert info.value.loc == ("file",)


def _make_png(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", "1", str(path))
    return path


def test_random_bytes_are_not_audio(tmp_path: Path) -> None:
    src = tmp_path / "noise.mp3"
    src.write_bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(NotAudio):
        process_file(src, options=OPTIONS, work_dir=tmp_path / "work")


def test_zero_length_file_is_not_audio(tmp_path: Path) -> None:
    src = tmp_path / "empty.wav"
    src.touch()
    with pytest.raises(NotAudio, match="empty"):
        process_file(src, options=OPTIONS, work_dir=tmp_path / "work")


def test_header_only_file_is_not_audio(audio, speech_wav: Path, tmp_path: Path) -> None:
    mp3 = audio.convert(speech_wav, tmp_path / "full.mp3")
    head = tmp_path / "head.mp3"
    head.write_bytes(mp3.read_bytes()[:100])
    with pytest.raises(NotAudio):
        process_file(head, options=OPTIONS, work_dir=tmp_path / "work")


@pytest.mark.parametrize("suffix", ["mp3", "flac"])
def test_truncated_upload_is_rejected(audio, tmp_path: Path, suffix: str) -> None:
    signal = audio.speech_like(20.0)
    wav = audio.write_wav(tmp_path / "long.wav", audio.scale_to_lufs(signal, -20.0))
    full = audio.convert(wav, tmp_path / f"long.{suffix}")
    cut = tmp_path / f"cut.{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 4 // 10])
    with pytest.raises(CorruptAudio) as info:
        process_file(cut, options=OPTIONS, work_dir=tmp_path / "work")
    assert isinstance(info.value, TruncatedAudio)
    assert "cut short" in info.value.message


def test_silence_only_is_rejected(audio, tmp_path: Path) -> None:
    src = audio.write_wav(tmp_path / "silence.wav", np.zeros(5 * 44100))
    with pytest.raises(SilentAudio):
        process_file(src, options=OPTIONS, work_dir=tmp_path / "work")


def test_too_long_is_rejected_from_the_probe(tone_wav: Path, tmp_path: Path) -> None:
    options = ProcessingOptions(max_duration_s=3.0)
    work = tmp_path / "work"
    with pytest.raises(AudioTooLong) as info:
        process_file(tone_wav, options=options, work_dir=work)
    assert info.value.message_vi
    assert not any(work.iterdir())  # rejected before decoding anything


def test_trim_silence(audio, tmp_path: Path) -> None:
    rate = audio.RATE
    gap = np.zeros(2 * rate)
    signal = np.concatenate([gap, audio.sine(3.0, 330.0, 0.3), gap])
    src = audio.write_wav(tmp_path / "padded.wav", signal)
    options = ProcessingOptions(trim_silence=True, trim_keep_ms=100, trim_min_silence_ms=300)
    result = process_file(src, options=options, work_dir=tmp_path / "work")
    assert result.source_duration_ms == 7000
    assert result.duration_ms == pytest.approx(3200, abs=5)
    assert result.trimmed_start_ms == pytest.approx(1900, abs=5)
    assert result.trimmed_end_ms == pytest.approx(1900, abs=5)
    kept = ProcessingOptions(trim_silence=False)
    untrimmed = process_file(src, options=kept, work_dir=tmp_path / "work2")
    assert untrimmed.duration_ms == 7000


@pytest.mark.parametrize(("fmt", "codec"), [("aac", "aac"), ("opus", "opus")])
def test_other_rendition_formats(
    audio, speech_wav: Path, tmp_path: Path, fmt: str, codec: str
) -> None:
    options = ProcessingOptions(rendition_format=fmt, bitrate="64k")  # type: ignore[arg-type]
    result = process_file(speech_wav, options=options, work_dir=tmp_path / "work")
    report = audio.ffprobe_json(result.rendition_path)
    assert report["streams"][0]["codec_name"] == codec
    assert report["streams"][0]["channels"] == 1
    _check_rendition(audio, result)


def test_options_from_settings() -> None:
    settings = AudioSettings(target_lufs=-18.0, bitrate="96k", trim_silence=True)
    options = ProcessingOptions.from_settings(settings)
    assert options.target_lufs == -18.0
    assert options.bitrate == "96k"
    assert options.trim_silence is True
    assert pickle.loads(pickle.dumps(options)) == options  # noqa: S301 - our own bytes


def test_runs_in_a_process_pool_and_errors_come_back_intact(
    speech_wav: Path, tmp_path: Path
) -> None:
    silent = tmp_path / "silent.wav"
    import wave

    with wave.open(str(silent), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(8000)
        fh.writeframes(b"\x00\x00" * 16000)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        good = pool.submit(process_file, speech_wav, options=OPTIONS, work_dir=tmp_path / "w")
        bad = pool.submit(process_file, silent, options=OPTIONS, work_dir=tmp_path / "w")
        result = good.result(timeout=120)
        with pytest.raises(SilentAudio) as info:
            bad.result(timeout=120)
    assert result.rendition_path.is_file()
    assert info.value.message_vi
    assert info.value.loc == ("file",)
