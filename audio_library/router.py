"""Media library API (`/api/v1/media`) and signed media downloads for stations (`/media`)."""

import base64
import datetime as dt
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session

from audio_library import service
from audio_library.dependencies import AssetDep, LibraryDep
from audio_library.exceptions import MediaNotFound
from audio_library.models import CATEGORIES, AssetSource, AssetStatus, MediaAsset
from audio_library.schemas import (
    SUBMIT_HELP,
    ApprovalRequest,
    AssetRead,
    AssetUpdate,
    ComposeRequest,
    Peaks,
    TTSPreview,
    TTSPreviewRequest,
    TTSRequest,
    check_category,
)
from audio_library.signing import verify
from kernel.approval import Approval
from kernel.db import release
from kernel.dependencies import (
    AreasDep,
    Audit,
    CurrentPrincipal,
    PageDep,
    SessionDep,
    SessionFactoryDep,
)
from kernel.errors import InvalidInput
from kernel.ownership import AreaDirectory, owner_area_for, require_owner
from kernel.security import Permission, Principal

router = APIRouter(prefix="/api/v1/media", tags=["media"])
public_router = APIRouter(tags=["media"])

PREVIEW_TTL = dt.timedelta(hours=1)
AssetUsage = Callable[[Session, int], list[str]]
"""Registered by the composition root: who (in the future) still uses an asset."""


def asset_read(
    asset: MediaAsset, library: service.MediaLibrary, codes: dict[int, str]
) -> AssetRead:
    preview = None
    if asset.status is AssetStatus.READY and asset.sha256:
        preview = library.asset_url(asset, dt.datetime.now(dt.UTC) + PREVIEW_TTL)
    fmt = (asset.recipe or {}).get("format", {}) if asset.source is AssetSource.UPLOAD else {}
    return AssetRead(
        id=asset.id,
        title=asset.title,
        category=asset.category,
        category_name=CATEGORIES.get(asset.category, asset.category),
        tags=list(asset.tags or []),
        source=asset.source,
        status=asset.status,
        failure_reason=asset.failure_reason,
        approval=asset.approval,
        approved_by=asset.approved_by,
        approved_at=asset.approved_at,
        approval_note=asset.approval_note,
        playable=asset.playable,
        owner_area_code=codes.get(asset.owner_area_id) if asset.owner_area_id else None,
        created_by=asset.created_by,
        sha256=asset.sha256,
        bytes=asset.bytes,
        duration_ms=asset.duration_ms,
        mime=asset.mime,
        loudness_before=asset.loudness_before,
        loudness_after=asset.loudness_after,
        true_peak_before=asset.true_peak_before,
        true_peak_after=asset.true_peak_after,
        original_filename=asset.original_filename,
        original_format=fmt.get("format_name") if isinstance(fmt, dict) else None,
        recipe=asset.recipe if asset.source is not AssetSource.UPLOAD else None,
        preview_url=preview,
        created_at=asset.created_at,
        processed_at=asset.processed_at,
    )


def _read_one(
    session: Session, library: service.MediaLibrary, areas: AreaDirectory, asset: MediaAsset
) -> AssetRead:
    return asset_read(asset, library, areas.codes_for(session, [asset.owner_area_id]))


def _author(
    session: Session, principal: Principal, areas: AreaDirectory, owner_area: str | None
) -> service.Author:
    """The author, and the area the new asset belongs to (see `kernel.ownership`)."""
    area_id = owner_area_for(
        session,
        principal,
        owner_area,
        Permission.CONTENT_WRITE,
        areas=areas,
        what="content",
        what_vi="Nội dung",
    )
    return service.Author(name=principal.username, user_id=principal.user_id, area_id=area_id)


@dataclass
class DraftJob:
    """A request that makes a new draft asset in a job (speech, composition): the job opens
    its own sessions, so the request's session is released while it runs."""

    session: SessionDep
    factory: SessionFactoryDep
    principal: CurrentPrincipal
    library: LibraryDep
    areas: AreasDep
    audit: Audit

    def author(self) -> service.Author:
        """Who makes the draft (content writers only); releases the request's session."""
        self.principal.require(Permission.CONTENT_WRITE)
        author = _author(self.session, self.principal, self.areas, None)
        release(self.session)
        return author

    def done(self, action: str, asset_id: int, after: dict[str, Any] | None = None) -> AssetRead:
        """The draft's audit entry (nothing plays it yet: no plan signal) and its read."""
        asset = service.get_asset(self.session, asset_id)
        self.audit.commit_change(
            action, "media", [str(asset.id)], after=after or {"title": asset.title}, plan=False
        )
        return _read_one(self.session, self.library, self.areas, asset)


DraftJobDep = Annotated[DraftJob, Depends()]


def _require_owner(principal: Principal, asset: MediaAsset, permission: Permission) -> None:
    """Area-owned assets need the permission in that area; city-wide ones a city account."""
    require_owner(principal, asset.owner_area_id, permission, what="content", what_vi="Nội dung")


@router.get("", response_model=dict)
def list_media(
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    areas: AreasDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    status_: Annotated[AssetStatus | None, Query(alias="status")] = None,
    approval: Approval | None = None,
    source: AssetSource | None = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
) -> dict[str, object]:
    principal.require(Permission.CONTENT_READ)
    items, total = service.list_assets(
        session,
        scope=principal.scope,
        q=q,
        category=category,
        status=status_,
        approval=approval,
        source=source,
        tag=tag,
        limit=page.limit,
        offset=page.offset,
    )
    codes = areas.codes_for(session, [a.owner_area_id for a in items])
    return {"items": [asset_read(a, library, codes) for a in items], "total": total}


@router.get("/categories")
def categories(principal: CurrentPrincipal) -> dict[str, str]:
    return dict(CATEGORIES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "identical content already in the library"}},
)
def upload_media(
    session: SessionDep,
    factory: SessionFactoryDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    areas: AreasDep,
    audit: Audit,
    file: Annotated[UploadFile, File(description="audio in any format ffmpeg decodes")],
    title: Annotated[str, Form(min_length=1, max_length=300)],
    category: Annotated[str, Form(max_length=32)] = "tin-tuc",
    tags: Annotated[str, Form(max_length=500, description="comma separated")] = "",
    owner_area: Annotated[str | None, Form(max_length=64)] = None,
    submit: Annotated[bool, Form(description=SUBMIT_HELP)] = True,
) -> JSONResponse:
    """Upload a recording; it is normalised to the station loudness before it returns."""
    principal.require(Permission.CONTENT_WRITE)
    try:
        check_category(category)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), field="category", message_vi="Chuyên mục không hợp lệ"
        ) from exc
    author = _author(session, principal, areas, owner_area)
    release(session)  # the ingest job opens its own sessions
    upload = library.store.receive_upload(file.file, max_bytes=library.settings.max_upload_bytes)
    asset_id, created = service.ingest_upload(
        factory,
        library,
        upload=upload,
        filename=file.filename,
        title=title.strip(),
        category=category,
        tags=[t.strip() for t in tags.split(",") if t.strip()],
        author=author,
        submit=submit,
    )
    asset = service.get_asset(session, asset_id)
    if created:
        # a new draft: nothing plays it until it is approved and scheduled
        audit.commit_change(
            "media.upload", "media", [str(asset.id)], after={"title": asset.title}, plan=False
        )
    body = _read_one(session, library, areas, asset).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


@router.post("/tts", status_code=status.HTTP_201_CREATED)
def text_to_speech(data: TTSRequest, job: DraftJobDep) -> AssetRead:
    """Read a Vietnamese bulletin aloud (voices: south, north, central; rate -3..+3)."""
    asset_id = service.create_tts_asset(
        job.factory,
        job.library,
        text=data.text,
        voice=data.voice,
        rate=data.rate,
        title=data.title,
        category=data.category,
        tags=data.tags,
        author=job.author(),
        submit=data.submit,
    )
    return job.done("media.tts", asset_id)


@router.post("/tts/preview")
def preview_text_to_speech(
    data: TTSPreviewRequest, principal: CurrentPrincipal, library: LibraryDep, session: SessionDep
) -> TTSPreview:
    """Listen before saving: the bulletin read aloud (an MP3 data URL, nothing stored) and
    the text as it will be read (numbers, dates and abbreviations written out)."""
    principal.require(Permission.CONTENT_WRITE)
    release(session)  # speech takes a while: hold no transaction meanwhile
    preview = service.preview_speech(library, text=data.text, voice=data.voice, rate=data.rate)
    encoded = base64.b64encode(preview.audio).decode("ascii")
    return TTSPreview(
        normalized_text=preview.normalized_text,
        audio_url=f"data:{preview.mime};base64,{encoded}",
        duration_ms=preview.duration_ms,
        loudness_after=preview.loudness_after,
    )


@router.post("/compose", status_code=status.HTTP_201_CREATED)
def compose_media(data: ComposeRequest, job: DraftJobDep) -> AssetRead:
    """Join parts (intro jingle, bulletin, outro) with gaps or a crossfade."""
    asset_id = service.create_composed_asset(
        job.factory,
        job.library,
        part_ids=data.parts,
        gap_ms=data.gap_ms,
        crossfade_ms=data.crossfade_ms,
        title=data.title,
        category=data.category,
        tags=data.tags,
        author=job.author(),
        scope=job.principal.scope,
        submit=data.submit,
    )
    return job.done("media.compose", asset_id, after=data.model_dump())


@router.get("/{asset_id}")
def get_media(
    asset: AssetDep, session: SessionDep, library: LibraryDep, areas: AreasDep
) -> AssetRead:
    return _read_one(session, library, areas, asset)


@router.patch("/{asset_id}")
def update_media(
    asset: AssetDep,
    data: AssetUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    areas: AreasDep,
    audit: Audit,
) -> AssetRead:
    _require_owner(principal, asset, Permission.CONTENT_WRITE)
    before = {
        "title": asset.title,
        "category": asset.category,
        "tags": list(asset.tags or []),
        "approval": asset.approval.value,
    }
    service.update_metadata(
        session,
        asset,
        title=data.title,
        category=data.category,
        tags=data.tags,
        submit=data.submit,
    )
    audit.commit_change(  # titles reach the playlists
        "media.update",
        "media",
        [str(asset.id)],
        before=before,
        after=data.model_dump(exclude_unset=True) | {"approval": asset.approval.value},
    )
    return _read_one(session, library, areas, asset)


@router.post("/{asset_id}/submit")
def submit_media(
    asset: AssetDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    areas: AreasDep,
    audit: Audit,
) -> AssetRead:
    """Send your draft (or a rejected asset, once fixed) for approval; 409 if it already
    waits or is approved."""
    _require_owner(principal, asset, Permission.CONTENT_WRITE)
    before = {"approval": asset.approval.value}
    service.submit_asset(session, asset)
    audit.commit_change(  # it only joins the approval queue: nothing plays it yet
        "media.submit",
        "media",
        [str(asset.id)],
        before=before,
        after={"approval": asset.approval.value},
        plan=False,
    )
    return _read_one(session, library, areas, asset)


@dataclass
class Review:
    """An approver's decision on one asset (the approve permission in its area)."""

    asset: AssetDep
    session: SessionDep
    principal: CurrentPrincipal
    library: LibraryDep
    areas: AreasDep
    audit: Audit

    def decide(self, data: ApprovalRequest | None, *, approve: bool) -> AssetRead:
        asset, principal, note = self.asset, self.principal, (data or ApprovalRequest()).note
        _require_owner(principal, asset, Permission.CONTENT_APPROVE)
        before = {"approval": asset.approval.value}
        service.set_approval(
            self.session,
            asset,
            approver=service.Author(name=principal.username, user_id=principal.user_id),
            approve=approve,
            note=note,
        )
        self.audit.commit_change(
            "media.approve" if approve else "media.reject",
            "media",
            [str(asset.id)],
            before=before,
            after={"approval": asset.approval.value, "note": note},
        )
        return _read_one(self.session, self.library, self.areas, asset)


ReviewDep = Annotated[Review, Depends()]


@router.post("/{asset_id}/approve")
def approve_media(review: ReviewDep, data: ApprovalRequest | None = None) -> AssetRead:
    return review.decide(data, approve=True)


@router.post("/{asset_id}/reject")
def reject_media(review: ReviewDep, data: ApprovalRequest | None = None) -> AssetRead:
    return review.decide(data, approve=False)


@router.get("/{asset_id}/peaks")
def media_peaks(
    asset: AssetDep,
    session: SessionDep,
    library: LibraryDep,
    buckets: Annotated[int, Query(ge=10, le=4000)] = service.DEFAULT_PEAK_BUCKETS,
) -> Peaks:
    """Waveform peaks for previews (absolute peak per bucket, 0..1)."""
    values = service.cached_peaks(asset, buckets)
    if values is None:
        release(session)  # decoding takes a while: hold no transaction meanwhile
        values = service.rendition_peaks(library, asset, buckets)
        service.cache_peaks(session, asset, buckets, values)
        session.commit()
    return Peaks(
        asset_id=asset.id, buckets=len(values), duration_ms=asset.duration_ms or 0, peaks=values
    )


@router.delete("/{asset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_media(
    asset: AssetDep,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    audit: Audit,
) -> Response:
    """Delete an asset; refused (409) while a future schedule uses it."""
    _require_owner(principal, asset, Permission.CONTENT_WRITE)
    checks: list[AssetUsage] = getattr(request.app.state, "asset_usage", [])
    used_by = [user for check in checks for user in check(session, asset.id)]
    asset_id, title = asset.id, asset.title
    service.delete_asset(session, library, asset, used_by=used_by)
    audit.commit_change("media.delete", "media", [str(asset_id)], before={"title": title})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- station downloads -----------------------------------------------------------------


@public_router.head("/media/{name}", include_in_schema=False)
@public_router.get("/media/{name}")
async def download(
    name: str,
    request: Request,
    exp: str | None = None,
    sig: str | None = None,
) -> Response:
    """A signed station download (no login): HEAD, Range (206), ETag/If-None-Match.

    On the event loop, not in the thread pool: a thousand stations fetching an
    emergency's audio at once would otherwise hold the pool's threads (two hops each:
    the library dependency and the route), and the operator's next request, the next
    emergency among them, would queue behind them for a thread.  Its work here is a
    signature check and one ``stat`` of a file the service just wrote."""
    library: service.MediaLibrary = request.app.state.media_library
    ref = verify(f"/media/{name}", exp, sig, library.url_secret, dt.datetime.now(dt.UTC))
    path = library.store.path_for("rendition", ref.sha256, ref.ext)
    try:
        found = path.stat()
    except OSError:
        found = None
    if found is None or not stat.S_ISREG(found.st_mode):
        raise MediaNotFound(f"no media {ref.sha256}", message_vi="Không tìm thấy tệp âm thanh")
    etag = f'"{ref.sha256}"'
    cache = "private, max-age=86400, immutable"
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    mime = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "opus": "audio/ogg"}.get(
        ref.ext, "application/octet-stream"
    )
    return FileResponse(
        path,
        media_type=mime,
        headers={"ETag": etag, "Cache-Control": cache},
        stat_result=found,  # no second stat in the thread pool
    )
