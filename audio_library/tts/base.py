"""The text-to-speech engine interface and the registry that finds engines by name.

An engine turns one chunk of already-normalised text into a WAV file; everything else
(validation, normalisation, chunking, joining, loudness) is done once, for every
engine, by `audio_library.tts.synth`.  See ``README.md`` beside this file for how to
add an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from audio_library.exceptions import InvalidTTSRequest

RATES = range(-3, 4)
"""Speaking rates offered to operators: -3 (slowest) .. +3 (fastest), 0 is normal."""

REGIONAL_VOICES = ("south", "north", "central")
"""Voice ids every Vietnamese engine should offer (the operators' regional choice)."""


@runtime_checkable
class TTSEngine(Protocol):
    """A speech synthesiser.

    ``synthesize`` writes a 16-bit PCM mono WAV (any sample rate, the same for every
    call) of `text` spoken with `voice` at `rate` (-3..+3) to `out_wav_path`, or raises
    `TTSEngineError`.  It must not read the network at run time.
    """

    @property
    def name(self) -> str:
        """Registry name, e.g. ``"espeak-ng"``."""
        ...

    @property
    def voices(self) -> Mapping[str, str]:
        """Voice id -> human description, e.g. ``{"south": "Vietnamese (Southern)"}``."""
        ...

    def synthesize(self, text: str, voice: str, rate: int, out_wav_path: Path) -> None:
        """Speak one chunk of text into a WAV file."""
        ...


EngineFactory = Callable[[], TTSEngine]

_REGISTRY: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory, *, replace: bool = False) -> None:
    """Make an engine available under `name` (a factory, so nothing starts at import)."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"a TTS engine named {name!r} is already registered")
    _REGISTRY[name] = factory


def engine_names() -> list[str]:
    """Names of the registered engines, sorted."""
    return sorted(_REGISTRY)


def get_engine(name: str) -> TTSEngine:
    """A new instance of the engine registered as `name`."""
    try:
        factory = _REGISTRY[name]
    except KeyError as exc:
        raise InvalidTTSRequest(
            f"Unknown text-to-speech engine {name!r} (available: {', '.join(engine_names())})",
            field="engine",
            message_vi="Không có bộ đọc văn bản này",
        ) from exc
    return factory()


def check_voice_and_rate(engine: TTSEngine, voice: str, rate: int) -> None:
    """Raise `InvalidTTSRequest` unless the engine has `voice` and `rate` is -3..+3."""
    if voice not in engine.voices:
        raise InvalidTTSRequest(
            f"Voice {voice!r} is not offered by {engine.name} "
            f"(choose one of: {', '.join(engine.voices)})",
            field="voice",
            message_vi="Giọng đọc không hợp lệ",
        )
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in RATES:
        raise InvalidTTSRequest(
            "The speaking rate must be a whole number from -3 to +3",
            field="rate",
            message_vi="Tốc độ đọc phải là số nguyên từ -3 đến +3",
        )
