"""Uploads that lie about themselves, and a full disk (issue 15, defect 8)."""

from __future__ import annotations

import contextlib
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.settings import AudioSettings
from broadcaster.app import create_app
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from tests.api import make_user, ok

RATE = 16_000


def _upload(client: TestClient, headers: dict[str, str], data: bytes, name: str):  # type: ignore[no-untyped-def]
    fields = {"title": "Bản tin", "category": "tin-tuc"}
    return client.post("/api/v1/media", files={"file": (name, data)}, data=fields, headers=headers)


def understated_wav(audio, path: Path, *, real_s: float, claimed_s: float) -> bytes:  # type: ignore[no-untyped-def]
    """A 16-bit mono WAV holding ``real_s`` of audio whose header says ``claimed_s``."""
    wav = audio.write_wav(
        path, audio.scale_to_lufs(audio.speech_like(real_s, rate=RATE), -24.0, rate=RATE), RATE
    )
    data = bytearray(wav.read_bytes())
    index = data.index(b"data")
    claimed = int(claimed_s * RATE) * 2
    struct.pack_into("<I", data, index + 4, claimed)
    struct.pack_into("<I", data, 4, index + 8 + claimed - 8)
    return bytes(data)


def test_a_wav_whose_header_understates_its_length_is_stored_whole(
    client: TestClient,
    admin: dict[str, str],
    audio,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A WAV whose header claims 1 s but holds 30 s was stored as 1 s."""
    body = understated_wav(audio, tmp_path / "a.wav", real_s=30.0, claimed_s=1.0)
    asset = ok(_upload(client, admin, body, "a.wav"), 201)
    assert asset["status"] == "ready"
    assert 29_000 <= asset["duration_ms"] <= 31_000, asset["duration_ms"]


def _patch_mp4_durations(data: bytearray, seconds: int) -> None:
    """Set the movie, track and media header durations of an MP4 to ``seconds``."""
    for tag, offset_to_duration, scale_from in ((b"mvhd", 20, 16), (b"mdhd", 20, 16)):
        start = 0
        while (index := data.find(tag, start)) != -1:
            assert data[index + 4] == 0, "version 0 boxes expected"
            timescale = struct.unpack_from(">I", data, index + scale_from)[0]
            struct.pack_into(">I", data, index + offset_to_duration, timescale * seconds)
            start = index + 4
    index = data.find(b"tkhd")
    struct.pack_into(">I", data, index + 24, 1000 * seconds)


def test_a_compressed_file_that_understates_its_length_is_refused_early(
    client: TestClient,
    admin: dict[str, str],
    audio,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A 10-minute AAC whose headers say 1 s: decoding it whole took scratch disk by
    its real length (1.8 GiB for a 14 MiB file in the report).  Decoding now stops at
    a bound derived from what the header declares, and the file is refused (422)."""
    src = tmp_path / "long.wav"
    audio.write_wav(src, 0.1 * audio.speech_like(600.0, rate=RATE), RATE)
    m4a = tmp_path / "long.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "24k", str(m4a)],
        check=True,
    )
    data = bytearray(m4a.read_bytes())
    _patch_mp4_durations(data, 1)
    response = _upload(client, admin, bytes(data), "long.m4a")
    assert response.status_code == 422, response.text
    assert "message_vi" in response.json()
    assert ok(client.get("/api/v1/media", headers=admin))["total"] == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def full_disk_client(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    with small_disk(tmp_path / "disk", "6m") as disk:
        app = create_app(
            settings.model_copy(update={"media_dir": disk / "media"}),
            audio_settings=AudioSettings(),
            role=ProcessRole.API,
        )
        with TestClient(app) as client:
            yield client, make_user(session_factory, "disk-admin", Role.ADMIN), disk


def test_a_full_disk_answers_503_and_keeps_nothing(
    full_disk_client: tuple[TestClient, dict[str, str], Path],
    audio,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """An upload or a TTS on a full disk answered 201 with ``status: failed``: now 503
    with Retry-After and a Vietnamese message, and no asset row or file is left."""
    client, admin, disk = full_disk_client
    body = audio.write_wav(
        tmp_path / "s.wav", 0.1 * audio.speech_like(20.0, rate=RATE), RATE
    ).read_bytes()
    response = _upload(client, admin, body, "s.wav")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    assert response.json()["message_vi"]
    # fill what is left, then ask for speech
    (disk / "filler").write_bytes(b"\0" * 0)
    with (disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
    tts = client.post("/api/v1/media/tts", json={"text": "Thông báo lịch cắt điện"}, headers=admin)
    assert tts.status_code == 503, tts.text
    assert ok(client.get("/api/v1/media", headers=admin))["total"] == 0
    (disk / "filler").unlink()
    leftovers = [p for p in (disk / "media").rglob("*") if p.is_file()]
    assert leftovers == []
