"""Media library use cases.

Services flush; the boundary (a route, a CLI command, a job) commits.  Audio work
(ffmpeg, espeak-ng) is long, so it never runs inside a caller's transaction:

- **speech inside a larger save** (a programme's text items, an emergency broadcast, the
  seed's fallback): `speak` renders into the content-addressed store with no database
  at all, then `add_speech` records the ready draft asset in the caller's transaction,
  committed with the rest of the save (`discard` removes renditions a failed save left
  unused);
- **stand-alone ingest** (upload, text-to-speech, composition): the job opens its own
  short sessions from the session factory.  The asset row appears as ``processing`` at
  once (so the library shows the work), the audio work runs with no transaction open,
  and then
  - bad input (not audio, silent, too long, empty text...) removes the row and every
    file it brought, and the `InvalidInput` propagates (a 4xx, nothing left behind);
  - a server-side failure (ffmpeg crashed, timed out) leaves the row ``failed`` with
    the reason, never ``processing``;
  - a full disk is neither: the row and its files go and `StorageFull` (503, retry
    later) propagates, so a client never gets "201 created" for nothing playable;
  - success stores the rendition under its SHA-256 and marks the row ``ready``.
  The caller must hold no transaction (`kernel.db.release`); the job returns the
  asset's id.

Rows left ``processing`` by a crash are picked up by `recover_interrupted` at start-up.
Every asset starts waiting for approval (``draft``), or as its author's unsubmitted draft
when asked (``submit=False``: `submit_asset` sends it later); an approver other than its
author approves it (never an unsubmitted draft); only ready, approved assets are
playable (`kernel.approval`).
"""

from __future__ import annotations

import datetime as dt
import errno
import hmac
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, sessionmaker

from audio_library.exceptions import AudioToolError, MediaNotFound, NoScratchSpace, StorageFull
from audio_library.models import AssetSource, AssetStatus
from audio_library.models import MediaAsset as MediaAsset  # what the service hands out
from audio_library.peaks import compute_peaks
from audio_library.pipeline import ProcessResult
from audio_library.probe import probe
from audio_library.processing import MediaProcessor
from audio_library.settings import AudioSettings
from audio_library.signing import sign_media_url
from audio_library.storage import MediaStore, Upload
from audio_library.tts import normalize_vi, validate_text
from kernel.approval import Approval, on_save, require_submittable
from kernel.db import paginate, utcnow
from kernel.errors import ConflictError, InvalidInput, NotFoundError, PermissionDeniedError
from kernel.ownership import in_scope, visible
from kernel.text import contains, fold

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
            raise InvalidInput(
                f"media asset {asset.id} has no rendition yet",
                field="asset_id",
                message_vi=f"Tệp âm thanh {asset.id} chưa xử lý xong",
            )
        return self.url(asset.sha256, asset.ext, expires_at)

    def rendition_path(self, asset: MediaAsset) -> Path:
        if asset.sha256 is None or asset.ext is None:
            raise MediaNotFound(
                f"media asset {asset.id} has no rendition",
                message_vi=f"Tệp âm thanh {asset.id} chưa có bản đã chuẩn hóa",
            )
        return self.store.path_for("rendition", asset.sha256, asset.ext)

    def warm(self) -> list[float]:
        """Start and warm the audio process pool (`MediaProcessor.warm`); blocks, so the
        service calls it from a background thread at start-up."""
        with self.store.work_dir() as work:
            return self.processor.warm(work)

    def shutdown(self) -> None:
        self.processor.shutdown()


# --- queries ---------------------------------------------------------------------------


def get_asset(session: Session, asset_id: int) -> MediaAsset:
    asset = session.get(MediaAsset, asset_id)
    if asset is None:
        raise AssetNotFound(asset_id)
    return asset


def assets_by_id(session: Session, ids: Collection[int]) -> dict[int, MediaAsset]:
    """The assets of `ids` that exist, in one query."""
    if not ids:
        return {}
    query = select(MediaAsset).where(MediaAsset.id.in_(list(ids)))
    return {asset.id: asset for asset in session.scalars(query)}


def spoken_asset(session: Session, *, title: str, created_by: str) -> MediaAsset | None:
    """The first ready spoken bulletin with this title by this author (a seed finding
    its own bulletin again)."""
    return session.scalar(
        select(MediaAsset)
        .where(
            MediaAsset.source == AssetSource.TTS,
            MediaAsset.title == title,
            MediaAsset.created_by == created_by,
            MediaAsset.status == AssetStatus.READY,
        )
        .order_by(MediaAsset.id)
    )


#: what `asset_in_scope` leaves unread for a play
_TO_PLAY = (defer(MediaAsset.peaks), defer(MediaAsset.processing), defer(MediaAsset.recipe))


def asset_in_scope(
    session: Session,
    asset_id: int,
    *,
    scope: Collection[int] | None,
    field: str | Sequence[str | int],
    to_play: bool = False,
) -> MediaAsset:
    """The asset, if it exists and is city-wide or owned in `scope`; `InvalidInput` on
    `field` otherwise (an asset outside the caller's areas does not exist for them).
    ``to_play``: its waveform, processing record and recipe (JSON for the library's
    pages, 800 peaks once the waveform was drawn) are left unread until used: an
    emergency's way out needs none of them."""
    asset = session.get(MediaAsset, asset_id, options=_TO_PLAY if to_play else None)
    if asset is None or not in_scope(asset.owner_area_id, scope):
        raise InvalidInput(
            f"media asset {asset_id} does not exist",
            field=field,
            message_vi=f"Tệp âm thanh {asset_id} không tồn tại",
        )
    return asset


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
    query = visible(select(MediaAsset), MediaAsset.owner_area_id, scope)
    if q:
        query = query.where(contains(MediaAsset.title_folded, q))
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
    session: Session,
    asset_id: int,
    *,
    field: str | Sequence[str | int],
    scope: Collection[int] | None = None,
) -> MediaAsset:
    """The asset, if it exists (in `scope`), is ready and approved; `InvalidInput` on
    `field` otherwise."""
    asset = asset_in_scope(session, asset_id, scope=scope, field=field)
    if asset.status is not AssetStatus.READY:
        raise InvalidInput(
            f"media asset {asset_id} is {asset.status.value}, not ready",
            field=field,
            message_vi=f"Tệp âm thanh {asset_id} chưa sẵn sàng",
        )
    if asset.approval is not Approval.APPROVED:
        raise InvalidInput(
            f"media asset {asset_id} is not approved ({asset.approval.value})",
            field=field,
            message_vi=f"Tệp âm thanh {asset_id} chưa được duyệt",
        )
    return asset


def unplayable_reason(asset: MediaAsset | None) -> str | None:
    """Why an asset cannot play now (deleted, not ready, rejected, not approved)."""
    if asset is None:
        return "the media asset was deleted"
    if asset.status is not AssetStatus.READY:
        return f"the media asset is {asset.status.value}"
    if asset.approval is Approval.REJECTED:
        return "the media asset was rejected"
    if asset.approval is not Approval.APPROVED:
        return "the media asset is not approved"
    return None


# --- ingest ----------------------------------------------------------------------------


def _new_asset(
    *,
    title: str,
    category: str,
    tags: Iterable[str],
    source: AssetSource,
    author: Author,
    recipe: dict[str, Any] | None = None,
    approval: Approval = Approval.DRAFT,
) -> MediaAsset:
    return MediaAsset(
        title=title,
        title_folded=fold(title),
        category=category,
        tags=sorted(set(tags)),
        source=source,
        status=AssetStatus.PROCESSING,
        approval=approval,
        owner_area_id=author.area_id,
        created_by=author.name,
        created_by_id=author.user_id,
        recipe=recipe,
    )


@dataclass(frozen=True, slots=True)
class Rendition:
    """A processed recording in the content-addressed store, not yet an asset's."""

    sha256: str
    ext: str
    bytes: int
    result: ProcessResult


def _render(library: MediaLibrary, job: Callable[[Path], ProcessResult]) -> Rendition:
    """Run the audio work in a scratch directory and store its rendition (no database)."""
    with library.store.work_dir() as work:
        result = job(work)
        stored = library.store.put_file(
            "rendition",
            result.rendition_path,
            ext=result.rendition_ext,
            sha256=result.rendition_sha256,
            move=True,
        )
    return Rendition(sha256=stored.sha256, ext=stored.ext, bytes=stored.size, result=result)


def _fill(asset: MediaAsset, rendition: Rendition) -> None:
    result = rendition.result
    asset.sha256 = rendition.sha256
    asset.ext = rendition.ext
    asset.bytes = rendition.bytes
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


class SpokenAsset(TypedDict):
    """What to read aloud (`text`, `voice`, `rate`) and how to file the spoken asset."""

    text: str
    voice: str
    rate: int
    title: str | None
    category: str
    tags: Iterable[str]
    author: Author


def _spoken_asset(
    library: MediaLibrary, spoken: SpokenAsset, approval: Approval = Approval.DRAFT
) -> MediaAsset:
    """A new (``processing``) row for `text` read aloud, titled by its start if untitled."""
    text = spoken["text"]
    stripped = " ".join(text.split())
    return _new_asset(
        title=spoken["title"] or (stripped[:80] + ("…" if len(stripped) > 80 else "")) or "Bản tin",
        category=spoken["category"],
        tags=spoken["tags"],
        source=AssetSource.TTS,
        author=spoken["author"],
        recipe={
            "text": text,
            "voice": spoken["voice"],
            "rate": spoken["rate"],
            "engine": library.settings.tts_engine,
        },
        approval=approval,
    )


# --- speech inside a larger save ---------------------------------------------------------


def speak(library: MediaLibrary, *, text: str, voice: str, rate: int) -> Rendition:
    """Read `text` aloud (Vietnamese) into a stored rendition: long work, no database.

    Bad text raises `InvalidInput`; an engine failure `AudioToolError`.
    """
    try:
        return _render(library, lambda work: library.processor.synthesize(text, voice, rate, work))
    except (OSError, RuntimeError) as exc:
        raise AudioToolError(
            f"text-to-speech failed: {exc}",
            message_vi="Không chuyển được văn bản thành giọng nói",
        ) from exc


def check_text(library: MediaLibrary, text: str) -> str:
    """The text `speak` would read (stripped), or `InvalidInput` as `speak` would raise it:
    to refuse bad text before anything else is done with it."""
    return validate_text(text, max_chars=library.settings.tts_max_chars)


@dataclass(frozen=True, slots=True)
class SpeechPreview:
    """A bulletin read aloud for listening before it is saved (nothing is stored)."""

    normalized_text: str
    audio: bytes
    mime: str
    duration_ms: int
    loudness_after: float | None


def preview_speech(library: MediaLibrary, *, text: str, voice: str, rate: int) -> SpeechPreview:
    """Read `text` aloud in a scratch directory and hand back the audio and the text as
    the engine reads it (numbers, dates and abbreviations spelled out); no database and
    nothing left in the store.  Bad text raises `InvalidInput`."""
    stripped = validate_text(text, max_chars=library.settings.tts_max_chars)
    try:
        with library.store.work_dir() as work:
            result = library.processor.synthesize(stripped, voice, rate, work)
            audio = result.rendition_path.read_bytes()
    except (OSError, RuntimeError) as exc:
        raise AudioToolError(
            f"text-to-speech failed: {exc}",
            message_vi="Không chuyển được văn bản thành giọng nói",
        ) from exc
    return SpeechPreview(
        normalized_text=normalize_vi(stripped),
        audio=audio,
        mime=result.rendition_mime,
        duration_ms=result.duration_ms,
        loudness_after=result.loudness_after_lufs,
    )


def add_speech(
    session: Session,
    library: MediaLibrary,
    rendition: Rendition,
    **spoken: Unpack[SpokenAsset],
) -> MediaAsset:
    """The ready draft asset of a `speak` rendition, in the caller's transaction."""
    asset = _spoken_asset(library, spoken)
    _fill(asset, rendition)
    session.add(asset)
    session.flush()
    return asset


def discard(session: Session, library: MediaLibrary, renditions: Iterable[Rendition]) -> None:
    """Delete the files of renditions no asset uses (after a save that failed)."""
    for rendition in renditions:
        _delete_unreferenced(session, library, sha256=rendition.sha256, ext=rendition.ext)


@contextmanager
def saving_speech(
    session: Session, library: MediaLibrary, renditions: Sequence[Rendition]
) -> Iterator[None]:
    """A savepoint around a save that records `renditions` as assets: if the save fails,
    its writes are undone and the renditions no asset uses are deleted (the caller's
    transaction stays usable for that), then the error goes on."""
    if not renditions:
        yield
        return
    savepoint = session.begin_nested()
    try:
        yield
    except BaseException:
        savepoint.rollback()
        discard(session, library, renditions)
        raise
    savepoint.commit()


# --- stand-alone ingest jobs ---------------------------------------------------------------


@contextmanager
def _row(factory: sessionmaker[Session], asset_id: int) -> Iterator[MediaAsset | None]:
    """The asset's row (``None`` when it is gone) in a short transaction of its own."""
    with factory.begin() as session:
        yield session.get(MediaAsset, asset_id)


def _settle(
    factory: sessionmaker[Session],
    library: MediaLibrary,
    asset_id: int,
    job: Callable[[Path], ProcessResult],
    *,
    on_bad_input: Callable[[Session], None] | None = None,
) -> None:
    """Run `job` for a committed ``processing`` row, then settle the row (module doc)."""
    try:
        rendition = _render(library, job)
    except InvalidInput:
        _forget(factory, asset_id, on_bad_input)
        raise
    except (AudioToolError, OSError, RuntimeError) as exc:
        if _disk_full(exc):
            # not the upload's fault and nothing to keep: no asset, a 503 to retry later
            _forget(factory, asset_id, on_bad_input)
            raise StorageFull(f"no disk space to process the audio: {exc}") from exc
        log.warning("processing asset %s failed: %s", asset_id, exc)
        # the reason is read on the library page: Vietnamese (the English detail is logged)
        _fail(
            factory,
            asset_id,
            getattr(exc, "message_vi", None)
            or "Không xử lý được tệp âm thanh này; hãy kiểm tra tệp rồi tải lên lại",
        )
        return
    with _row(factory, asset_id) as done:
        if done is not None:
            _fill(done, rendition)


def _forget(
    factory: sessionmaker[Session],
    asset_id: int,
    on_bad_input: Callable[[Session], None] | None,
) -> None:
    """Remove the ``processing`` row (and what `on_bad_input` cleans) in one transaction."""
    with factory.begin() as session:
        stale = session.get(MediaAsset, asset_id)
        if stale is not None:
            session.delete(stale)
            session.flush()
        if on_bad_input is not None:
            on_bad_input(session)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, NoScratchSpace):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left" in str(exc)


def _fail(factory: sessionmaker[Session], asset_id: int, reason: str) -> None:
    with _row(factory, asset_id) as failed:
        if failed is not None:
            failed.status = AssetStatus.FAILED
            failed.failure_reason = reason


def _ingest(
    factory: sessionmaker[Session],
    library: MediaLibrary,
    asset: MediaAsset,
    job: Callable[[Path], ProcessResult],
    *,
    on_bad_input: Callable[[Session], None] | None = None,
) -> int:
    """Commit the ``processing`` row in its own transaction, then `_settle` it."""
    with factory.begin() as session:
        session.add(asset)
        session.flush()
        asset_id = asset.id
    _settle(factory, library, asset_id, job, on_bad_input=on_bad_input)
    return asset_id


def ingest_upload(
    factory: sessionmaker[Session],
    library: MediaLibrary,
    *,
    upload: Upload,
    filename: str | None,
    title: str,
    category: str,
    tags: Iterable[str],
    author: Author,
    submit: bool = True,
) -> tuple[int, bool]:
    """A new asset from an upload, or the existing one for identical content.

    The new asset waits for approval, or (``submit=False``) is kept as the author's
    draft.  Returns ``(asset_id, created)``.  The upload's temporary file is consumed
    either way.
    """
    with factory() as session:
        existing = session.scalar(
            select(MediaAsset.id).where(
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
        title=title,
        category=category,
        tags=tags,
        source=AssetSource.UPLOAD,
        author=author,
        approval=on_save(submit),
    )
    asset.original_sha256 = original.sha256
    asset.original_ext = original.ext
    asset.original_bytes = original.size
    asset.original_filename = (filename or "")[:300] or None
    asset.recipe = {"format": info.as_dict()}

    def drop_original(session: Session) -> None:
        _delete_unreferenced(
            session, library, original_sha256=original.sha256, original_ext=original.ext
        )

    asset_id = _ingest(
        factory,
        library,
        asset,
        lambda work: library.processor.process(original.path, work),
        on_bad_input=drop_original,
    )
    return asset_id, True


def create_tts_asset(
    factory: sessionmaker[Session],
    library: MediaLibrary,
    *,
    submit: bool = True,
    **spoken: Unpack[SpokenAsset],
) -> int:
    """Speak `text` (Vietnamese) into a new asset, waiting for approval or (``submit``
    false) kept as the author's draft; returns its id."""
    asset = _spoken_asset(library, spoken, on_save(submit))
    text, voice, rate = spoken["text"], spoken["voice"], spoken["rate"]
    return _ingest(
        factory, library, asset, lambda work: library.processor.synthesize(text, voice, rate, work)
    )


def create_composed_asset(
    factory: sessionmaker[Session],
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
    submit: bool = True,
) -> int:
    """Join ready assets (jingle, bulletin, outro...) into one new asset, waiting for
    approval or (``submit`` false) kept as the author's draft."""
    paths = []
    with factory() as session:
        for index, part_id in enumerate(part_ids):
            part = asset_in_scope(session, part_id, scope=scope, field=("parts", index))
            if part.status is not AssetStatus.READY:
                raise InvalidInput(
                    f"media asset {part_id} is not ready",
                    field=("parts", index),
                    message_vi=f"Tệp âm thanh {part_id} chưa sẵn sàng",
                )
            paths.append(library.rendition_path(part))
    asset = _new_asset(
        title=title,
        category=category,
        tags=tags,
        source=AssetSource.COMPOSED,
        author=author,
        recipe={"parts": part_ids, "gap_ms": gap_ms, "crossfade_ms": crossfade_ms},
        approval=on_save(submit),
    )
    return _ingest(
        factory,
        library,
        asset,
        lambda work: library.processor.compose(paths, gap_ms, crossfade_ms, work),
    )


def recover_interrupted(factory: sessionmaker[Session], library: MediaLibrary) -> int:
    """Re-run (or fail) assets a crash left in ``processing``; return how many."""
    with factory() as session:
        stuck = [
            (asset.id, _recovery_job(library, asset))
            for asset in session.scalars(
                select(MediaAsset).where(MediaAsset.status == AssetStatus.PROCESSING)
            )
        ]
    for asset_id, job in stuck:
        if job is None:
            _fail(
                factory,
                asset_id,
                "Việc xử lý bị gián đoạn (máy chủ khởi động lại) và không tiếp tục được; "
                "hãy tải lên lại",
            )
            continue
        try:
            _settle(factory, library, asset_id, job)
        except InvalidInput as exc:
            log.warning("asset %s dropped on recovery: %s", asset_id, exc)
    return len(stuck)


def _recovery_job(
    library: MediaLibrary, asset: MediaAsset
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
            f"media asset {asset.id} is {asset.status.value}; only ready assets can be reviewed",
            message_vi="Chỉ duyệt được tệp âm thanh đã xử lý xong",
        )
    if asset.approval is Approval.UNSUBMITTED:
        raise ConflictError(
            f"media asset {asset.id} is an unsubmitted draft; its author has not sent it "
            "for approval",
            message_vi="Tệp âm thanh này còn là bản nháp, người tạo chưa gửi duyệt",
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


def _reset_approval(asset: MediaAsset, approval: Approval) -> None:
    """Put the asset in `approval` (unsubmitted or waiting), forgetting the last decision
    (the audit log keeps it)."""
    asset.approval = approval
    asset.approved_by = None
    asset.approved_at = None
    asset.approval_note = None


def submit_asset(session: Session, asset: MediaAsset) -> MediaAsset:
    """Send an unsubmitted (or rejected, then fixed) asset for approval."""
    require_submittable(asset.approval, what=f"media asset {asset.id}", what_vi="Tệp âm thanh này")
    if asset.status is not AssetStatus.READY:
        raise ConflictError(
            f"media asset {asset.id} is {asset.status.value}; only ready assets can be submitted",
            message_vi="Chỉ gửi duyệt được tệp âm thanh đã xử lý xong",
        )
    _reset_approval(asset, Approval.DRAFT)
    session.flush()
    return asset


def update_metadata(
    session: Session,
    asset: MediaAsset,
    *,
    title: str | None,
    category: str | None,
    tags: list[str] | None,
    submit: bool | None = None,
) -> MediaAsset:
    """Change the title, category or tags.  With `submit`, an asset that is not approved
    is sent for approval (true) or kept as its author's draft (false); an approved one
    stays approved (what it plays does not change)."""
    if submit is not None and asset.approval is not Approval.APPROVED:
        wanted = on_save(submit)
        if asset.approval is not wanted:
            _reset_approval(asset, wanted)
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


def cached_peaks(asset: MediaAsset, buckets: int) -> list[float] | None:
    """The stored waveform peaks, if `buckets` is the cached count and they exist."""
    if asset.status is not AssetStatus.READY:
        raise ConflictError(
            f"media asset {asset.id} is {asset.status.value}",
            message_vi=f"Tệp âm thanh {asset.id} chưa xử lý xong hoặc xử lý lỗi",
        )
    if buckets == DEFAULT_PEAK_BUCKETS and asset.peaks:
        return list(asset.peaks)
    return None


def rendition_peaks(library: MediaLibrary, asset: MediaAsset, buckets: int) -> list[float]:
    """Waveform peaks of the rendition (decodes it: long work, hold no transaction)."""
    if asset.status is not AssetStatus.READY:
        raise ConflictError(
            f"media asset {asset.id} is {asset.status.value}",
            message_vi=f"Tệp âm thanh {asset.id} chưa xử lý xong hoặc xử lý lỗi",
        )
    return compute_peaks(library.rendition_path(asset), buckets=buckets).abs_peaks


def cache_peaks(session: Session, asset: MediaAsset, buckets: int, values: list[float]) -> None:
    """Keep the peaks of the default bucket count with the asset (flush)."""
    if buckets == DEFAULT_PEAK_BUCKETS:
        asset.peaks = values
        session.flush()
