"""The one place that starts ffmpeg/ffprobe; `OSError`s and timeouts are wrapped here.

Two habits matter for correctness:

* Content, not name: ffmpeg uses the file extension as a probing hint (a PNG renamed
  ``.mp3`` is read by the MP3 demuxer).  Every input is therefore opened through a
  symlink without extension (`content_link`), so detection rests on the bytes alone.
* Streams, not whole files: decoded audio is read from ffmpeg's stdout in fixed-size
  blocks (`decode_blocks`), so memory does not grow with duration; stderr goes to a
  temporary file so a chatty ffmpeg can never deadlock the pipe.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from audio_library.exceptions import AudioToolError, CorruptAudio

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"

BLOCK_SAMPLES = 1 << 18
"""Samples per processing block (~6 s at 44.1 kHz; a few MB of float64)."""

_STDERR_TAIL = 2000


def _tool_failed(tool: str, exc: BaseException) -> AudioToolError:
    if isinstance(exc, FileNotFoundError):
        return AudioToolError(
            f"{tool} is not installed on the server",
            message_vi=f"Máy chủ chưa cài đặt {tool}",
        )
    if isinstance(exc, subprocess.TimeoutExpired):
        return AudioToolError(
            f"{tool} took too long and was stopped",
            message_vi=f"{tool} chạy quá lâu và đã bị dừng",
        )
    return AudioToolError(
        f"{tool} could not be run: {exc}",
        message_vi=f"Không chạy được {tool}",
    )


def run_tool(
    args: Sequence[str], *, timeout: float, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion, capturing output; OS failures become `AudioToolError`."""
    try:
        return subprocess.run(
            list(args),
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _tool_failed(args[0], exc) from exc


def stderr_text(raw: bytes) -> str:
    """The last part of a tool's stderr, decoded leniently, for error messages."""
    return raw.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]


@contextmanager
def content_link(src: Path) -> Iterator[Path]:
    """A path to `src` without extension so ffmpeg probes the content, not the name."""
    with tempfile.TemporaryDirectory(prefix="al-probe-") as tmp:
        link = Path(tmp) / "input"
        os.symlink(src.resolve(), link)
        yield link


def decode_args(
    src: Path,
    *,
    sample_rate: int,
    stream_index: int | None,
    max_seconds: float | None,
    ignore_length: bool = False,
) -> list[str]:
    """ffmpeg arguments decoding one audio stream of `src` to mono float32 at `sample_rate`.

    ``ignore_length``: read a WAV's data to the end of the file, whatever its header's
    data size says (a header that under-states it would cut the recording short).
    """
    args = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error"]
    if ignore_length:
        args += ["-ignore_length", "1"]
    args += ["-i", str(src)]
    args += ["-map", f"0:{stream_index}" if stream_index is not None else "0:a:0"]
    args += ["-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate)]
    if max_seconds is not None:
        args += ["-t", f"{max_seconds:.3f}"]
    args += ["-c:a", "pcm_f32le", "-f", "f32le"]
    return args


def _read_exact(stream: IO[bytes], nbytes: int) -> bytes:
    chunks: list[bytes] = []
    remaining = nbytes
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def decode_blocks(
    src: Path,
    *,
    sample_rate: int,
    block_samples: int = BLOCK_SAMPLES,
    stream_index: int | None = None,
    timeout: float = 3600.0,
) -> Iterator[NDArray[np.float32]]:
    """Yield mono float32 blocks of `src` decoded by ffmpeg (last block may be shorter).

    Raises `CorruptAudio` if ffmpeg stops with an error before producing any audio.
    """
    with content_link(src) as link, tempfile.TemporaryFile() as err:
        args = decode_args(
            link, sample_rate=sample_rate, stream_index=stream_index, max_seconds=None
        )
        try:
            proc = subprocess.Popen([*args, "pipe:1"], stdout=subprocess.PIPE, stderr=err)
        except OSError as exc:
            raise _tool_failed(FFMPEG, exc) from exc
        produced = 0
        try:
            assert proc.stdout is not None
            while True:
                raw = _read_exact(proc.stdout, block_samples * 4)
                usable = len(raw) - len(raw) % 4
                if usable:
                    produced += usable // 4
                    yield np.frombuffer(raw[:usable], dtype="<f4")
                if len(raw) < block_samples * 4:
                    break
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise _tool_failed(FFMPEG, exc) from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if rc != 0 and produced == 0:
            err.seek(0)
            raise CorruptAudio(
                f"The audio could not be decoded: {stderr_text(err.read())}",
                field="file",
                message_vi="Không giải mã được âm thanh trong tệp",
            )
