"""Media library use cases.

Ingest (upload, text-to-speech, composition) is a long use case with its own commits:
the asset row appears as ``processing`` at once (so the library shows the work), the
audio work runs in the process pool, and then

- bad input (not audio, silent, too long, empty text...) removes the row and every file
  it brought, and the `InvalidInput` propagates (a 4xx, nothing left behind);
- a server-side failure (ffmpeg crashed, timed out) leaves the row ``failed`` with the
  reason, never ``processing``;
- a full disk is neither: the row and its files go and `StorageFull` (503, retry
  later) propagates, so a client never gets "201 created" for nothing playable;
- success stores the rendition under its SHA-256 and marks the row ``ready``.

Rows left ``processing`` by a crash are picked up by `recover_interrupted` at start-up.
Every asset starts as a ``draft``; an approver other than its author approves it; only
ready, approved assets are playable.
"""

from __future__ import annotations

import datetime as dt
import errno
import hmac
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.exceptions import AudioToolError, MediaNotFound, NoScratchSpace, StorageFull
from audio_library.models import Approval, AssetSource, AssetStatus, MediaAsset
from audio_library.peaks import compute_peaks
from audio_library.pipeline import ProcessResult
from audio_library.probe import probe
from audio_library.processing import MediaProcessor
from audio_library.settings import AudioSettings
from audio_library.signing import sign_media_url
from audio_library.storage import MediaStore, Upload
from kernel.db import paginate, utcnow
from kernel.errors import ConflictError, InvalidInput, NotFoundError, PermissionDeniedError
from kernel.text import fold, like_pattern

log = logging.getLogger(__name__)

DEFAULT_PEAK_BUCKETS = 800


class AssetNotFound(NotFoundError):
    def __init__(self, asset_id: int) -> None:
        super().__init__(
            f"media asset {asset_id} not found",
            message_vi=f"Không tìm thấy tệp âm thanh {asset_id}",
        )


@dataclass(frozen=True)
class Author:
    """Who creates or approves an asset, and the area it belongs to."""

    name: str
    user_id: int | None = None
    area_id: int | None = None


class MediaLibrary:
    """The library's runtime: storage, the process pool and URL signing."""

    def __init__(
        self,
        settings: AudioSettings,
        *,
        root: Path,
        url_secret: bytes,
        public_base_url: str,
        workers: int = 2,
    ) -> None:
        self.settings = settings
        self.store = MediaStore(root)
        self.processor = MediaProcessor(settings, workers=workers)
        self.url_secret = url_secret
        self.public_base_url = public_base_url.rstrip("/")

    @staticmethod
    def derive_secret(secret_key: str) -> bytes:
        """A key for media URLs only, derived from the service secret."""
        return hmac.digest(secret_key.encode(), b"broadcaster/media-url/v1", "sha256")

    def url(self, sha256: str, ext: str, expires_at: dt.datetime) -> str:
        return sign_media_url(self.public_base_url, sha256, ext, expires_at, self.url_secret)

    def asset_url(self, asset: MediaAsset, expires_at: dt.datetime) -> str:
        if asset.sha256 is None or asset.ext is None:
            raise InvalidInput(f"media asset {asset.id} has no rendition yet", field="asset_id")
        return self.url(asset.sha256, asset.ext, expires_at)

    def rendition_path(self, asset: MediaAsset) -> Path:
        if asset.sha256 is None or asset.ext is None:
            raise MediaNotFound(f"media asset {asset.id} has no rendition")
        return self.store.path_for("rendition", asset.sha256, asset.ext)

    def shutdown(self) -> None:
        self.processor.shutdown()


# --- queries ---------------------------------------------------------------------------


def get_asset(session: Session, asset_id: int) -> MediaAsset:
    asset = session.get(MediaAsset, asset_id)
    if asset is None:
        raise AssetNotFound(asset_id)
    return asset


def visible(query: Select[MediaAsset], scope: Collection[int] | None) -> Select[MediaAsset]:
    """City-wide assets and those owned inside the scope."""
    if scope is None:
        return query
    return query.where(or_(MediaAsset.owner_area_id.is_(None), MediaAsset.owner_area_id.in_(scope)))


def list_assets(
    session: Session,
    *,
    scope: Collection[int] | None,
    q: str | None = None,
    category: str | None = None,
    status: AssetStatus | None = None,
    approval: Approval | None = None,
    source: AssetSource | None = None,
    tag: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[MediaAsset], int]:
    query = visible(select(MediaAsset), scope)
    if q:
        query = query.where(MediaAsset.title_folded.like(like_pattern(q), escape="\\"))
    if category:
        query = query.where(MediaAsset.category == category)
    if status:
        query = query.where(MediaAsset.status == status)
    if approval:
        query = query.where(MediaAsset.approval == approval)
    if source:
        query = query.where(MediaAsset.source == source)
    items, total = paginate(session, query.order_by(MediaAsset.id.desc()), limit, offset)
    if tag:  # tags are few per asset; filter the page in Python for portability
        items = [a for a in items if tag in (a.tags or [])]
    return items, total


def require_playable(
    session: Session, asset_id: int, *, field: str | tuple[str | int, ...]
) -> MediaAsset:
    """The asset, if it exists, is ready and approved; `InvalidInput` on `field` otherwise."""
    asset = session.get(MediaAsset, asset_id)
    if asset is None:
        raise InvalidInput(f"media asset {asset_id} does not exist", field=field)
    if asset.status is not AssetStatus.READY:
        raise InvalidInput(
            f"media asset {asset_id} is {asset.status.value}, not ready", field=field
        )
    if asset.approval is not Approval.APPROVED:
        raise InvalidInput(
            f"media asset {asset_id} is not approved ({asset.approval.value})",
            field=field,
            message_vi=f"Tệp âm thanh {asset_id} chưa được duyệt",
        )
    return asset


# --- ingest ----------------------------------------------------------------------------


def _new_asset(
    *,
    title: str,
    category: str,
    tags: Iterable[str],
    source: AssetSource,
    author: Author,
    recipe: dict[str, Any] | None = None,
) -> MediaAsset:
    return MediaAsset(
        title=title,
        title_folded=fold(title),
        category=category,
        tags=sorted(set(tags)),
        source=source,
        status=AssetStatus.PROCESSING,
        approval=Approval.DRAFT,
        owner_area_id=author.area_id,
        created_by=author.name,
        created_by_id=author.user_id,
        recipe=recipe,
    )


def _complete(asset: MediaAsset, library: MediaLibrary, result: ProcessResult) -> None:
    stored = library.store.put_file(
        "rendition",
        result.rendition_path,
        ext=result.rendition_ext,
        sha256=result.rendition_sha256,
        move=True,
    )
    asset.sha256 = stored.sha256
    asset.ext = stored.ext
    asset.bytes = stored.size
    asset.mime = result.rendition_mime
    asset.duration_ms = result.duration_ms
    asset.loudness_before = result.loudness_before_lufs
    asset.loudness_after = result.loudness_after_lufs
    asset.true_peak_before = result.true_peak_before_dbtp
    asset.true_peak_after = result.true_peak_after_dbtp
    asset.processing = result.as_metadata()
    asset.status = AssetStatus.READY
    asset.failure_reason = None
    asset.processed_at = utcnow()


def _run(
    session: Session,
    library: MediaLibrary,
    asset: MediaAsset,
    job: Callable[[Path], ProcessResult],
    *,
    on_bad_input: Callable[[], None] = lambda: None,
) -> MediaAsset:
    """Commit the processing row, run `job`, then settle the row (see module doc)."""
    session.add(asset)
    session.commit()
    try:
        with library.store.work_dir() as work:
            result = job(work)
            _complete(asset, library, result)
    except InvalidInput:
        session.delete(asset)
        session.commit()
        on_bad_input()
        raise
    except (AudioToolError, OSError) as exc:
        if not _disk_full(exc):
            return _failed(session, asset, exc)
        # not the upload's fault and nothing to keep: no asset, a 503 to retry later
        session.delete(asset)
        session.commit()
        on_bad_input()
        raise StorageFull(f"no disk space to process the audio: {exc}") from exc
    except RuntimeError as exc:
        return _failed(session, asset, exc)
    session.commit()
    return asset


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, NoScratchSpace):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left" in str(exc)


def _failed(session: Session, asset: MediaAsset, exc: BaseException) -> MediaAsset:
    log.warning("processing asset %s failed: %s", asset.id, exc)
    asset.status = AssetStatus.FAILED
    asset.failure_reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    session.commit()
    return asset


def ingest_upload(
    session: Session,
    library: MediaLibrary,
    *,
    upload: Upload,
    filename: str | None,
    title: str,
    category: str,
    tags: Iterable[str],
    author: Author,
) -> tuple[MediaAsset, bool]:
    """A new asset from an upload, or the existing one for identical content.

    Returns ``(asset, created)``.  The upload's temporary file is consumed either way.
    """
    existing = session.scalar(
        select(MediaAsset).where(
            MediaAsset.original_sha256 == upload.sha256,
            MediaAsset.source == AssetSource.UPLOAD,
            MediaAsset.status != AssetStatus.FAILED,
            MediaAsset.owner_area_id.is_(None)
            if author.area_id is None
            else MediaAsset.owner_area_id == author.area_id,
        )
    )
    if existing is not None:
        upload.path.unlink(missing_ok=True)
        return existing, False
    try:
        info = probe(upload.path)  # fast, and refuses non-audio before any row exists
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    original = library.store.put_file(
        "original", upload.path, ext=info.ext, sha256=upload.sha256, move=True
    )
    asset = _new_asset(
        title=title, category=category, tags=tags, source=AssetSource.UPLOAD, author=author
    )
    asset.original_sha256 = original.sha256
    asset.original_ext = original.ext
    asset.original_bytes = original.size
    asset.original_filename = (filename or "")[:300] or None
    asset.recipe = {"format": info.as_dict()}

    def drop_original() -> None:
        _delete_unreferenced(
            session, library, original_sha256=original.sha256, original_ext=original.ext
        )

    return (
        _run(
            session,
            library,
            asset,
            lambda work: library.processor.process(original.path, work),
            on_bad_input=drop_original,
        ),
        True,
    )


def create_tts_asset(
    session: Session,
    library: MediaLibrary,
    *,
    text: str,
    voice: str,
    rate: int,
    title: str | None,
    category: str,
    tags: Iterable[str],
    author: Author,
) -> MediaAsset:
    """Speak `text` (Vietnamese) into a new draft asset."""
    stripped = " ".join(text.split())
    asset = _new_asset(
        title=title or (stripped[:80] + ("…" if len(stripped) > 80 else "")) or "Bản tin",
        category=category,
        tags=tags,
        source=AssetSource.TTS,
        author=author,
        recipe={"text": text, "voice": voice, "rate": rate, "engine": library.settings.tts_engine},
    )
    return _run(
        session, library, asset, lambda work: library.processor.synthesize(text, voice, rate, work)
    )


def create_composed_asset(
    session: Session,
    library: MediaLibrary,
    *,
    part_ids: list[int],
    gap_ms: int,
    crossfade_ms: int,
    title: str,
    category: str,
    tags: Iterable[str],
    author: Author,
    scope: Collection[int] | None,
) -> MediaAsset:
    """Join ready assets (jingle, bulletin, outro...) into one new draft asset."""
    paths = []
    for index, part_id in enumerate(part_ids):
        part = session.get(MediaAsset, part_id)
        if part is None or (
            scope is not None and part.owner_area_id is not None and part.owner_area_id not in scope
        ):
            raise InvalidInput(f"media asset {part_id} does not exist", field=("parts", index))
        if part.status is not AssetStatus.READY:
            raise InvalidInput(f"media asset {part_id} is not ready", field=("parts", index))
        paths.append(library.rendition_path(part))
    asset = _new_asset(
        title=title,
        category=category,
        tags=tags,
        source=AssetSource.COMPOSED,
        author=author,
        recipe={"parts": part_ids, "gap_ms": gap_ms, "crossfade_ms": crossfade_ms},
    )
    return _run(
        session,
        library,
        asset,
        lambda work: library.processor.compose(paths, gap_ms, crossfade_ms, work),
    )


def recover_interrupted(factory: sessionmaker[Session], library: MediaLibrary) -> int:
    """Re-run (or fail) assets a crash left in ``processing``; return how many."""
    with factory() as session:
        stuck = list(
            session.scalars(select(MediaAsset).where(MediaAsset.status == AssetStatus.PROCESSING))
        )
        for asset in stuck:
            job = _recovery_job(session, library, asset)
            if job is None:
                asset.status = AssetStatus.FAILED
                asset.failure_reason = "processing was interrupted and cannot be resumed"
                session.commit()
                continue
            try:
                _run(session, library, asset, job)
            except InvalidInput as exc:
                log.warning("asset %s dropped on recovery: %s", asset.id, exc)
    return len(stuck)


def _recovery_job(
    session: Session, library: MediaLibrary, asset: MediaAsset
) -> Callable[[Path], ProcessResult] | None:
    recipe = asset.recipe or {}
    if asset.source is AssetSource.UPLOAD and asset.original_sha256 and asset.original_ext:
        original = library.store.path_for("original", asset.original_sha256, asset.original_ext)
        if original.is_file():
            return lambda work: library.processor.process(original, work)
    if asset.source is AssetSource.TTS and "text" in recipe:
        text, voice, rate = recipe["text"], recipe.get("voice", "south"), recipe.get("rate", 0)
        return lambda work: library.processor.synthesize(text, voice, rate, work)
    return None


# --- approval, metadata, deletion -------------------------------------------------------


def set_approval(
    session: Session, asset: MediaAsset, *, approver: Author, approve: bool, note: str | None
) -> MediaAsset:
    if asset.status is not AssetStatus.READY:
        raise ConflictError(
            f"media asset {asset.id} is {asset.status.value}; only ready assets can be reviewed"
        )
    if asset.created_by_id is not None and asset.created_by_id == approver.user_id:
        raise PermissionDeniedError(
            "the author of an asset cannot approve or reject it",
            message_vi="Người tạo không được tự duyệt bản tin của mình",
        )
    asset.approval = Approval.APPROVED if approve else Approval.REJECTED
    asset.approved_by = approver.name
    asset.approved_at = utcnow()
    asset.approval_note = note
    session.flush()
    return asset


def approve_for_broadcast(session: Session, asset: MediaAsset, *, sender: str, reason: str) -> None:
    """Emergency path: the sender's broadcast permission stands in for approval."""
    asset.approval = Approval.APPROVED
    asset.approved_by = sender
    asset.approved_at = utcnow()
    asset.approval_note = reason
    session.flush()


def update_metadata(
    session: Session,
    asset: MediaAsset,
    *,
    title: str | None,
    category: str | None,
    tags: list[str] | None,
) -> MediaAsset:
    if title is not None:
        asset.title = title
        asset.title_folded = fold(title)
    if category is not None:
        asset.category = category
    if tags is not None:
        asset.tags = sorted(set(tags))
    session.flush()
    return asset


def delete_asset(
    session: Session, library: MediaLibrary, asset: MediaAsset, *, used_by: list[str]
) -> None:
    """Delete an asset no future schedule uses (`used_by` names the users: 409 if any)."""
    if used_by:
        raise ConflictError(
            f"media asset {asset.id} is still used by: {', '.join(used_by[:5])}"
            + (" …" if len(used_by) > 5 else ""),
            message_vi="Tệp âm thanh đang được dùng trong lịch phát sắp tới",
        )
    sha, ext, osha, oext = asset.sha256, asset.ext, asset.original_sha256, asset.original_ext
    session.delete(asset)
    session.flush()
    _delete_unreferenced(
        session, library, sha256=sha, ext=ext, original_sha256=osha, original_ext=oext
    )


def _delete_unreferenced(
    session: Session,
    library: MediaLibrary,
    *,
    sha256: str | None = None,
    ext: str | None = None,
    original_sha256: str | None = None,
    original_ext: str | None = None,
) -> None:
    if sha256 and ext:
        users = session.scalar(select(func.count()).where(MediaAsset.sha256 == sha256))
        if not users:
            library.store.delete("rendition", sha256, ext)
    if original_sha256 and original_ext:
        users = session.scalar(
            select(func.count()).where(MediaAsset.original_sha256 == original_sha256)
        )
        if not users:
            library.store.delete("original", original_sha256, original_ext)


def peaks(session: Session, library: MediaLibrary, asset: MediaAsset, buckets: int) -> list[float]:
    """Waveform peaks of the rendition (cached for the default bucket count)."""
    if asset.status is not AssetStatus.READY:
        raise ConflictError(f"media asset {asset.id} is {asset.status.value}")
    if buckets == DEFAULT_PEAK_BUCKETS and asset.peaks:
        return list(asset.peaks)
    values = compute_peaks(library.rendition_path(asset), buckets=buckets).abs_peaks
    if buckets == DEFAULT_PEAK_BUCKETS:
        asset.peaks = values
        session.commit()
    return values
