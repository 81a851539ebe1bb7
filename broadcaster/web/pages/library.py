"""The audio library (``/thu-vien``, ``/thu-vien/{id}``) and the approval queue
(``/duyet``).

The pages read through the media and schedule services (scoped to the account's areas;
an asset outside them answers the 404 page).  What the browser changes — upload,
recording, text to speech and its preview, saving as a draft (*Lưu nháp*) and submitting
it (*Gửi duyệt*), edit, delete, approve, reject — goes through the JSON API with the
session cookie (`static/library.js`), which enforces the same rules (an approver never
approves their own work, nor a draft its author has not submitted)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from audio_library import service as media_service
from audio_library.dependencies import LibraryDep, library_of
from audio_library.models import CATEGORIES, AssetSource, AssetStatus, MediaAsset
from audio_library.service import AssetNotFound, MediaLibrary
from broadcaster.web.pages import schedules as schedule_pages
from broadcaster.web.pages.shared import (
    PAGE_SIZE,
    Account,
    SignedIn,
    error_page,
    page_number,
    page_tz,
    pager,
    render,
    templates,
)
from kernel.approval import APPROVAL_LABELS_VI, SUBMITTABLE, Approval
from kernel.dependencies import SessionDep
from kernel.security import Permission
from schedules import reads as schedule_reads
from schedules.service import rules as rules_service

router = APIRouter(include_in_schema=False)

PREVIEW_TTL = dt.timedelta(hours=2)
STATUS_LABELS = {
    AssetStatus.PROCESSING: "Đang xử lý",
    AssetStatus.FAILED: "Xử lý lỗi",
}
SOURCE_LABELS = {
    AssetSource.UPLOAD: "Tải lên / ghi âm",
    AssetSource.TTS: "Đọc từ văn bản",
    AssetSource.COMPOSED: "Ghép nối",
}
# the filter of the list: one choice per state an operator tells apart (the approval
# states of a ready asset: draft, waiting, approved, rejected; then the processing ones)
STATE_CHOICES = {a.value: label for a, label in APPROVAL_LABELS_VI.items()} | {
    "processing": STATUS_LABELS[AssetStatus.PROCESSING],
    "failed": STATUS_LABELS[AssetStatus.FAILED],
}


def vi_decimal(value: float | None, digits: int = 1) -> str:
    """A number with the Vietnamese decimal comma (``-16,0``); ``—`` for none."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}".replace("-", "−").replace(".", ",")


templates.env.filters["vi_decimal"] = vi_decimal


@dataclass(frozen=True)
class AssetRow:
    """One asset as the library and the queue show it."""

    asset: MediaAsset
    url: str | None
    mine: bool

    @property
    def state(self) -> str:
        if self.asset.status is not AssetStatus.READY:
            return self.asset.status.value
        return self.asset.approval.value

    @property
    def state_label(self) -> str:
        return STATE_CHOICES[self.state]

    @property
    def submittable(self) -> bool:
        """Ready, and its author's draft or rejected: it can be sent for approval."""
        return self.asset.status is AssetStatus.READY and self.asset.approval in SUBMITTABLE

    @property
    def category_label(self) -> str:
        return CATEGORIES.get(self.asset.category, self.asset.category)

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS[self.asset.source]

    @property
    def text(self) -> str | None:
        """The text a spoken bulletin reads (what an approver reads before approving)."""
        recipe = self.asset.recipe or {}
        value = recipe.get("text") if self.asset.source is AssetSource.TTS else None
        return value if isinstance(value, str) else None


def _row(library: MediaLibrary, account: Account, asset: MediaAsset) -> AssetRow:
    url = None
    if asset.status is AssetStatus.READY and asset.sha256:
        url = library.asset_url(asset, dt.datetime.now(dt.UTC) + PREVIEW_TTL)
    return AssetRow(asset, url, asset.created_by_id == account.principal.user_id)


def _asset_for(session: Session, account: Account, asset_id: str) -> MediaAsset | None:
    """The asset, if the id is well formed and the account's areas reach it."""
    if not (asset_id.isdigit() and len(asset_id) < 10):
        return None
    try:
        asset = media_service.get_asset(session, int(asset_id))
    except AssetNotFound:
        return None
    if asset.owner_area_id is not None and not account.principal.reaches(asset.owner_area_id):
        return None
    return asset


def _no_library_access(request: Request, account: Account) -> HTMLResponse:
    return error_page(
        request, account, 403, "Tài khoản của bạn không có quyền xem thư viện âm thanh."
    )


@router.get("/thu-vien", response_class=HTMLResponse)
def library_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    library: LibraryDep,
    q: str | None = None,
    category: str | None = None,
    state: str | None = None,
    trang: str | None = None,
) -> Response:
    """The list with its filters (read leniently: a value that does not fit is ignored),
    and the upload, recording and text-to-speech forms."""
    principal = account.principal
    if not principal.has(Permission.CONTENT_READ):
        return _no_library_access(request, account)
    search = (q or "").strip()[:200] or None
    category_code = category if category in CATEGORIES else None
    state_code = state if state in STATE_CHOICES else None
    approval = Approval(state_code) if state_code in {a.value for a in Approval} else None
    status = AssetStatus(state_code) if state_code in {"processing", "failed"} else None
    if approval is not None:
        status = AssetStatus.READY
    page = page_number(trang)
    assets, total = media_service.list_assets(
        session,
        scope=principal.scope,
        q=search,
        category=category_code,
        status=status,
        approval=approval,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    library = library_of(request)
    filters = {"q": search or "", "category": category_code or "", "state": state_code or ""}
    return render(
        request,
        "library.html",
        {
            "account": account,
            "active": "library",
            "rows": [_row(library, account, a) for a in assets],
            "total": total,
            "filters": filters,
            "categories": CATEGORIES,
            "states": STATE_CHOICES,
            "can_write": principal.has(Permission.CONTENT_WRITE),
            # what the service takes (BROADCASTER_AUDIO_MAX_UPLOAD_BYTES), in whole MB
            "max_upload_mb": library.settings.max_upload_bytes // (1024 * 1024),
            **pager("/thu-vien", filters, page, total),
        },
    )


@router.get("/thu-vien/{asset_id}", response_class=HTMLResponse)
def asset_page(request: Request, session: SessionDep, account: SignedIn, asset_id: str) -> Response:
    principal = account.principal
    if not principal.has(Permission.CONTENT_READ):
        return _no_library_access(request, account)
    asset = _asset_for(session, account, asset_id)
    if asset is None:
        return error_page(
            request, account, 404, "Không tìm thấy tệp âm thanh này trong địa bàn của bạn."
        )
    owner_ok = (
        principal.reaches(asset.owner_area_id)
        if asset.owner_area_id is not None
        else principal.city_wide
    )
    return render(
        request,
        "library_asset.html",
        {
            "account": account,
            "active": "library",
            "row": _row(library_of(request), account, asset),
            "categories": CATEGORIES,
            "can_edit": owner_ok and principal.has(Permission.CONTENT_WRITE),
        },
    )


@router.get("/duyet", response_class=HTMLResponse)
def approval_page(request: Request, session: SessionDep, account: SignedIn) -> Response:
    """What waits for this approver: ready draft assets and draft schedule rules in
    their areas (their own work is listed, marked, and cannot be approved by them)."""
    principal = account.principal
    can_assets = principal.has(Permission.CONTENT_APPROVE)
    can_rules = principal.has(Permission.SCHEDULES_APPROVE)
    if not (can_assets or can_rules):
        return error_page(
            request, account, 403, "Tài khoản của bạn không có quyền duyệt nội dung và lịch phát."
        )
    library = library_of(request)
    assets: list[AssetRow] = []
    asset_total = 0
    if can_assets:
        items, asset_total = media_service.list_assets(
            session,
            scope=principal.scope,
            status=AssetStatus.READY,
            approval=Approval.DRAFT,
            limit=PAGE_SIZE,
        )
        assets = [_row(library, account, a) for a in items]
    rules: list[dict[str, Any]] = []
    rule_total = 0
    if can_rules:
        found, rule_total = rules_service.list_rules(
            session, scope=principal.scope, approval=Approval.DRAFT, limit=PAGE_SIZE
        )
        tz = page_tz(request)
        mine = {r.id for r in found if r.created_by_id == principal.user_id}
        rules = [
            {
                "read": read,
                "mine": read.id in mine,
                # what approving it would do to the plan (conflicts before approving)
                "preview": schedule_pages.rule_conflicts(session, account, rule, tz),
            }
            for read, rule in zip(schedule_reads.rule_reads(session, found, tz), found, strict=True)
        ]
    return render(
        request,
        "approval.html",
        {
            "account": account,
            "active": "approval",
            "assets": assets,
            "asset_total": asset_total,
            "rules": rules,
            "rule_total": rule_total,
            "can_assets": can_assets,
            "can_rules": can_rules,
        },
    )
