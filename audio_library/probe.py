"""What is in an uploaded file, decided by ffprobe from its content (never its name).

`probe(path)` answers with a `ProbeInfo` for the first audio stream, or raises:

* `NotAudio` - empty file, bytes no demuxer recognises (random data, text, a truncated
  header), or a media file without an audio stream (a PNG renamed ``.mp3``: ffprobe sees
  ``png_pipe`` with one video stream);
* `AudioToolError` - ffprobe missing or timed out (a server fault, not the user's).

Anything ffmpeg can demux and decode as audio is accepted: MP3, WAV, M4A/AAC, Ogg
Vorbis/Opus, FLAC, AMR-NB/WB phone recordings, video files with a sound track...
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audio_library.exceptions import NotAudio
from audio_library.ffmpeg_tools import FFPROBE, content_link, run_tool, stderr_text

PROBE_TIMEOUT_S = 60.0

# First demuxer name (or codec where the container is generic) -> extension for originals.
_EXT_BY_FORMAT = {
    "mp3": "mp3",
    "wav": "wav",
    "w64": "w64",
    "flac": "flac",
    "amr": "amr",
    "aac": "aac",
    "aiff": "aiff",
    "caf": "caf",
    "asf": "wma",
    "au": "au",
    "matroska": "mka",
    "3gp": "3gp",
    "ac3": "ac3",
    "eac3": "eac3",
    "wv": "wv",
    "ape": "ape",
    "mpc": "mpc",
    "mpeg": "mpg",
    "avi": "avi",
}


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """The container and first audio stream of a file, as ffprobe reports them."""

    format_name: str
    """ffmpeg demuxer name(s), e.g. ``"mp3"``, ``"mov,mp4,m4a,3gp,3g2,mj2"``."""
    format_long_name: str
    codec: str
    codec_long_name: str
    stream_index: int
    duration_s: float | None
    """Container (or stream) duration; ``None`` when the format does not say."""
    stream_duration_s: float | None
    """The audio stream's own duration, when the container gives one."""
    channels: int
    sample_rate: int
    bit_rate: int | None
    size_bytes: int

    @property
    def ext(self) -> str:
        """A file extension suited to the content (for storing the original)."""
        first = self.format_name.split(",")[0]
        if first == "ogg":
            return "opus" if self.codec == "opus" else "ogg"
        if first == "mov":
            return "m4a" if self.codec in {"aac", "alac", "mp3"} else "mp4"
        if first == "webm" or (first == "matroska" and "webm" in self.format_name):
            return "webm" if self.codec in {"opus", "vorbis"} else "mka"
        ext = _EXT_BY_FORMAT.get(first)
        if ext is not None:
            return ext
        cleaned = "".join(ch for ch in first.lower() if ch.isalnum())[:8]
        return cleaned or "bin"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the asset's metadata column)."""
        data = asdict(self)
        data["ext"] = self.ext
        return data


def _as_float(value: object) -> float | None:
    try:
        result = float(str(value))
    except (TypeError, ValueError):
        return None
    return result if result == result and result >= 0 else None  # drop NaN / negatives


def _as_int(value: object) -> int | None:
    number = _as_float(value)
    return int(number) if number is not None else None


def _not_audio(message: str, message_vi: str) -> NotAudio:
    return NotAudio(message, field="file", message_vi=message_vi)


def parse_ffprobe(report: dict[str, Any], *, size_bytes: int) -> ProbeInfo:
    """Build a `ProbeInfo` from ffprobe's JSON (``-show_format -show_streams``)."""
    streams: list[dict[str, Any]] = report.get("streams") or []
    fmt: dict[str, Any] = report.get("format") or {}
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        found = ", ".join(
            sorted({f"{s.get('codec_type', '?')}:{s.get('codec_name', '?')}" for s in streams})
        )
        what = f"{fmt.get('format_name', 'unknown format')}" + (f" with {found}" if found else "")
        raise _not_audio(
            f"The file contains no audio stream (found {what})",
            "Tệp không có luồng âm thanh nào",
        )
    stream = audio[0]
    channels = _as_int(stream.get("channels")) or 0
    sample_rate = _as_int(stream.get("sample_rate")) or 0
    if channels <= 0 or sample_rate <= 0:
        raise _not_audio(
            "The audio stream has no usable channels or sample rate",
            "Luồng âm thanh không có kênh hoặc tần số lấy mẫu hợp lệ",
        )
    duration = _as_float(fmt.get("duration"))
    if duration is None:
        duration = _as_float(stream.get("duration"))
    return ProbeInfo(
        format_name=str(fmt.get("format_name", "")),
        format_long_name=str(fmt.get("format_long_name", "")),
        codec=str(stream.get("codec_name", "")),
        codec_long_name=str(stream.get("codec_long_name", "")),
        stream_index=int(stream.get("index", 0)),
        duration_s=duration,
        stream_duration_s=_as_float(stream.get("duration")),
        channels=channels,
        sample_rate=sample_rate,
        bit_rate=_as_int(fmt.get("bit_rate")) or _as_int(stream.get("bit_rate")),
        size_bytes=size_bytes,
    )


def probe(path: str | Path) -> ProbeInfo:
    """Describe the first audio stream of `path`, judging by content only."""
    src = Path(path)
    size = src.stat().st_size
    if size == 0:
        raise _not_audio("The file is empty", "Tệp rỗng, không có dữ liệu")
    with content_link(src) as link:
        done = run_tool(
            [
                FFPROBE,
                "-hide_banner",
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                str(link),
            ],
            timeout=PROBE_TIMEOUT_S,
        )
    if done.returncode != 0:
        detail = stderr_text(done.stderr).replace(str(link), "input")
        raise _not_audio(
            f"The file is not a recognised audio file ({detail or 'unknown format'})",
            "Tệp không phải là tệp âm thanh hợp lệ",
        )
    try:
        report = json.loads(done.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        raise _not_audio(
            "The file is not a recognised audio file", "Tệp không phải là tệp âm thanh hợp lệ"
        ) from exc
    if not isinstance(report, dict):
        raise _not_audio(
            "The file is not a recognised audio file", "Tệp không phải là tệp âm thanh hợp lệ"
        )
    return parse_ffprobe(report, size_bytes=size)
