"""From bulletin text to one WAV: validate, normalise, chunk, synthesise, join.

Long texts are split at sentence boundaries into chunks of at most ``chunk_chars``
(a sentence longer than that is split at commas/semicolons, then at spaces), each
chunk is synthesised separately (engines slow down or fail on very long inputs, and a
chunk failure names its position), and the chunk WAVs are joined with ``pause_ms`` of
silence between them.  Joining streams PCM frames with the standard `wave` module, so
memory stays at one chunk.  The result then goes through the same ingest pipeline as
an upload (`audio_library.pipeline.process_file`) for loudness and encoding.
"""

from __future__ import annotations

import re
import secrets
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path

from audio_library.exceptions import InvalidTTSRequest, TTSEngineError
from audio_library.tts.base import TTSEngine, check_voice_and_rate
from audio_library.tts.normalize_vi import normalize_vi

DEFAULT_MAX_CHARS = 20_000
DEFAULT_CHUNK_CHARS = 400
DEFAULT_PAUSE_MS = 250

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p and p.strip()]


def _split_long(sentence: str, limit: int) -> Iterator[str]:
    if len(sentence) <= limit:
        yield sentence
        return
    clauses = _pieces(sentence, _CLAUSE_END)
    if len(clauses) > 1:
        yield from _pack(clauses, limit)
        return
    words = sentence.split()
    if len(words) > 1:
        yield from _pack(words, limit)
        return
    for start in range(0, len(sentence), limit):  # one enormous "word"
        yield sentence[start : start + limit]


def _pack(parts: Sequence[str], limit: int) -> Iterator[str]:
    current = ""
    for part in parts:
        for piece in _split_long(part, limit):
            candidate = f"{current} {piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                if current:
                    yield current
                current = piece
    if current:
        yield current


def split_into_chunks(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Split text into chunks of at most `chunk_chars`, preferring sentence ends."""
    if chunk_chars < 1:
        raise ValueError("chunk_chars must be positive")
    return list(_pack(_pieces(text, _SENTENCE_END), chunk_chars))


def validate_text(text: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The stripped text, or `InvalidTTSRequest` if empty or over `max_chars`."""
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped:
        raise InvalidTTSRequest(
            "The text to read is empty",
            field="text",
            message_vi="Văn bản cần đọc đang trống",
        )
    if len(stripped) > max_chars:
        raise InvalidTTSRequest(
            f"The text has {len(stripped)} characters; at most {max_chars} can be read",
            field="text",
            message_vi=f"Văn bản dài {len(stripped)} ký tự, vượt quá giới hạn {max_chars} ký tự",
        )
    if not any(ch.isalnum() for ch in stripped):
        raise InvalidTTSRequest(
            "The text has nothing to read (no letters or digits)",
            field="text",
            message_vi="Văn bản không có chữ hoặc số để đọc",
        )
    return stripped


def join_wavs(parts: Sequence[Path], out_path: Path, *, pause_ms: int) -> Path:
    """Concatenate same-format PCM WAVs with `pause_ms` of silence between them."""
    out = Path(out_path)
    params: tuple[int, int, int] | None = None
    with wave.open(str(out), "wb") as dest:
        for index, part in enumerate(parts):
            with wave.open(str(part), "rb") as src:
                these = (src.getnchannels(), src.getsampwidth(), src.getframerate())
                if params is None:
                    params = these
                    dest.setnchannels(these[0])
                    dest.setsampwidth(these[1])
                    dest.setframerate(these[2])
                elif these != params:
                    raise TTSEngineError(
                        f"Chunk {index + 1} came back in a different WAV format",
                        message_vi="Bộ đọc trả về các đoạn âm thanh khác định dạng",
                    )
                if index and pause_ms:
                    frames = round(params[2] * pause_ms / 1000)
                    dest.writeframes(b"\x00" * frames * params[0] * params[1])
                while data := src.readframes(1 << 16):
                    dest.writeframes(data)
    return out


def synthesize_to_file(
    text: str,
    voice: str,
    rate: int,
    engine: TTSEngine,
    work_dir: str | Path,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    pause_ms: int = DEFAULT_PAUSE_MS,
) -> Path:
    """Speak `text` into a new WAV in `work_dir` and return its path.

    Raises `InvalidTTSRequest` for empty/over-long text or an unknown voice/rate and
    `TTSEngineError` if the engine fails.  Feed the WAV to `process_file` afterwards.
    """
    stripped = validate_text(text, max_chars=max_chars)
    check_voice_and_rate(engine, voice, rate)
    chunks = split_into_chunks(normalize_vi(stripped), chunk_chars)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    chunk_paths: list[Path] = []
    out = work / f"speech-{token}.wav"
    try:
        for index, chunk in enumerate(chunks):
            path = work / f"speech-{token}-{index:04d}.wav"
            chunk_paths.append(path)
            engine.synthesize(chunk, voice, rate, path)
        return join_wavs(chunk_paths, out, pause_ms=pause_ms)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        for path in chunk_paths:
            path.unlink(missing_ok=True)
