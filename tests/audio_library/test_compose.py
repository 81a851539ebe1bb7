"""Joining jingle + bulletin + outro with gaps or crossfades."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_library.compose import compose
from audio_library.exceptions import InvalidComposition, NotAudio
from audio_library.pipeline import ProcessingOptions, process_file
from audio_library.probe import probe


@pytest.fixture(scope="module")
def parts(audio, media_dir: Path) -> list[Path]:
    """Intro (1 s stereo 48 kHz MP3), bulletin (2 s mono WAV), outro (1.5 s Ogg)."""
    intro_wav = audio.write_wav(
        media_dir / "intro.wav",
        np.stack([audio.sine(1.0, 523.0, 0.4, rate=48000)] * 2, axis=1),
        rate=48000,
    )
    intro = audio.convert(intro_wav, media_dir / "intro.mp3")
    bulletin = audio.write_wav(media_dir / "bulletin.wav", audio.speech_like(2.0) * 0.1)
    outro = audio.convert(
        audio.write_wav(media_dir / "outro_src.wav", audio.sine(1.5, 392.0, 0.4)),
        media_dir / "outro.ogg",
        "-c:a",
        "libvorbis",
    )
    return [intro, bulletin, outro]


def _duration_ms(path: Path) -> float:
    info = probe(path)
    assert info.duration_s is not None
    return info.duration_s * 1000


def test_gap_adds_silence_between_parts(parts: list[Path], tmp_path: Path) -> None:
    out = compose(parts, tmp_path / "joined.wav", gap_ms=500)
    assert _duration_ms(out) == pytest.approx(1000 + 2000 + 1500 + 2 * 500, abs=15)
    info = probe(out)
    assert (info.channels, info.sample_rate, info.codec) == (1, 44100, "pcm_f32le")


def test_crossfade_overlaps_parts(parts: list[Path], tmp_path: Path) -> None:
    out = compose(parts, tmp_path / "joined.wav", crossfade_ms=300)
    assert _duration_ms(out) == pytest.approx(1000 + 2000 + 1500 - 2 * 300, abs=15)


def test_plain_concatenation_and_single_part(parts: list[Path], tmp_path: Path) -> None:
    assert _duration_ms(compose(parts, tmp_path / "a.wav")) == pytest.approx(4500, abs=15)
    assert _duration_ms(compose(parts[1:2], tmp_path / "b.wav")) == pytest.approx(2000, abs=5)


def test_composition_goes_through_the_pipeline(audio, parts: list[Path], tmp_path: Path) -> None:
    joined = compose(parts, tmp_path / "joined.wav", gap_ms=250)
    result = process_file(joined, options=ProcessingOptions(), work_dir=tmp_path / "work")
    assert result.duration_ms == pytest.approx(5000, abs=15)
    loudness, _ = audio.ebur128(result.rendition_path)
    assert abs(loudness + 16.0) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gap_ms": 100, "crossfade_ms": 100}, "not both"),
        ({"gap_ms": -1}, "gap_ms"),
        ({"crossfade_ms": 5000}, "shorter than"),
    ],
)
def test_bad_requests(
    parts: list[Path], tmp_path: Path, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(InvalidComposition, match=message):
        compose(parts, tmp_path / "x.wav", **kwargs)
    assert not (tmp_path / "x.wav").exists()


def test_no_parts(tmp_path: Path) -> None:
    with pytest.raises(InvalidComposition):
        compose([], tmp_path / "x.wav")


def test_non_audio_part_names_its_position(parts: list[Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_text("not audio")
    with pytest.raises(NotAudio) as info:
        compose([parts[0], junk], tmp_path / "x.wav")
    assert info.value.loc == ("parts", 1)
    assert info.value.message.startswith("Part 2:")
