"""Text-to-speech with the real espeak-ng: every voice, short and chunked texts."""

from __future__ import annotations

import math
import wave
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from audio_library import pipeline
from audio_library.dsp import integrated_loudness
from audio_library.exceptions import InvalidTTSRequest, TTSEngineError
from audio_library.pipeline import ProcessingOptions, process_file, process_speech
from audio_library.tts import (
    REGIONAL_VOICES,
    EspeakEngine,
    TTSEngine,
    engine_names,
    get_engine,
    register_engine,
    split_into_chunks,
    synthesize_to_file,
)
from audio_library.tts.espeak import VOICE_MAP, rate_to_wpm

SHORT = "Xin chào bà con khu phố ba, mời bà con đến nhà văn hóa họp tổ dân phố."
PARAGRAPH = (
    "Ủy ban nhân dân phường bảy thông báo lịch tiêm chủng mở rộng tháng 11/2026. "
    "Các gia đình có trẻ dưới 5 tuổi đưa trẻ đến trạm y tế từ 7h30 đến 11h, mang theo sổ "
    "tiêm chủng và thẻ BHYT. Mọi thắc mắc xin gọi 0272 3826 123. "
)
LONG = PARAGRAPH * 6  # ~1,600 characters: several chunks


def _read(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as fh:
        rate = fh.getframerate()
        assert fh.getnchannels() == 1
        assert fh.getsampwidth() == 2
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2") / 32768.0
    return data, rate


def _syllables(text: str) -> int:
    from audio_library.tts.normalize_vi import normalize_vi

    return len(normalize_vi(text).split())


@pytest.fixture(scope="module")
def engine() -> TTSEngine:
    return get_engine("espeak-ng")


def test_voice_mapping_uses_installed_espeak_voices() -> None:
    import subprocess

    listed = subprocess.run(
        ["espeak-ng", "--voices=vi"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(REGIONAL_VOICES) == set(VOICE_MAP)
    for espeak_voice in VOICE_MAP.values():
        assert espeak_voice in listed
    assert [rate_to_wpm(r) for r in (-3, 0, 3)] == [110, 155, 200]


@pytest.mark.parametrize("voice", REGIONAL_VOICES)
@pytest.mark.parametrize("text", [SHORT, LONG], ids=["short", "long"])
def test_speech_of_plausible_duration(
    engine: TTSEngine, tmp_path: Path, voice: str, text: str
) -> None:
    out = synthesize_to_file(text, voice, 0, engine, tmp_path, chunk_chars=300, pause_ms=200)
    data, rate = _read(out)
    seconds = data.size / rate
    syllables = _syllables(text)
    # Vietnamese is one syllable per word; announcers manage 2.5-6 syllables a second.
    assert syllables / 6.0 <= seconds <= syllables / 2.5, (seconds, syllables)
    assert math.isfinite(integrated_loudness(data, rate))
    voiced = np.mean(np.abs(data) > 0.01)
    assert voiced > 0.3  # speech, not silence with a click
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # chunk files cleaned up


def test_long_text_is_chunked_at_sentences() -> None:
    from audio_library.tts.normalize_vi import normalize_vi

    chunks = split_into_chunks(normalize_vi(LONG), 300)
    assert len(chunks) >= 5
    assert all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks[:-1])


def test_overlong_sentence_is_split_at_commas_then_words() -> None:
    sentence = ", ".join(["một hai ba bốn năm sáu bảy tám chín mười"] * 20) + "."
    chunks = split_into_chunks(sentence, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks).replace(" ", "") == sentence.replace(" ", "")
    assert split_into_chunks("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]


def test_rate_changes_speed(engine: TTSEngine, tmp_path: Path) -> None:
    slow, _ = _read(synthesize_to_file(SHORT, "south", -3, engine, tmp_path / "slow"))
    fast, _ = _read(synthesize_to_file(SHORT, "south", 3, engine, tmp_path / "fast"))
    assert slow.size > fast.size * 1.4


def test_tts_output_goes_through_the_pipeline(audio, engine: TTSEngine, tmp_path: Path) -> None:
    wav = synthesize_to_file(PARAGRAPH, "north", 0, engine, tmp_path)
    result = process_file(wav, options=ProcessingOptions(), work_dir=tmp_path / "work")
    loudness, peak = audio.ebur128(result.rendition_path)
    assert abs(loudness + 16.0) <= 1.0
    assert peak <= -0.7


@pytest.mark.parametrize("voice", REGIONAL_VOICES)
def test_speech_fast_path_meets_the_station_loudness_target(
    audio, engine: TTSEngine, tmp_path: Path, voice: str
) -> None:
    """The spoken emergency's fast path (no ffprobe, no ffmpeg decode, the encoder's
    loss made up before the first encode) gives the rendition `process_file` gives:
    the same audio, on the loudness target and under the ceiling, measured on the
    encoded file by ffmpeg's ebur128, not by our own meter."""
    options = ProcessingOptions()
    wav = synthesize_to_file(PARAGRAPH, voice, 0, engine, tmp_path)
    reference = process_file(wav, options=options, work_dir=tmp_path / "ref")
    pipeline._SPEECH_CODEC_LOSS.clear()
    results = [process_speech(wav, options=options, work_dir=tmp_path / f"fast{i}") for i in (1, 2)]
    loss = pipeline._SPEECH_CODEC_LOSS[("mp3", "64k", 44100)]
    assert 0.0 < loss < 1.5, loss  # learned by the first, used by the second
    for result in results:
        assert result.original.format_name == "wav"
        assert result.original.codec == "pcm_s16le"  # read by numpy, not probed
        assert result.original.sample_rate == 22050
        assert abs(result.duration_ms - reference.duration_ms) <= 30
        assert abs(result.loudness_before_lufs - reference.loudness_before_lufs) <= 0.2
        assert abs(result.loudness_after_lufs - options.target_lufs) <= 0.2
        assert result.true_peak_after_dbtp <= options.true_peak_dbtp
        loudness, peak = audio.ebur128(result.rendition_path)
        assert abs(loudness - options.target_lufs) <= 0.5, loudness
        assert peak <= -0.7, peak
        assert audio.ffprobe_json(result.rendition_path)["format"]["format_name"] == "mp3"  # type: ignore[index]


def test_speech_fast_path_hands_other_wavs_to_the_full_pipeline(audio, tmp_path: Path) -> None:
    """A WAV that is not 16-bit mono PCM (here 32-bit float, as another engine might
    write) is probed and decoded by ffmpeg like any upload."""
    wav = audio.write_float_wav(
        tmp_path / "float.wav", audio.scale_to_lufs(audio.speech_like(4.0), -30.0)
    )
    result = process_speech(wav, options=ProcessingOptions(), work_dir=tmp_path / "work")
    assert result.original.codec == "pcm_f32le"
    loudness, _ = audio.ebur128(result.rendition_path)
    assert abs(loudness + 16.0) <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   \n "}, "text"),
        ({"text": "... !!!"}, "text"),
        ({"text": "a" * 101}, "text"),
        ({"voice": "hanoi"}, "voice"),
        ({"rate": 4}, "rate"),
        ({"rate": -4}, "rate"),
        ({"rate": 1.5}, "rate"),
    ],
)
def test_bad_requests(
    engine: TTSEngine, tmp_path: Path, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"text": "Xin chào", "voice": "south", "rate": 0}
    args.update(kwargs)
    with pytest.raises(InvalidTTSRequest) as info:
        synthesize_to_file(
            args["text"],
            args["voice"],
            args["rate"],
            engine,
            tmp_path,
            max_chars=100,  # type: ignore[arg-type]
        )
    assert info.value.loc == (field,)
    assert info.value.message_vi
    assert list(tmp_path.iterdir()) == []


def test_unknown_engine() -> None:
    with pytest.raises(InvalidTTSRequest, match="espeak-ng"):
        get_engine("festival")


def test_engine_failure_is_reported(tmp_path: Path) -> None:
    broken = EspeakEngine(executable="espeak-ng-not-installed")
    with pytest.raises(TTSEngineError):
        synthesize_to_file("Xin chào", "south", 0, broken, tmp_path)
    assert list(tmp_path.iterdir()) == []


class ToneEngine:
    """A second engine plugged in through the registry: one beep per syllable."""

    name = "tone"

    @property
    def voices(self) -> Mapping[str, str]:
        return {"south": "beeps", "north": "beeps", "central": "beeps"}

    def synthesize(self, text: str, voice: str, rate: int, out_wav_path: Path) -> None:
        rate_hz = 16000
        beep = (0.3 * np.sin(2 * np.pi * 600 * np.arange(rate_hz // 5) / rate_hz) * 32767).astype(
            "<i2"
        )
        gap = np.zeros(rate_hz // 20, dtype="<i2")
        frames = np.concatenate([np.concatenate([beep, gap]) for _ in text.split()])
        with wave.open(str(out_wav_path), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(rate_hz)
            fh.writeframes(frames.tobytes())


def test_second_engine_plugs_in_by_name(tmp_path: Path) -> None:
    register_engine("tone-test", ToneEngine, replace=True)
    assert "tone-test" in engine_names()
    engine = get_engine("tone-test")
    assert isinstance(engine, TTSEngine)
    out = synthesize_to_file(
        "một hai ba. bốn năm.", "south", 0, engine, tmp_path, pause_ms=500, chunk_chars=12
    )
    data, rate = _read(out)
    # Two chunks ("một hai ba." / "bốn năm."): 5 beeps of 0.25 s plus one 0.5 s pause.
    assert data.size / rate == pytest.approx(5 * 0.25 + 0.5, abs=0.01)
    with pytest.raises(ValueError, match="already registered"):
        register_engine("tone-test", ToneEngine)
