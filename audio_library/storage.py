"""Content-addressed media storage on a local directory.

Layout under the media root::

    originals/ab/<sha256-of-original>.<ext>     the upload, byte for byte
    renditions/cd/<sha256-of-rendition>.mp3     what stations download
    tmp/                                        uploads in progress, work dirs

The name is the SHA-256 of the content, so an object is immutable, identical content
is stored once (a second upload of the same bytes is detected by `Upload.sha256` before
any processing), and stations can verify what they downloaded.  The two-hex-digit fan
out keeps directories small.

Writes are atomic: the content goes to a temporary file in the destination directory,
is fsync'ed, then `os.replace`d into place and the directory entry fsync'ed, so a
crash leaves either the whole object or nothing.  Keys are validated before they touch
a path (`InvalidMediaKey`), which also rules out path traversal.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from audio_library.exceptions import InvalidMediaKey, MediaNotFound, StorageFull, UploadTooLarge

Kind = Literal["original", "rendition"]

_DIRS: dict[Kind, str] = {"original": "originals", "rendition": "renditions"}
_SHA = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")
CHUNK = 1 << 20


class Readable(Protocol):
    """Anything with a binary ``read(n)`` (``UploadFile.file``, ``BytesIO``, a socket file)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StoredObject:
    """Where an object lives and how big it is."""

    kind: Kind
    sha256: str
    ext: str
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Upload:
    """A received upload in the store's ``tmp/`` directory, hashed on the way in."""

    path: Path
    size: int
    sha256: str


def validate_key(sha256: str, ext: str) -> None:
    """Raise `InvalidMediaKey` unless `sha256` is 64 lowercase hex and `ext` is short."""
    if not _SHA.match(sha256):
        raise InvalidMediaKey(
            "A media hash must be 64 lowercase hexadecimal characters",
            field="sha256",
            message_vi="Mã băm của tệp không hợp lệ",
        )
    if not _EXT.match(ext):
        raise InvalidMediaKey(
            "A media extension must be 1-8 lowercase letters or digits",
            field="ext",
            message_vi="Phần mở rộng của tệp không hợp lệ",
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadWriter:
    """Incremental upload sink: temp file + running SHA-256 + size limit.

    Usable from async code (``await request.stream()`` chunks) as well as through
    `MediaStore.receive_upload` for file-like objects.  On `UploadTooLarge` (or any
    error, via `abort`) the temporary file is removed.
    """

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raises `UploadTooLarge` (and cleans up) past the limit."""
        if self._fh is None:
            raise ValueError("upload already finished")
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            mb = self.max_bytes / (1024 * 1024)
            raise UploadTooLarge(
                f"The upload is larger than the {mb:.0f} MB allowed",
                message_vi=f"Tệp tải lên vượt quá giới hạn {mb:.0f} MB",
            )
        self._hash.update(chunk)
        self._fh.write(chunk)

    def finish(self) -> Upload:
        """Flush, fsync and close; the file stays until moved or deleted."""
        if self._fh is None:
            raise ValueError("upload already finished")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        return Upload(path=self.path, size=self.size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        """Close and delete the partial file (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


class MediaStore:
    """Content-addressed files under `root` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"

    def path_for(self, kind: Kind, sha256: str, ext: str) -> Path:
        """Where the object with this hash and extension lives (it may not exist)."""
        validate_key(sha256, ext)
        return self.root / _DIRS[kind] / sha256[:2] / f"{sha256}.{ext}"

    def exists(self, kind: Kind, sha256: str, ext: str) -> bool:
        """Whether the object is stored."""
        return self.path_for(kind, sha256, ext).is_file()

    def stat(self, kind: Kind, sha256: str, ext: str) -> StoredObject:
        """Size and path of a stored object; `MediaNotFound` if absent."""
        path = self.path_for(kind, sha256, ext)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise self._not_found(kind, sha256) from exc
        return StoredObject(kind=kind, sha256=sha256, ext=ext, path=path, size=size)

    def open(self, kind: Kind, sha256: str, ext: str) -> BinaryIO:
        """Open a stored object for binary reading; `MediaNotFound` if absent."""
        path = self.path_for(kind, sha256, ext)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise self._not_found(kind, sha256) from exc

    def delete(self, kind: Kind, sha256: str, ext: str) -> bool:
        """Remove an object; returns whether it existed."""
        path = self.path_for(kind, sha256, ext)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def put_file(
        self,
        kind: Kind,
        src: str | Path,
        *,
        ext: str,
        sha256: str | None = None,
        move: bool = False,
    ) -> StoredObject:
        """Store the file at `src` under its content hash (computed if not given).

        With ``move=True`` the source is consumed (renamed when on the same filesystem).
        Storing content that is already there is a no-op returning the existing object.
        """
        source = Path(src)
        digest = sha256 or _sha256_of(source)
        dest = self.path_for(kind, digest, ext)
        if dest.is_file():
            if move:
                source.unlink(missing_ok=True)
            return self.stat(kind, digest, ext)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{digest}.{secrets.token_hex(6)}.tmp"
        try:
            if move and _same_device(source, dest.parent):
                os.replace(source, tmp)
            else:
                with source.open("rb") as fin, tmp.open("wb") as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            tmp.unlink(missing_ok=True)
        if move:
            source.unlink(missing_ok=True)
        return self.stat(kind, digest, ext)

    def put_bytes(self, kind: Kind, data: bytes, *, ext: str) -> StoredObject:
        """Store a small in-memory object."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        writer = UploadWriter(self.tmp_dir, max_bytes=max(len(data), 1))
        try:
            writer.write(data)
            upload = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return self.put_file(kind, upload.path, ext=ext, sha256=upload.sha256, move=True)

    def receive_upload(
        self, source: Readable, *, max_bytes: int, chunk_size: int = CHUNK
    ) -> Upload:
        """Copy a file-like object into ``tmp/`` while hashing it, up to `max_bytes`.

        Raises `UploadTooLarge` past the limit, leaving nothing behind.  The caller then
        `put_file(..., move=True)`s the upload or deletes ``upload.path``.
        """
        writer = UploadWriter(self.tmp_dir, max_bytes=max_bytes)
        try:
            while chunk := source.read(chunk_size):
                writer.write(chunk)
            return writer.finish()
        except OSError as exc:
            writer.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"no disk space for the upload: {exc}") from exc
            raise
        except BaseException:
            writer.abort()
            raise

    @contextmanager
    def work_dir(self) -> Iterator[Path]:
        """A private scratch directory under ``tmp/``, removed on exit."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="work-", dir=self.tmp_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _not_found(kind: Kind, sha256: str) -> MediaNotFound:
        return MediaNotFound(
            f"No stored {kind} with hash {sha256}",
            message_vi="Không tìm thấy tệp âm thanh đã lưu",
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _same_device(path: Path, directory: Path) -> bool:
    try:
        return path.stat().st_dev == directory.stat().st_dev
    except OSError:
        return False
