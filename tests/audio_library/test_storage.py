"""Content-addressed storage: layout, atomic writes, dedupe, upload intake limits."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from audio_library.exceptions import InvalidMediaKey, MediaNotFound, UploadTooLarge
from audio_library.storage import MediaStore, UploadWriter

DATA = b"ID3 pretend this is an mp3" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


def _leftovers(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and (p.name.startswith(".") or p.suffix in {".tmp", ".part"})
    ]


def test_put_file_lays_out_by_hash(store: MediaStore, tmp_path: Path) -> None:
    src = tmp_path / "x.mp3"
    src.write_bytes(DATA)
    stored = store.put_file("rendition", src, ext="mp3")
    assert stored.sha256 == SHA
    assert stored.path == store.root / "renditions" / SHA[:2] / f"{SHA}.mp3"
    assert stored.size == len(DATA)
    assert src.exists()  # copied, not moved
    assert store.stat("rendition", SHA, "mp3") == stored
    with store.open("rendition", SHA, "mp3") as fh:
        assert fh.read() == DATA
    assert _leftovers(store.root) == []


def test_move_consumes_the_source_and_dedupes(store: MediaStore, tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.write_bytes(DATA)
    store.put_file("original", first, ext="wav", sha256=SHA, move=True)
    assert not first.exists()
    again = tmp_path / "b"
    again.write_bytes(DATA)
    stored = store.put_file("original", again, ext="wav", move=True)
    assert not again.exists()
    assert stored.path == store.path_for("original", SHA, "wav")
    assert len(list((store.root / "originals").rglob("*.wav"))) == 1


def test_put_bytes_and_delete(store: MediaStore) -> None:
    stored = store.put_bytes("rendition", DATA, ext="mp3")
    assert store.exists("rendition", SHA, "mp3")
    assert store.delete("rendition", SHA, "mp3") is True
    assert store.delete("rendition", SHA, "mp3") is False
    assert not stored.path.exists()
    with pytest.raises(MediaNotFound):
        store.stat("rendition", SHA, "mp3")
    with pytest.raises(MediaNotFound):
        store.open("rendition", SHA, "mp3")


@pytest.mark.parametrize(
    ("sha", "ext"),
    [
        ("../../etc/passwd", "mp3"),
        (SHA.upper(), "mp3"),
        (SHA[:-1], "mp3"),
        (SHA, "mp3/.."),
        (SHA, ""),
    ],
)
def test_bad_keys_never_touch_the_disk(store: MediaStore, sha: str, ext: str) -> None:
    with pytest.raises(InvalidMediaKey):
        store.path_for("rendition", sha, ext)


def test_receive_upload_hashes_while_copying(store: MediaStore) -> None:
    upload = store.receive_upload(io.BytesIO(DATA), max_bytes=len(DATA), chunk_size=4096)
    assert upload.sha256 == SHA
    assert upload.size == len(DATA)
    assert upload.path.parent == store.tmp_dir
    assert upload.path.read_bytes() == DATA
    stored = store.put_file("original", upload.path, ext="mp3", sha256=upload.sha256, move=True)
    assert stored.sha256 == SHA
    assert list(store.tmp_dir.iterdir()) == []


def test_upload_over_the_limit_leaves_nothing(store: MediaStore) -> None:
    with pytest.raises(UploadTooLarge) as info:
        store.receive_upload(io.BytesIO(DATA), max_bytes=len(DATA) - 1, chunk_size=1000)
    assert info.value.message_vi
    assert list(store.tmp_dir.iterdir()) == []


def test_upload_failing_midway_leaves_nothing(store: MediaStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("client went away")
            return b"x" * 100

    with pytest.raises(ConnectionResetError):
        store.receive_upload(Broken(), max_bytes=10_000)
    assert list(store.tmp_dir.iterdir()) == []


def test_upload_writer_for_async_bodies(tmp_path: Path) -> None:
    writer = UploadWriter(tmp_path / "t", max_bytes=10)
    writer.write(b"12345")
    writer.write(b"67890")
    upload = writer.finish()
    assert upload.size == 10
    assert upload.sha256 == hashlib.sha256(b"1234567890").hexdigest()
    with pytest.raises(ValueError, match="finished"):
        writer.write(b"x")
    writer2 = UploadWriter(tmp_path / "t", max_bytes=3)
    with pytest.raises(UploadTooLarge):
        writer2.write(b"abcd")
    assert not writer2.path.exists()


def test_work_dir_is_removed(store: MediaStore) -> None:
    with store.work_dir() as work:
        (work / "scratch.wav").write_bytes(b"x")
        assert work.parent == store.tmp_dir
    assert not work.exists()
