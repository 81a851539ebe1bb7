"""Ingest pipeline: any audio file in, a loudness-normalised station rendition out.

`process_file` is a top-level function with picklable arguments and result, meant to
run in a `ProcessPoolExecutor` (never in a request thread).  Steps:

1. `probe` the content (ffprobe); reject non-audio and, from the declared duration,
   over-long files before any heavy work.
2. Decode once with ffmpeg to a temporary raw mono float32 file at the target rate
   (ffmpeg's resampler and downmix: ``-ac 1`` to float output mixes stereo as
   ``0.707 * (L + R)`` without normalisation, so a dual-mono recording, the usual case
   for voice recorders, measures as BS.1770 measures it in stereo).  The declared
   duration is compared with what was decoded to catch truncated uploads.
3. Analysis pass, block by block: BS.1770-4 integrated loudness, 4x-oversampled true
   peak (whose per-sample envelope is written to a second temporary file for the
   limiter), and the first/last sample above the silence threshold.
4. Gain = target - measured loudness.  If the gain would push the true peak over the
   ceiling, a look-ahead true-peak limiter (`audio_library.dsp.limiter_gain`: smooth
   5 ms ramps, 20 ms hold, no clipping) holds it; because limiting lowers loudness, dry
   runs re-measure the limited signal and adjust the gain by the secant method (at most
   `MAX_LIMITER_PASSES`, at most `MAX_EXTRA_GAIN_DB` of extra gain) until it is within
   0.1 LU of the target.
5. The processed blocks are piped into ffmpeg for the rendition (default MP3 64 kbit/s
   CBR mono); the rendition is then decoded again and measured, so "after" figures are
   those of the file stations will play.  Lossy encoding costs loudness (its low-pass
   removes K-weighted treble: 0.1-0.5 LU at 64 kbit/s) and adds peak overshoot (up to
   about 1 dB on noisy material), so the limiter aims `CODEC_HEADROOM_DB` under the
   ceiling and, if the rendition still misses the target by more than 0.2 LU or the
   ceiling at all, it is re-encoded with corrected gain/ceiling (at most
   `MAX_ENCODE_CORRECTIONS` times).

Synthesised speech has a fast path, `process_speech` (a spoken emergency waits for it):
a TTS engine's plain 16-bit mono WAV is read with numpy and resampled in process
instead of steps 1-2's ffprobe and ffmpeg decode, and the encoder's loudness loss seen
on the previous speech of the process (the warm-up's included) is made up before the
first encode, so step 5 usually encodes once.  Steps 3-5 are the same code, so the
rendition is measured and held to the same target and ceiling.  Measured on a 11-s
bulletin at load average 3: 0.29-0.46 s against 0.74-1.58 s for `process_file`.

Memory: why not pydub.  ``AudioSegment`` holds the whole decoded file (3 h of stereo
16-bit is 1.9 GB, more once turned into numpy floats); here memory is a few blocks of
2**18 samples whatever the duration, and the price is temporary disk space of 8 bytes
per output sample (decoded signal + envelope: about 1.3 GB per hour at 44.1 kHz), kept in
`work_dir` and removed before returning.  (pydub 0.25 is also not used because its
source fails to compile under ``-W error`` and it needs ``audioop``, gone in Python 3.13.)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from audio_library.dsp import (
    LimiterShape,
    LoudnessMeter,
    TruePeakMeter,
    db_to_gain,
    gain_to_db,
    limiter_gain,
)
from audio_library.exceptions import (
    AudioToolError,
    AudioTooLong,
    CorruptAudio,
    NoScratchSpace,
    SilentAudio,
    TruncatedAudio,
    UnderstatedLength,
)
from audio_library.ffmpeg_tools import (
    BLOCK_SAMPLES,
    FFMPEG,
    content_link,
    decode_args,
    decode_blocks,
    run_tool,
    stderr_text,
)
from audio_library.probe import ProbeInfo, probe
from audio_library.settings import SUPPORTED_SAMPLE_RATES, AudioSettings, RenditionFormat

FloatArray = NDArray[np.float64]

CODEC_HEADROOM_DB = 1.0
"""How far under the ceiling the limiter aims, for lossy-codec overshoot."""
LOUDNESS_TOLERANCE_LU = 0.1
ENCODE_CORRECTION_LU = 0.2
"""Re-encode if the rendition misses the loudness target by more than this..."""
MAX_ENCODE_CORRECTIONS = 2
"""...or its true peak is over the ceiling, at most this many times."""
MAX_LIMITER_PASSES = 6
MAX_EXTRA_GAIN_DB = 12.0
"""Most the gain may be raised to make up for limiting (very peaky input)."""
TRUNCATION_SLACK = (1.10, 1.0)
"""Declared duration above ``decoded * 1.10 + 1.0 s`` means a truncated file."""


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    """How one rendition format is encoded."""

    ext: str
    mime: str
    codec: str
    muxer: str
    extra_args: tuple[str, ...]

    def ffmpeg_args(self, bitrate: str) -> list[str]:
        """Encoder arguments (after the input) for this format."""
        return ["-c:a", self.codec, "-b:a", bitrate, *self.extra_args, "-f", self.muxer]


RENDITIONS: dict[str, RenditionSpec] = {
    # CBR is libmp3lame's default with -b:a; no ID3 tag, Xing/LAME header for duration.
    "mp3": RenditionSpec("mp3", "audio/mpeg", "libmp3lame", "mp3", ("-id3v2_version", "0")),
    "aac": RenditionSpec("m4a", "audio/mp4", "aac", "ipod", ("-movflags", "+faststart")),
    # Opus runs at 48 kHz; ffmpeg resamples. -vbr off gives constant bitrate.
    "opus": RenditionSpec("opus", "audio/ogg", "libopus", "ogg", ("-vbr", "off")),
}


@dataclass(frozen=True, slots=True)
class ProcessingOptions:
    """The settings `process_file` needs, as a small picklable value."""

    sample_rate: int = 44100
    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    bitrate: str = "64k"
    rendition_format: RenditionFormat = "mp3"
    max_duration_s: float = 3 * 3600.0
    trim_silence: bool = False
    trim_threshold_dbfs: float = -50.0
    trim_min_silence_ms: int = 300
    trim_keep_ms: int = 100

    @classmethod
    def from_settings(cls, settings: AudioSettings) -> ProcessingOptions:
        """Take the processing values from the package settings."""
        return cls(
            sample_rate=settings.sample_rate,
            target_lufs=settings.target_lufs,
            true_peak_dbtp=settings.true_peak_dbtp,
            bitrate=settings.bitrate,
            rendition_format=settings.rendition_format,
            max_duration_s=settings.max_duration_s,
            trim_silence=settings.trim_silence,
            trim_threshold_dbfs=settings.trim_threshold_dbfs,
            trim_min_silence_ms=settings.trim_min_silence_ms,
            trim_keep_ms=settings.trim_keep_ms,
        )


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """Everything the asset's metadata needs about one processed file."""

    rendition_path: Path
    """Temporary file in `work_dir`; the caller moves it into storage (or deletes it)."""
    rendition_sha256: str
    rendition_bytes: int
    rendition_ext: str
    rendition_mime: str
    rendition_codec: str
    bitrate: str
    sample_rate: int
    channels: int
    duration_ms: int
    """Duration of the rendition's audio (after trimming)."""
    source_duration_ms: int
    """Duration decoded from the original."""
    trimmed_start_ms: int
    trimmed_end_ms: int
    loudness_before_lufs: float
    """Integrated loudness of the original as downmixed to mono (0.707 * (L + R))."""
    loudness_after_lufs: float
    """Measured on the encoded rendition."""
    true_peak_before_dbtp: float
    true_peak_after_dbtp: float
    gain_db: float
    limiter_applied: bool
    limiter_max_reduction_db: float
    original_sha256: str
    original: ProbeInfo

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-ready dict of everything but the temporary path."""
        data = asdict(self)
        data.pop("rendition_path")
        data["original"] = self.original.as_dict()
        return data


@dataclass(slots=True)
class _Analysis:
    samples: int
    loudness: float
    true_peak: float
    first_active: int | None
    last_active: int | None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_f32(fh: IO[bytes], start: int, stop: int, lo: int, hi: int) -> FloatArray:
    """Samples [start, stop) of a raw float32 file; zeros outside [lo, hi)."""
    out = np.zeros(max(stop - start, 0), dtype=np.float64)
    a, b = max(start, lo), min(stop, hi)
    if b > a:
        fh.seek(a * 4)
        data = np.frombuffer(fh.read((b - a) * 4), dtype="<f4")
        out[a - start : a - start + data.size] = data
    return out


UNDERSTATED = (1.5, 60.0)
"""Decoding stops at ``declared * 1.5 + 60 s``; a stream still going there is refused."""
SCRATCH_BYTES_PER_SAMPLE = 8  # decoded float32 + limiter envelope float32
SCRATCH_MARGIN_BYTES = 32 * 1024 * 1024


def _understated_wav(src: Path, info: ProbeInfo) -> bool:
    """A WAV whose ``data`` chunk size under-states the audio the file holds.

    ffmpeg trusts that size and stops there (a 30 s recording whose header says 1 s was
    stored as 1 s).  Bytes after the declared end that are not another chunk (``LIST``,
    ``id3 ``...) are more audio.
    """
    if info.format_name.split(",")[0] != "wav":
        return False
    size = src.stat().st_size
    with src.open("rb") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False  # RF64 keeps its sizes elsewhere
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            length = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] != b"data":
                pos += 8 + length + (length & 1)
                continue
            end = pos + 8 + length + (length & 1)
            if size - end <= 64 * 1024:
                return False
            fh.seek(end)
            following = fh.read(8)
            next_length = int.from_bytes(following[4:8], "little")
            another_chunk = all(0x20 <= b <= 0x7E for b in following[:4]) and (
                end + 8 + next_length <= size
            )
            return not another_chunk
    return False


def _decode_budget_s(info: ProbeInfo, options: ProcessingOptions, *, whole_wav: bool) -> float:
    """How many seconds to decode at most (bounds the scratch disk used)."""
    limit = options.max_duration_s + 1.0
    declared = info.duration_s
    if declared is None or whole_wav:
        return limit
    factor, slack = UNDERSTATED
    return min(limit, declared * factor + slack)


def _ensure_scratch_space(where: Path, seconds: float, options: ProcessingOptions) -> None:
    needed = seconds * options.sample_rate * SCRATCH_BYTES_PER_SAMPLE + SCRATCH_MARGIN_BYTES
    free = shutil.disk_usage(where).free
    if free < needed:
        raise NoScratchSpace(
            f"processing needs about {needed / 2**20:.0f} MiB of scratch space; "
            f"{free / 2**20:.0f} MiB free",
            message_vi="Máy chủ không đủ dung lượng đĩa để xử lý tệp âm thanh",
        )


def _decode_to_raw(src: Path, info: ProbeInfo, options: ProcessingOptions, raw: Path) -> int:
    whole_wav = _understated_wav(src, info)
    budget_s = _decode_budget_s(info, options, whole_wav=whole_wav)
    _ensure_scratch_space(raw.parent, budget_s, options)
    with content_link(src) as link:
        args = decode_args(
            link,
            sample_rate=options.sample_rate,
            stream_index=info.stream_index,
            max_seconds=budget_s,
            ignore_length=whole_wav,
        )
        done = run_tool([*args, "-y", str(raw)], timeout=300.0 + budget_s)
    if done.returncode != 0:
        detail = stderr_text(done.stderr).replace(str(link), "input")
        if "No space left" in detail or "Permission denied" in detail:
            raise AudioToolError(
                f"ffmpeg could not write its output: {detail}",
                message_vi="Máy chủ không ghi được tệp tạm khi giải mã",
            )
        raise CorruptAudio(
            f"The audio could not be decoded: {detail}",
            field="file",
            message_vi="Không giải mã được âm thanh trong tệp",
        )
    samples = raw.stat().st_size // 4 if raw.exists() else 0
    if samples == 0:
        raise CorruptAudio(
            "No audio could be decoded from the file",
            field="file",
            message_vi="Không giải mã được âm thanh nào từ tệp",
        )
    decoded_s = samples / options.sample_rate
    if budget_s < options.max_duration_s + 1.0 and decoded_s >= budget_s - 0.5:
        declared = info.duration_s or 0.0
        raise UnderstatedLength(
            f"The file declares {declared:.1f} s but holds far more audio; "
            "re-save it with a correct header",
            field="file",
            message_vi=(
                f"Tệp khai báo {declared:.1f} giây nhưng chứa nhiều âm thanh hơn hẳn; "
                "hãy lưu lại tệp cho đúng"
            ),
        )
    return samples


def _check_duration(info: ProbeInfo, decoded_s: float, options: ProcessingOptions) -> None:
    if decoded_s > options.max_duration_s + 0.5:
        raise _too_long(decoded_s, options.max_duration_s)
    declared = info.stream_duration_s if info.stream_duration_s is not None else info.duration_s
    factor, slack = TRUNCATION_SLACK
    if declared is not None and declared > decoded_s * factor + slack:
        raise TruncatedAudio(
            f"The file seems cut short: it declares {declared:.1f} s "
            f"but only {decoded_s:.1f} s could be decoded",
            field="file",
            message_vi=(
                f"Tệp có vẻ bị cắt cụt: khai báo {declared:.1f} giây "
                f"nhưng chỉ giải mã được {decoded_s:.1f} giây"
            ),
        )


def _too_long(duration_s: float, limit_s: float) -> AudioTooLong:
    return AudioTooLong(
        f"The audio lasts {duration_s / 60:.1f} min, longer than the "
        f"{limit_s / 60:.0f} min allowed",
        field="file",
        message_vi=(
            f"Âm thanh dài {duration_s / 60:.1f} phút, vượt quá giới hạn {limit_s / 60:.0f} phút"
        ),
    )


def _analyse(raw: Path, envelope: Path, options: ProcessingOptions) -> _Analysis:
    meter = LoudnessMeter(options.sample_rate)
    peak = TruePeakMeter()
    threshold = db_to_gain(options.trim_threshold_dbfs)
    first_active: int | None = None
    last_active: int | None = None
    offset = 0
    with raw.open("rb") as src, envelope.open("wb") as env_out:
        while True:
            data = src.read(BLOCK_SAMPLES * 4)
            if not data:
                break
            block = np.frombuffer(data, dtype="<f4").astype(np.float64)
            meter.feed(block)
            env_out.write(peak.feed(block).astype("<f4").tobytes())
            active = np.flatnonzero(np.abs(block) > threshold)
            if active.size:
                if first_active is None:
                    first_active = offset + int(active[0])
                last_active = offset + int(active[-1])
            offset += block.size
        env_out.write(peak.flush().astype("<f4").tobytes())
    return _Analysis(offset, meter.integrated(), peak.dbtp, first_active, last_active)


def _trim_bounds(analysis: _Analysis, options: ProcessingOptions) -> tuple[int, int]:
    n = analysis.samples
    if not options.trim_silence or analysis.first_active is None or analysis.last_active is None:
        return 0, n
    rate = options.sample_rate
    min_silence = round(options.trim_min_silence_ms * rate / 1000)
    keep = round(options.trim_keep_ms * rate / 1000)
    start, end = 0, n
    if analysis.first_active >= max(min_silence, 1):
        start = max(0, analysis.first_active - keep)
    trailing = n - 1 - analysis.last_active
    if trailing >= max(min_silence, 1):
        end = min(n, analysis.last_active + 1 + keep)
    return start, end


class _Renderer:
    """Produces the processed signal block by block from the decoded file."""

    def __init__(
        self,
        raw: Path,
        envelope: Path,
        *,
        bounds: tuple[int, int],
        rate: int,
    ) -> None:
        self.raw = raw
        self.envelope = envelope
        self.start, self.end = bounds
        self.shape = LimiterShape(rate)
        self.ceiling = 1.0
        self.min_gain = 1.0

    def blocks(self, gain: float, *, limit: bool) -> Iterator[FloatArray]:
        """Yield ``gain * x`` (limited if asked) over the kept region."""
        shape = self.shape
        with self.raw.open("rb") as src, self.envelope.open("rb") as env:
            for a in range(self.start, self.end, BLOCK_SAMPLES):
                b = min(a + BLOCK_SAMPLES, self.end)
                x = _read_f32(src, a, b, self.start, self.end) * gain
                if limit:
                    env_ext = _read_f32(env, a - shape.past, b + shape.future, self.start, self.end)
                    g = limiter_gain(env_ext, gain=gain, ceiling=self.ceiling, shape=shape)
                    if g.size:
                        self.min_gain = min(self.min_gain, float(g.min()))
                    x *= g
                yield x

    def loudness(self, gain: float, *, limit: bool, rate: int) -> float:
        """Integrated loudness of the processed signal (a dry run, nothing written)."""
        meter = LoudnessMeter(rate)
        for block in self.blocks(gain, limit=limit):
            meter.feed(block)
        return meter.integrated()


def _fit_limited_gain(
    renderer: _Renderer, options: ProcessingOptions, base_gain_db: float
) -> tuple[float, float]:
    """Gain (dB) at which the limited signal meets the target, by the secant method.

    Returns the gain and the last slope (LU of loudness per dB of gain, in (0, 1]).
    """
    gain_db, slope = base_gain_db, 1.0
    previous: tuple[float, float] | None = None
    for _ in range(MAX_LIMITER_PASSES):
        measured = renderer.loudness(db_to_gain(gain_db), limit=True, rate=options.sample_rate)
        error = options.target_lufs - measured
        if not math.isfinite(error) or abs(error) <= LOUDNESS_TOLERANCE_LU:
            break
        if previous is not None and gain_db != previous[0]:
            slope = min(max((measured - previous[1]) / (gain_db - previous[0]), 0.05), 1.0)
        previous = (gain_db, measured)
        next_gain = min(gain_db + error / slope, base_gain_db + MAX_EXTRA_GAIN_DB)
        if next_gain == gain_db:
            break
        gain_db = next_gain
    return gain_db, slope


@dataclass(frozen=True, slots=True)
class _Outcome:
    gain_db: float
    loudness: float
    true_peak: float
    codec_loss_lu: float
    """Loudness the first encode lost against its aim (LU)."""
    encodes: int


def _render(
    renderer: _Renderer,
    analysis: _Analysis,
    options: ProcessingOptions,
    rendition: Path,
    *,
    codec_loss_lu: float = 0.0,
) -> _Outcome:
    """Choose gain (and limiting), encode, measure the rendition, correct if needed.

    Lossy encoding (its low-pass above all) shifts loudness by a few tenths of a LU and
    adds some peak overshoot, so the encoded file is measured and, if it misses the
    target or the ceiling, re-encoded with the gain and limiter ceiling corrected.
    """
    rate = options.sample_rate
    ceiling_db = options.true_peak_dbtp - CODEC_HEADROOM_DB
    renderer.ceiling = db_to_gain(ceiling_db)
    base_gain_db = options.target_lufs - analysis.loudness
    limit = analysis.true_peak + base_gain_db > ceiling_db
    gain_db, slope = base_gain_db, 1.0
    if limit:
        gain_db, slope = _fit_limited_gain(renderer, options, base_gain_db)
    if codec_loss_lu:
        # The encoder's expected loudness loss, made up before the first encode (the
        # measurement below still decides; this only spares a second encode).
        gain_db = min(gain_db + codec_loss_lu / slope, base_gain_db + MAX_EXTRA_GAIN_DB)
        limit = limit or analysis.true_peak + gain_db > ceiling_db
    first_loss: float | None = None
    for attempt in range(1 + MAX_ENCODE_CORRECTIONS):
        renderer.ceiling = db_to_gain(ceiling_db)
        renderer.min_gain = 1.0
        _encode(renderer.blocks(db_to_gain(gain_db), limit=limit), rendition, options)
        loudness, peak = _measure_rendition(rendition, rate)
        error = options.target_lufs - loudness
        if first_loss is None:
            first_loss = codec_loss_lu + error
        excess = peak - options.true_peak_dbtp
        on_target = abs(error) <= ENCODE_CORRECTION_LU and excess <= 0
        if on_target or attempt == MAX_ENCODE_CORRECTIONS:
            break
        if excess > 0:
            ceiling_db -= excess + 0.1
        gain_db = min(gain_db + error / slope, base_gain_db + MAX_EXTRA_GAIN_DB)
        limit = limit or analysis.true_peak + gain_db > ceiling_db
    return _Outcome(
        gain_db=gain_db,
        loudness=loudness,
        true_peak=peak,
        codec_loss_lu=first_loss or 0.0,
        encodes=attempt + 1,
    )


def _encode(blocks: Iterator[FloatArray], out: Path, options: ProcessingOptions) -> None:
    spec = RENDITIONS[options.rendition_format]
    args = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error"]
    args += ["-f", "f32le", "-ar", str(options.sample_rate), "-ac", "1", "-i", "pipe:0"]
    args += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    args += ["-ac", "1", *spec.ffmpeg_args(options.bitrate), "-y", str(out)]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err)
        except OSError as exc:
            raise AudioToolError(
                f"ffmpeg could not be started: {exc}",
                message_vi="Không chạy được ffmpeg để mã hoá",
            ) from exc
        assert proc.stdin is not None
        try:
            for block in blocks:
                proc.stdin.write(block.astype("<f4").tobytes())
        except BrokenPipeError:
            pass  # ffmpeg died; its exit status and stderr say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            try:
                rc = proc.wait(timeout=600.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -1
        if rc != 0:
            err.seek(0)
            raise AudioToolError(
                f"ffmpeg failed to encode the {options.rendition_format} rendition: "
                f"{stderr_text(err.read())}",
                message_vi="ffmpeg không mã hoá được tệp phát",
            )


def _measure_rendition(path: Path, rate: int) -> tuple[float, float]:
    meter = LoudnessMeter(rate)
    peak = TruePeakMeter(envelope=False)
    for block in decode_blocks(path, sample_rate=rate):
        x = block.astype(np.float64)
        meter.feed(x)
        peak.feed(x)
    peak.flush()
    return meter.integrated(), peak.dbtp


def _validate(options: ProcessingOptions) -> None:
    if options.sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise ValueError(f"unsupported sample rate {options.sample_rate}")
    if options.rendition_format not in RENDITIONS:
        raise ValueError(f"unknown rendition format {options.rendition_format!r}")


def process_file(
    src_path: str | Path,
    *,
    options: ProcessingOptions,
    work_dir: str | Path,
) -> ProcessResult:
    """Probe, decode, measure, normalise and encode `src_path` into a station rendition.

    Raises `NotAudio`/`CorruptAudio`/`TruncatedAudio`, `AudioTooLong`, `SilentAudio`
    (all `InvalidInput`) for bad uploads and `AudioToolError` for server-side failures.
    The rendition is left in `work_dir` (see `ProcessResult.rendition_path`); every
    other temporary file is removed.
    """
    _validate(options)
    src = Path(src_path)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    info = probe(src)
    if info.duration_s is not None and info.duration_s > options.max_duration_s + 0.5:
        raise _too_long(info.duration_s, options.max_duration_s)

    return _process(src, info, options, work, decode=_decode_to_raw)


def _process(
    src: Path,
    info: ProbeInfo,
    options: ProcessingOptions,
    work: Path,
    *,
    decode: Callable[[Path, ProbeInfo, ProcessingOptions, Path], int],
    codec_loss_lu: float = 0.0,
    learned: dict[tuple[str, str, int], float] | None = None,
) -> ProcessResult:
    """Steps 2-5 (see the module docstring), with `decode` writing the raw samples."""
    spec = RENDITIONS[options.rendition_format]
    rendition = work / f"rendition-{secrets.token_hex(8)}.{spec.ext}"
    scratch = Path(tempfile.mkdtemp(prefix="ingest-", dir=work))
    try:
        raw = scratch / "decoded.f32"
        envelope = scratch / "envelope.f32"
        rate = options.sample_rate
        samples = decode(src, info, options, raw)
        _check_duration(info, samples / rate, options)
        analysis = _analyse(raw, envelope, options)
        if not math.isfinite(analysis.loudness):
            raise SilentAudio(
                "The audio is silent (nothing above -70 LUFS)",
                field="file",
                message_vi="Tệp chỉ có khoảng lặng, không có âm thanh",
            )
        bounds = _trim_bounds(analysis, options)
        renderer = _Renderer(raw, envelope, bounds=bounds, rate=rate)
        outcome = _render(renderer, analysis, options, rendition, codec_loss_lu=codec_loss_lu)
        if learned is not None:
            learned[_codec_key(options)] = outcome.codec_loss_lu
        start, end = bounds
        return ProcessResult(
            rendition_path=rendition,
            rendition_sha256=_sha256_file(rendition),
            rendition_bytes=rendition.stat().st_size,
            rendition_ext=spec.ext,
            rendition_mime=spec.mime,
            rendition_codec=spec.codec,
            bitrate=options.bitrate,
            sample_rate=rate,
            channels=1,
            duration_ms=round((end - start) * 1000 / rate),
            source_duration_ms=round(samples * 1000 / rate),
            trimmed_start_ms=round(start * 1000 / rate),
            trimmed_end_ms=round((samples - end) * 1000 / rate),
            loudness_before_lufs=round(analysis.loudness, 2),
            loudness_after_lufs=round(outcome.loudness, 2),
            true_peak_before_dbtp=round(analysis.true_peak, 2),
            true_peak_after_dbtp=round(outcome.true_peak, 2),
            gain_db=round(outcome.gain_db, 2),
            limiter_applied=renderer.min_gain < 1.0,
            limiter_max_reduction_db=round(abs(gain_to_db(renderer.min_gain)), 2),
            original_sha256=_sha256_file(src),
            original=info,
        )
    except BaseException:
        rendition.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_SPEECH_CODEC_LOSS: dict[tuple[str, str, int], float] = {}
"""Per process: the loudness the last speech encode lost, by (format, bitrate, rate)."""
_SPEECH_WAV_RATES = (22050, 24000, 16000, 44100, 48000)


def _codec_key(options: ProcessingOptions) -> tuple[str, str, int]:
    return (options.rendition_format, options.bitrate, options.sample_rate)


def _pcm16_mono_wav(src: Path) -> ProbeInfo | None:
    """A `ProbeInfo` for a plain 16-bit mono PCM WAV (what TTS engines write), else None."""
    try:
        with wave.open(str(src), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2 or wav.getcomptype() != "NONE":
                return None
            rate, frames = wav.getframerate(), wav.getnframes()
    except (wave.Error, EOFError, OSError):
        return None
    if rate not in _SPEECH_WAV_RATES or frames == 0:
        return None
    seconds = frames / rate
    return ProbeInfo(
        format_name="wav",
        format_long_name="WAV / WAVE (Waveform Audio)",
        codec="pcm_s16le",
        codec_long_name="PCM signed 16-bit little-endian",
        stream_index=0,
        duration_s=seconds,
        stream_duration_s=seconds,
        channels=1,
        sample_rate=rate,
        bit_rate=rate * 16,
        size_bytes=src.stat().st_size,
    )


def _decode_pcm16_wav(src: Path, info: ProbeInfo, options: ProcessingOptions, raw: Path) -> int:
    """Read the WAV with numpy and resample it in process (no ffprobe, no ffmpeg decode)."""
    from scipy.signal import resample_poly  # lazily: the API process never runs the DSP

    with wave.open(str(src), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    x = pcm.astype(np.float64) / 32768.0
    if info.sample_rate != options.sample_rate:
        step = math.gcd(info.sample_rate, options.sample_rate)
        x = resample_poly(x, options.sample_rate // step, info.sample_rate // step)
    raw.write_bytes(x.astype("<f4").tobytes())
    return int(x.size)


def process_speech(
    src_path: str | Path,
    *,
    options: ProcessingOptions,
    work_dir: str | Path,
) -> ProcessResult:
    """`process_file` for synthesised speech: the fast path of a spoken emergency.

    A TTS engine writes plain 16-bit mono PCM WAV, so there is nothing to probe or to
    decode: the samples are read with numpy and resampled in process (scipy's polyphase
    ``resample_poly``), saving the ffprobe and ffmpeg-decode processes.  The analysis,
    gain, limiter, encode and the measurement of the encoded rendition are
    `process_file`'s own, so the result meets the same loudness target and ceiling.
    The encoder's loudness loss seen on the previous speech of this process (0.3-0.6 LU
    for espeak-ng at 64 kbit/s MP3) is made up before the first encode, so the usual
    case is one encode instead of two.  Anything else (another WAV format, a big file)
    goes through `process_file`.
    """
    _validate(options)
    src = Path(src_path)
    info = _pcm16_mono_wav(src)
    if info is None or info.duration_s is None or info.duration_s > options.max_duration_s:
        return process_file(src, options=options, work_dir=work_dir)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    return _process(
        src,
        info,
        options,
        work,
        decode=_decode_pcm16_wav,
        codec_loss_lu=_SPEECH_CODEC_LOSS.get(_codec_key(options), 0.0),
        learned=_SPEECH_CODEC_LOSS,
    )


__all__ = [
    "RENDITIONS",
    "ProcessResult",
    "ProcessingOptions",
    "RenditionSpec",
    "process_file",
    "process_speech",
]
