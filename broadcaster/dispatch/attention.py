"""The attention signal that may precede an emergency (issue 13, item 2): a standard
three-tone chime, synthesised with ffmpeg's ``sine`` source (nothing downloaded) and kept
as a normal media asset of the library (category ``jingle``, tag ``tin-hieu-chu-y``),
approved for broadcast, so stations fetch and cache it like any file.

With ``BROADCASTER_EMERGENCY_ATTENTION=true`` the service makes it at start
(`ensure_signal`; identical bytes each time, so the library keeps one asset) and every
emergency's play carries it as ``attention`` (protocol proposal 0003): the station plays
it once, at the emergency's volume, then the content.  A station that does not know the
field plays the content alone.
"""

from __future__ import annotations

import io

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library import service as media
from audio_library.exceptions import AudioToolError
from audio_library.ffmpeg_tools import FFMPEG, run_tool, stderr_text
from audio_library.models import AssetStatus, MediaAsset

__all__ = ["SIGNAL_TAG", "TONES", "ensure_signal", "signal_asset", "synthesise"]

SIGNAL_TAG = "tin-hieu-chu-y"
SIGNAL_TITLE = "Tín hiệu chú ý (trước tin khẩn cấp)"
#: (frequency Hz, seconds) of each tone, played twice: a rising-falling chime
TONES = ((660, 0.35), (880, 0.35), (1100, 0.5))
GAP_S = 0.12
ROUNDS = 2
RATE = 44_100


def synthesise() -> bytes:
    """The chime as 16-bit mono WAV: ffmpeg sine tones with short fades, gaps between
    them, ``ROUNDS`` times (bit-exact: the same bytes on every run)."""
    inputs: list[str] = []
    labels: list[str] = []
    filters: list[str] = []
    index = 0
    for _ in range(ROUNDS):
        for frequency, seconds in (*TONES, (0, GAP_S * 3)):
            source = (
                f"sine=frequency={frequency}:duration={seconds}:sample_rate={RATE}"
                if frequency
                else f"anullsrc=r={RATE}:cl=mono,atrim=duration={seconds}"
            )
            inputs += ["-f", "lavfi", "-i", source]
            fade = f"afade=t=in:d=0.02,afade=t=out:st={seconds - 0.05:.3f}:d=0.05"
            pad = f"apad=pad_dur={GAP_S}" if frequency else "anull"
            filters.append(f"[{index}:a]{fade if frequency else 'anull'},{pad}[s{index}]")
            labels.append(f"[s{index}]")
            index += 1
    graph = ";".join(filters) + f";{''.join(labels)}concat=n={index}:v=0:a=1,volume=0.8[out]"
    args = [
        FFMPEG,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *inputs,
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-ac",
        "1",
        "-c:a",
        "pcm_s16le",
        "-fflags",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-f",
        "wav",
        "pipe:1",
    ]
    done = run_tool(args, timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise AudioToolError(
            f"ffmpeg could not make the attention signal: {stderr_text(done.stderr)}"
        )
    return done.stdout


def signal_asset(session: Session) -> MediaAsset | None:
    """The ready attention signal, if the service made one."""
    for asset in session.scalars(
        select(MediaAsset)
        .where(MediaAsset.status == AssetStatus.READY, MediaAsset.category == "jingle")
        .order_by(MediaAsset.id)
    ):
        if SIGNAL_TAG in (asset.tags or []) and asset.playable:
            return asset
    return None


def ensure_signal(factory: sessionmaker[Session], library: media.MediaLibrary) -> int:
    """Make the attention signal (or find it: same bytes, same asset) and approve it for
    broadcast; its asset id.  Commits in its own transactions (the media ingest's)."""
    upload = library.store.receive_upload(
        io.BytesIO(synthesise()), max_bytes=library.settings.max_upload_bytes
    )
    asset_id, _created = media.ingest_upload(
        factory,
        library,
        upload=upload,
        filename="tin-hieu-chu-y.wav",
        title=SIGNAL_TITLE,
        category="jingle",
        tags=[SIGNAL_TAG],
        author=media.Author(name="system"),
    )
    with factory.begin() as session:
        asset = media.get_asset(session, asset_id)
        if asset.ready and not asset.playable:
            media.approve_for_broadcast(
                session,
                asset,
                sender="system",
                reason="tín hiệu chú ý do hệ thống tạo (âm sine), dùng trước tin khẩn cấp",
            )
    return asset_id
