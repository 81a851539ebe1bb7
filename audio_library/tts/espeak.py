"""espeak-ng as a text-to-speech engine (offline, in Debian as ``espeak-ng``).

Voice mapping (``espeak-ng --voices=vi`` lists exactly these three Vietnamese voices):

==========  ====================  ==================================
our id      espeak-ng voice       espeak-ng name
==========  ====================  ==================================
``south``   ``vi-vn-x-south``     Vietnamese_(Southern)  (default)
``north``   ``vi``                Vietnamese_(Northern)
``central`` ``vi-vn-x-central``   Vietnamese_(Central)
==========  ====================  ==================================

Rate -3..+3 maps to 110..200 words per minute in steps of 15 (0 = 155 wpm, about
four syllables a second, a calm announcer's pace; espeak-ng's own default is 175).
Text is passed through a UTF-8 file (``-b 1 -f``), never the command line, so length
and leading dashes are no concern.  espeak-ng writes 22.05 kHz 16-bit mono WAV.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from audio_library.exceptions import AudioToolError, TTSEngineError
from audio_library.ffmpeg_tools import run_tool, stderr_text

ESPEAK = "espeak-ng"

VOICE_MAP: dict[str, str] = {
    "south": "vi-vn-x-south",
    "north": "vi",
    "central": "vi-vn-x-central",
}
VOICE_NAMES: dict[str, str] = {
    "south": "Giọng miền Nam (espeak-ng vi-vn-x-south)",
    "north": "Giọng miền Bắc (espeak-ng vi)",
    "central": "Giọng miền Trung (espeak-ng vi-vn-x-central)",
}
BASE_WPM = 155
WPM_STEP = 15


def rate_to_wpm(rate: int) -> int:
    """espeak-ng ``-s`` value for a -3..+3 rate."""
    return BASE_WPM + WPM_STEP * rate


class EspeakEngine:
    """`TTSEngine` backed by the espeak-ng command line."""

    name = "espeak-ng"

    def __init__(self, *, executable: str = ESPEAK, timeout_s: float = 120.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s

    @property
    def voices(self) -> Mapping[str, str]:
        """Regional voice ids offered by this engine."""
        return VOICE_NAMES

    def synthesize(self, text: str, voice: str, rate: int, out_wav_path: Path) -> None:
        """Speak `text` into `out_wav_path` (22.05 kHz 16-bit mono WAV)."""
        espeak_voice = VOICE_MAP[voice]
        out = Path(out_wav_path)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", suffix=".txt", dir=out.parent, delete=False
        ) as fh:
            fh.write(text)
            text_path = Path(fh.name)
        try:
            args = [self.executable, "-v", espeak_voice, "-s", str(rate_to_wpm(rate))]
            args += ["-b", "1", "-w", str(out), "-f", str(text_path)]
            try:
                done = run_tool(args, timeout=self.timeout_s)
            except AudioToolError as exc:
                raise TTSEngineError(
                    f"espeak-ng could not be run: {exc}",
                    message_vi="Không chạy được bộ đọc espeak-ng",
                ) from exc
        finally:
            text_path.unlink(missing_ok=True)
        if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise TTSEngineError(
                f"espeak-ng failed to synthesise speech: {stderr_text(done.stderr)}",
                message_vi="Bộ đọc espeak-ng không tạo được giọng nói",
            )
