"""Settings of the audio library (env prefix ``BROADCASTER_AUDIO_``).

Read once by the composition root and passed in; no function of this package reads the
environment.  The ingest pipeline takes a plain picklable `ProcessingOptions` (see
`audio_library.pipeline`) built with `ProcessingOptions.from_settings(settings)`.

Defaults follow what commune stations need: EBU R 128-style speech loudness for small
speakers (-16 LUFS integrated, -1 dBTP, as for podcasts/streaming rather than the
-23 LUFS of broadcast TV, because the horns play the file directly with no further
processing), and a 64 kbit/s mono CBR MP3 that every station player decodes and that a
3G link pre-downloads quickly.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RenditionFormat = Literal["mp3", "aac", "opus"]
"""Station rendition formats: MP3 (default, CBR), AAC in M4A, Opus in Ogg."""

SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

_BITRATE = re.compile(r"^[1-9][0-9]{1,2}k$")


class AudioSettings(BaseSettings):
    """Limits, loudness targets, rendition format and text-to-speech defaults."""

    model_config = SettingsConfigDict(env_prefix="BROADCASTER_AUDIO_", extra="ignore")

    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_duration_s: float = Field(default=3 * 3600.0, gt=0)
    sample_rate: int = 44100
    target_lufs: float = Field(default=-16.0, ge=-40.0, le=-5.0)
    true_peak_dbtp: float = Field(default=-1.0, ge=-9.0, le=0.0)
    bitrate: str = "64k"
    rendition_format: RenditionFormat = "mp3"

    trim_silence: bool = False
    trim_threshold_dbfs: float = Field(default=-50.0, ge=-90.0, le=-10.0)
    """Samples quieter than this (sample peak, dBFS) count as silence."""
    trim_min_silence_ms: int = Field(default=300, ge=0)
    """Leading/trailing silence shorter than this is left alone."""
    trim_keep_ms: int = Field(default=100, ge=0)
    """Silence kept before the first and after the last sound when trimming."""

    tts_engine: str = "espeak-ng"
    tts_default_voice: str = "south"
    tts_max_chars: int = Field(default=20_000, gt=0)
    tts_chunk_chars: int = Field(default=400, ge=50)
    tts_pause_ms: int = Field(default=250, ge=0, le=5000)
    """Silence inserted between synthesised chunks."""

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_SAMPLE_RATES}")
        return value

    @field_validator("bitrate")
    @classmethod
    def _bitrate_form(cls, value: str) -> str:
        if not _BITRATE.match(value):
            raise ValueError("bitrate must look like '64k' (16k..999k)")
        return value

    @model_validator(mode="after")
    def _chunk_fits(self) -> AudioSettings:
        if self.tts_chunk_chars > self.tts_max_chars:
            raise ValueError("tts_chunk_chars must not exceed tts_max_chars")
        return self
