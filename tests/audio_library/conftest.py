"""Fixtures for the audio library: real ffmpeg / espeak-ng, signals made at test time
by :mod:`tests.support.audio` (which the benchmarks share).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support import audio as audio_helpers
from tests.support.audio import SPEECH_TEXT, espeak, sine, write_wav

REQUIRED_TOOLS = ("ffmpeg", "ffprobe", "espeak-ng")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=f"not installed: {', '.join(missing)}"))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder of generated inputs."""
    return tmp_path_factory.mktemp("audio-inputs")


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    """About ten seconds of real synthetic speech (espeak-ng)."""
    return espeak(SPEECH_TEXT, media_dir / "speech.wav")


@pytest.fixture(scope="session")
def tone_wav(media_dir: Path) -> Path:
    """Five seconds of a 440 Hz stereo tone at -6 dBFS, 48 kHz."""
    tone = sine(5.0, 440.0, 0.5, rate=48000)
    return write_wav(media_dir / "tone.wav", np.stack([tone, tone], axis=1), rate=48000)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """A scratch folder for one test's outputs."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def audio() -> ModuleType:
    """Signal generators, converters and the independent ebur128 meter
    (:mod:`tests.support.audio`)."""
    return audio_helpers
