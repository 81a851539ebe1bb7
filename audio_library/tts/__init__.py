"""Text-to-speech: engine interface and registry, Vietnamese normalisation, synthesis.

espeak-ng is registered as ``"espeak-ng"`` on import; see ``README.md`` to add another.
"""

from __future__ import annotations

from audio_library.tts.base import (
    RATES,
    REGIONAL_VOICES,
    TTSEngine,
    check_voice_and_rate,
    engine_names,
    get_engine,
    register_engine,
)
from audio_library.tts.espeak import EspeakEngine
from audio_library.tts.normalize_vi import normalize_vi
from audio_library.tts.synth import split_into_chunks, synthesize_to_file, validate_text

if "espeak-ng" not in engine_names():
    register_engine("espeak-ng", EspeakEngine)

__all__ = [
    "RATES",
    "REGIONAL_VOICES",
    "EspeakEngine",
    "TTSEngine",
    "check_voice_and_rate",
    "engine_names",
    "get_engine",
    "normalize_vi",
    "register_engine",
    "split_into_chunks",
    "synthesize_to_file",
    "validate_text",
]
