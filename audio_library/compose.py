"""Join parts (intro jingle, bulletin, outro...) into one WAV for the ingest pipeline.

One ffmpeg filter graph does the work, streaming, so joining a one-hour bulletin needs
no more memory than joining a jingle: every part is resampled to the target rate and
downmixed to mono (the pipeline would downmix anyway), then either

* padded with ``gap_ms`` of silence after every part but the last (``apad``) and
  concatenated (``concat``), or
* chained through ``acrossfade`` with linear (``tri``) curves, each junction
  overlapping ``crossfade_ms``.

Expected durations: ``sum(parts) + gap * (n - 1)`` or ``sum(parts) - crossfade * (n-1)``.
Gap and crossfade together are refused: a crossfade into silence is just a fade, which
is not what an operator asking for both means.  The output is 32-bit float WAV (RF64
past 4 GB) so nothing clips before the pipeline sets the level.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from audio_library.exceptions import CorruptAudio, InvalidComposition, NotAudio
from audio_library.ffmpeg_tools import FFMPEG, content_link, run_tool, stderr_text
from audio_library.probe import ProbeInfo, probe

MAX_PARTS = 20
MAX_JOIN_MS = 60_000


def _validate(parts: Sequence[str | Path], gap_ms: int, crossfade_ms: int) -> None:
    if not parts:
        raise InvalidComposition(
            "Give at least one part to join",
            field="parts",
            message_vi="Cần ít nhất một phần âm thanh để ghép",
        )
    if len(parts) > MAX_PARTS:
        raise InvalidComposition(
            f"At most {MAX_PARTS} parts can be joined",
            field="parts",
            message_vi=f"Chỉ ghép được tối đa {MAX_PARTS} phần",
        )
    for name, value in (("gap_ms", gap_ms), ("crossfade_ms", crossfade_ms)):
        if not 0 <= value <= MAX_JOIN_MS:
            raise InvalidComposition(
                f"{name} must be between 0 and {MAX_JOIN_MS}",
                field=name,
                message_vi="Khoảng lặng hoặc thời gian chuyển tiếp không hợp lệ",
            )
    if gap_ms and crossfade_ms:
        raise InvalidComposition(
            "Choose either a gap or a crossfade between parts, not both",
            field="crossfade_ms",
            message_vi="Chỉ chọn khoảng lặng hoặc chuyển tiếp chồng, không chọn cả hai",
        )


def _probe_parts(parts: Sequence[Path], crossfade_ms: int) -> list[ProbeInfo]:
    infos: list[ProbeInfo] = []
    for index, part in enumerate(parts):
        try:
            info = probe(part)
        except NotAudio as exc:
            raise type(exc)(
                f"Part {index + 1}: {exc.message}",
                field=("parts", index),
                message_vi=f"Phần {index + 1}: {exc.message_vi or 'không phải âm thanh'}",
            ) from exc
        if crossfade_ms and (info.duration_s is None or info.duration_s * 1000 < crossfade_ms):
            raise InvalidComposition(
                f"Part {index + 1} is shorter than the {crossfade_ms} ms crossfade",
                field=("parts", index),
                message_vi=f"Phần {index + 1} ngắn hơn thời gian chuyển tiếp",
            )
        infos.append(info)
    return infos


def build_filter(
    infos: Sequence[ProbeInfo], *, sample_rate: int, gap_ms: int, crossfade_ms: int
) -> str:
    """The ``-filter_complex`` graph joining the inputs into ``[out]``."""
    chains: list[str] = []
    last = len(infos) - 1
    for i, info in enumerate(infos):
        chain = (
            f"[{i}:{info.stream_index}]aresample={sample_rate},"
            f"aformat=sample_fmts=flt:channel_layouts=mono"
        )
        if gap_ms and i < last:
            chain += f",apad=pad_dur={gap_ms / 1000:.3f}"
        chains.append(f"{chain}[a{i}]")
    if last == 0:
        chains.append("[a0]anull[out]")
    elif crossfade_ms:
        current = "a0"
        for i in range(1, last + 1):
            target = "out" if i == last else f"x{i}"
            chains.append(
                f"[{current}][a{i}]acrossfade=d={crossfade_ms / 1000:.3f}:c1=tri:c2=tri[{target}]"
            )
            current = target
    else:
        inputs = "".join(f"[a{i}]" for i in range(last + 1))
        chains.append(f"{inputs}concat=n={last + 1}:v=0:a=1[out]")
    return ";".join(chains)


def compose(
    parts: Sequence[str | Path],
    out_path: str | Path,
    *,
    gap_ms: int = 0,
    crossfade_ms: int = 0,
    sample_rate: int = 44100,
) -> Path:
    """Join `parts` in order into a mono float WAV at `out_path`; return the path.

    Raises `InvalidComposition` for a bad request, `NotAudio` (with the part's index in
    ``loc``) for a part that is not audio, `AudioToolError` if ffmpeg fails.
    """
    _validate(parts, gap_ms, crossfade_ms)
    paths = [Path(p) for p in parts]
    infos = _probe_parts(paths, crossfade_ms)
    graph = build_filter(infos, sample_rate=sample_rate, gap_ms=gap_ms, crossfade_ms=crossfade_ms)
    out = Path(out_path)
    total_s = sum(info.duration_s or 0.0 for info in infos)
    with ExitStack() as stack:
        args = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error"]
        for path in paths:
            args += ["-i", str(stack.enter_context(content_link(path)))]
        args += ["-filter_complex", graph, "-map", "[out]"]
        args += ["-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", "-y", str(out)]
        done = run_tool(args, timeout=300.0 + total_s)
    if done.returncode != 0:
        out.unlink(missing_ok=True)
        raise CorruptAudio(
            f"The parts could not be joined: {stderr_text(done.stderr)}",
            field="parts",
            message_vi="Không ghép được các phần âm thanh",
        )
    return out
