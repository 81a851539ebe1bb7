"""ffprobe on content: formats recognised, names ignored, non-audio refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_library.exceptions import NotAudio
from audio_library.probe import parse_ffprobe, probe
from tests.support.audio import ffmpeg


@pytest.mark.parametrize(
    ("suffix", "args", "format_name", "codec", "ext"),
    [
        ("wav", [], "wav", "pcm_s16le", "wav"),
        ("mp3", [], "mp3", "mp3", "mp3"),
        ("m4a", ["-c:a", "aac"], "mov,mp4,m4a,3gp,3g2,mj2", "aac", "m4a"),
        ("ogg", ["-c:a", "libvorbis"], "ogg", "vorbis", "ogg"),
        ("opus", ["-c:a", "libopus"], "ogg", "opus", "opus"),
        ("flac", [], "flac", "flac", "flac"),
    ],
)
def test_formats_are_identified(
    audio,
    tone_wav: Path,
    tmp_path: Path,
    suffix: str,
    args: list[str],
    format_name: str,
    codec: str,
    ext: str,
) -> None:
    src = audio.convert(tone_wav, tmp_path / f"in.{suffix}", *args)
    info = probe(src.rename(tmp_path / "no_extension"))
    assert info.format_name == format_name
    assert info.codec == codec
    assert info.ext == ext
    assert info.channels == 2
    assert info.duration_s == pytest.approx(5.0, abs=0.1)
    assert info.size_bytes == (tmp_path / "no_extension").stat().st_size


def test_wav_named_mp3_is_still_wav(tone_wav: Path, tmp_path: Path) -> None:
    liar = tmp_path / "song.mp3"
    liar.write_bytes(tone_wav.read_bytes())
    info = probe(liar)
    assert info.format_name == "wav"
    assert info.sample_rate == 48000


def test_amr(audio, tmp_path: Path) -> None:
    info = probe(audio.write_amr_nb(tmp_path / "voice", 2.0))
    assert (info.format_name, info.codec, info.ext, info.sample_rate) == (
        "amr",
        "amr_nb",
        "amr",
        8000,
    )


def test_video_with_sound_track_is_accepted(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=s=64x64:d=2", "-f", "lavfi", "-i", "sine=d=2"),
        *("-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(clip)),
    )
    info = probe(clip)
    assert info.codec == "aac"
    assert info.stream_index == 1


def test_text_file_is_not_audio(tmp_path: Path) -> None:
    src = tmp_path / "notes.mp3"
    src.write_text("Thông báo lịch cắt điện ngày mai\n" * 50, encoding="utf-8")
    with pytest.raises(NotAudio) as info:
        probe(src)
    assert info.value.message_vi == "Tệp không phải là tệp âm thanh hợp lệ"
    assert str(tmp_path) not in info.value.message  # no server paths leak to the operator


def test_empty_file_is_not_audio(tmp_path: Path) -> None:
    src = tmp_path / "x.wav"
    src.touch()
    with pytest.raises(NotAudio, match="empty"):
        probe(src)


def test_parse_report_without_audio_stream_names_what_it_found() -> None:
    report = {
        "streams": [{"index": 0, "codec_type": "video", "codec_name": "png"}],
        "format": {"format_name": "png_pipe"},
    }
    with pytest.raises(NotAudio, match="png_pipe with video:png"):
        parse_ffprobe(report, size_bytes=10)


def test_parse_report_tolerates_missing_numbers() -> None:
    report = {
        "streams": [
            {
                "index": 0,
                "codec_type": "audio",
                "codec_name": "pcm_s16le",
                "channels": 1,
                "sample_rate": "8000",
                "duration": "N/A",
            }
        ],
        "format": {"format_name": "wav", "duration": "N/A"},
    }
    info = parse_ffprobe(report, size_bytes=10)
    assert info.duration_s is None
    assert info.bit_rate is None
    assert info.as_dict()["ext"] == "wav"
