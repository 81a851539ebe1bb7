"""Audio settings: environment prefix, defaults, validation."""

from __future__ import annotations

import pydantic
import pytest

from audio_library.settings import AudioSettings


def test_defaults() -> None:
    settings = AudioSettings()
    assert settings.max_upload_bytes == 200 * 1024 * 1024
    assert settings.max_duration_s == 3 * 3600
    assert (settings.sample_rate, settings.target_lufs, settings.true_peak_dbtp) == (
        44100,
        -16.0,
        -1.0,
    )
    assert (settings.bitrate, settings.rendition_format) == ("64k", "mp3")
    assert settings.trim_silence is False
    assert settings.tts_default_voice == "south"
    assert settings.tts_max_chars == 20_000


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_AUDIO_TARGET_LUFS", "-18")
    monkeypatch.setenv("BROADCASTER_AUDIO_RENDITION_FORMAT", "opus")
    monkeypatch.setenv("BROADCASTER_AUDIO_TRIM_SILENCE", "true")
    settings = AudioSettings()
    assert settings.target_lufs == -18.0
    assert settings.rendition_format == "opus"
    assert settings.trim_silence is True


@pytest.mark.parametrize(
    "bad",
    [
        {"sample_rate": 44000},
        {"bitrate": "64"},
        {"bitrate": "64k; rm -rf /"},
        {"target_lufs": 3.0},
        {"true_peak_dbtp": 1.0},
        {"rendition_format": "wav"},
        {"tts_chunk_chars": 500, "tts_max_chars": 100},
    ],
)
def test_invalid_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        AudioSettings(**bad)  # type: ignore[arg-type]
