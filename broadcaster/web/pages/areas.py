"""Areas for city administrators (``/quan-tri/dia-ban``, ``/quan-tri/sap-xep``): the area
tree editor (codes, statistics codes, station counts; add, rename, move an area, set its
statistics code) and the administrative reorganisation (a decision uploaded as a
spreadsheet or built in the form, its preview with every error listed, apply or schedule
for its effective date, undo or cancel before that date).

Form posts (no JavaScript needed), checked as coming from our own pages; the changes go
through `stations.service` and `broadcaster.reorg.service` and are committed through the
one change helper with their audit entry, like the JSON API.  Only city-wide
administrators (areas and accounts rights: a reorganisation moves accounts' scopes) may
use these pages; others get the 403 page.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from broadcaster.reorg import service as reorg
from broadcaster.web.pages.labels import (
    LEVEL_LABELS,
    REORG_ACTION_LABELS,
    REORG_LABELS,
    ROLE_LABELS,
)
from broadcaster.web.pages.shared import (
    Account,
    SignedIn,
    cross_site,
    day_param,
    error_page,
    page_tz,
    render,
)
from kernel.changes import Actor, commit_change
from kernel.dependencies import SessionDep, client_ip
from kernel.errors import DomainError
from kernel.security import Permission
from stations import service as stations
from stations.models import AreaLevel, ReorgStatus
from stations.schemas import AreaCreate, AreaUpdate

router = APIRouter(include_in_schema=False)

TREE = "/quan-tri/dia-ban"
REORG = "/quan-tri/sap-xep"
NOT_ALLOWED = "Chỉ quản trị viên toàn thành phố được sửa địa bàn và sắp xếp đơn vị hành chính."
FOREIGN = "Yêu cầu không xuất phát từ trang này."
ROWS = 6  # blank rows of the decision form
MAX_DECISION_BYTES = 1_048_576
Text = Annotated[str, Form(max_length=256)]
Column = Annotated[list[str] | None, Form(max_length=2000)]
PlanJson = Annotated[str, Form(max_length=500_000)]


def _refused(request: Request, account: Account, *, posted: bool = False) -> Response | None:
    principal = account.principal
    if not (
        principal.has(Permission.AREAS_WRITE)
        and principal.has(Permission.USERS_MANAGE)
        and principal.city_wide
    ):
        return error_page(request, account, 403, NOT_ALLOWED)
    if posted and cross_site(request, required=True):
        return error_page(request, account, 403, FOREIGN)
    return None


def _actor(request: Request, account: Account) -> Actor:
    return Actor(principal=account.principal, ip=client_ip(request))


def _today(request: Request) -> dt.date:
    return dt.datetime.now(page_tz(request)).date()


def _message(exc: DomainError) -> str:
    return exc.message_vi or "Không thực hiện được yêu cầu; kiểm tra lại thông tin."


# --- the area tree --------------------------------------------------------------------------


def _tree_page(
    request: Request,
    session: Session,
    account: Account,
    *,
    retired: bool = False,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    nodes = stations.area_tree(session, retired=retired)
    return render(
        request,
        "admin_areas.html",
        {
            "account": account,
            "active": "admin",
            "nodes": nodes,
            "parents": [n for n in nodes if n.area.level is not AreaLevel.HAMLET],
            "retired": retired,
            "levels": LEVEL_LABELS,
            "error": error,
            "notice": notice,
            "form": form or {"level": AreaLevel.HAMLET.value},
        },
        status_code=status_code,
    )


@router.get(TREE, response_class=HTMLResponse)
def tree_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    da_giai_the: str | None = None,
    da_luu: str | None = None,
) -> Response:
    if refused := _refused(request, account):
        return refused
    notice = f"Đã lưu địa bàn {da_luu}." if da_luu else None
    return _tree_page(request, session, account, retired=bool(da_giai_the), notice=notice)


def _field_error(exc: ValidationError) -> str:
    names = {
        "code": "Mã (chữ thường không dấu, số, dấu gạch ngang)",
        "name": "Tên (1–200 ký tự)",
        "level": "Cấp",
        "parent_code": "Cấp trên",
        "stat_code": "Mã thống kê (tối đa 16 ký tự)",
    }
    fields = dict.fromkeys(str(e["loc"][0]) for e in exc.errors() if e["loc"])
    return "Thông tin chưa hợp lệ: " + ", ".join(names.get(f, f) for f in fields) + "."


@router.post(TREE, response_class=HTMLResponse)
def area_create(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    code: Text = "",
    name: Text = "",
    level: Text = "",
    parent: Text = "",
    stat_code: Text = "",
) -> Response:
    if refused := _refused(request, account, posted=True):
        return refused
    form = {"code": code.strip(), "name": name.strip(), "level": level, "parent": parent,
            "stat_code": stat_code.strip()}  # fmt: skip
    try:
        data = AreaCreate(
            code=form["code"],
            name=form["name"],
            level=level,
            parent_code=parent or None,
            stat_code=form["stat_code"] or None,
        )
        area = stations.create_area(session, data)
    except ValidationError as exc:
        error = _field_error(exc)
    except DomainError as exc:
        session.rollback()
        error = _message(exc)
    else:
        # a new area holds no station yet, so no plan changes through it
        after = data.model_dump(mode="json") | {"stat_code": area.stat_code}  # as stored
        commit_change(session, _actor(request, account), "area.create", "area", [area.code],
                      after=after, plan=False)  # fmt: skip
        return RedirectResponse(f"{TREE}?da_luu={area.code}", status_code=status.HTTP_303_SEE_OTHER)
    return _tree_page(request, session, account, error=error, form=form, status_code=422)


def _area_page(
    request: Request,
    session: Session,
    account: Account,
    code: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    nodes = stations.area_tree(session, retired=True)
    node = next((n for n in nodes if n.area.code == code), None)
    if node is None:
        return error_page(request, account, 404, "Không tìm thấy địa bàn này.")
    subtree: set[str] = set()  # the lines after it, until one as shallow as it
    for other in nodes[nodes.index(node) + 1 :]:
        if other.depth <= node.depth:
            break
        subtree.add(other.area.code)
    parents = [
        n
        for n in nodes
        if n.area.level.rank < node.area.level.rank
        and n.area.code not in subtree
        and n.area.code != code
        and n.area.valid_to is None
    ]
    return render(
        request,
        "admin_area.html",
        {
            "account": account,
            "active": "admin",
            "node": node,
            "children": [n for n in nodes if n.area.code in subtree and n.depth == node.depth + 1],
            "parents": parents,
            "levels": LEVEL_LABELS,
            "error": error,
        },
        status_code=status_code,
    )


@router.get(TREE + "/{code}", response_class=HTMLResponse)
def area_page(request: Request, session: SessionDep, account: SignedIn, code: str) -> Response:
    if refused := _refused(request, account):
        return refused
    return _area_page(request, session, account, code[:64])


@router.post(TREE + "/{code}", response_class=HTMLResponse)
def area_update(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    code: str,
    name: Text = "",
    parent: Text = "",
    stat_code: Text = "",
) -> Response:
    """Rename an area, move it under another (a hamlet to another ward...) and set its
    statistics code (checked against the national list for a province or ward/commune;
    blank: none)."""
    if refused := _refused(request, account, posted=True):
        return refused
    code = code[:64]
    try:
        before = stations.get_area(session, code)
        was = {"name": before.name, "parent_code": before.parent.code if before.parent else None,
               "stat_code": before.stat_code}  # fmt: skip
        data = AreaUpdate(
            name=name.strip(), parent_code=parent or None, stat_code=stat_code.strip() or None
        )
        area = stations.update_area(session, code, data)
    except ValidationError as exc:
        return _area_page(request, session, account, code, error=_field_error(exc), status_code=422)
    except DomainError as exc:
        session.rollback()
        return _area_page(request, session, account, code, error=_message(exc), status_code=422)
    after = data.model_dump(mode="json") | {"stat_code": area.stat_code}  # as stored
    commit_change(session, _actor(request, account), "area.update", "area", [area.code],
                  before=was, after=after)  # fmt: skip
    return RedirectResponse(f"{TREE}?da_luu={area.code}", status_code=status.HTTP_303_SEE_OTHER)


# --- reorganisations ------------------------------------------------------------------------


def _plan_rows(plan: reorg.Plan) -> list[dict[str, str]]:
    """The plan as the decision's rows (what the preview shows as the decision)."""
    rows = [
        {"action": "create", "new": u.code, "name": u.name, "level": u.level.value,
         "parent": u.parent or "", "stat_code": u.stat_code or ""}
        for u in plan.create
    ]  # fmt: skip
    for step in plan.steps:
        if step.kind == "merge":
            rows.extend({"action": "merge", "old": s, "new": step.into or ""} for s in step.sources)
        elif step.kind == "move":
            rows.append(
                {"action": "move", "new": step.into or "", "hamlets": ", ".join(step.hamlets)}
            )
        elif step.kind == "rename":
            rows.append({"action": "rename", "old": step.unit or "", "name": step.name or ""})
        else:
            rows.append({"action": "dissolve", "old": step.unit or "", "new": step.into or ""})
    return rows


def _reorg_page(
    request: Request,
    session: Session,
    account: Account,
    *,
    plan: reorg.Plan | None = None,
    preview: dict[str, Any] | None = None,
    errors: list[tuple[str, str]] | None = None,
    form: dict[str, Any] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    today = _today(request)
    records = reorg.list_plans(session)
    nodes = stations.area_tree(session)
    form = form or {}
    rows = form.get("rows") or []
    rows = rows + [{}] * max(0, ROWS - len(rows))
    return render(
        request,
        "admin_reorg.html",
        {
            "account": account,
            "active": "admin",
            "records": [
                {
                    "id": r.id,
                    "name": r.name,
                    "effective": r.effective,
                    "status": r.status.value,
                    "status_label": REORG_LABELS[r.status],
                    "created_by": r.created_by,
                    "undoable": r.status is ReorgStatus.SCHEDULED
                    or (r.status is ReorgStatus.APPLIED and today < r.effective),
                    "errors": r.undo.get("errors", []) if r.status is ReorgStatus.FAILED else [],
                }
                for r in reversed(records)
            ],
            "codes": [(n.area.code, n.area.name) for n in nodes],
            "actions": REORG_ACTION_LABELS,
            "levels": LEVEL_LABELS,
            "plan": plan,
            "plan_json": plan.model_dump_json() if plan is not None else "",
            "plan_rows": _plan_rows(plan) if plan is not None else [],
            "preview": preview,
            # a hamlet moves: which rules and accounts' scopes reach other stations
            "moves": plan is not None and any(step.kind == "move" for step in plan.steps),
            "role_labels": {role.value: label for role, label in ROLE_LABELS.items()},
            "future": plan is not None and plan.effective > today,
            "errors": errors or [],
            "form": {"name": "", "effective": "", **form, "rows": rows},
            "notice": notice,
            "today": today,
        },
        status_code=status_code,
    )


@router.get(REORG, response_class=HTMLResponse)
def reorg_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    da_ap_dung: str | None = None,
    da_len_lich: str | None = None,
    da_huy: str | None = None,
) -> Response:
    if refused := _refused(request, account):
        return refused
    notice = None
    if da_ap_dung:
        notice = "Đã áp dụng phương án sắp xếp."
    elif day := day_param(da_len_lich):
        notice = (
            f"Đã lên lịch: phương án được áp dụng tự động lúc 0 giờ ngày {day:%d/%m/%Y}; "
            "trước ngày đó có thể hủy."
        )
    elif da_huy:
        notice = "Đã hủy / hoàn tác phương án."
    return _reorg_page(request, session, account, notice=notice)


async def _decision_text(upload: UploadFile | None) -> tuple[str | None, str | None]:
    """The uploaded spreadsheet's text (CSV, UTF-8), or an error in Vietnamese."""
    if upload is None or not upload.filename:
        return None, None
    data = await upload.read(MAX_DECISION_BYTES + 1)
    if len(data) > MAX_DECISION_BYTES:
        return None, "Tệp quá lớn (tối đa 1 MB)."
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, "Tệp phải là bảng CSV mã hóa UTF-8 (lưu từ Excel: CSV UTF-8)."


@router.post(REORG + "/xem-truoc", response_class=HTMLResponse)
async def reorg_preview(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    name: Text = "",
    effective: Text = "",
    tep: Annotated[UploadFile | None, File()] = None,
    action: Column = None,
    old: Column = None,
    new: Column = None,
    unit_name: Column = None,
    level: Column = None,
    parent: Column = None,
    stat_code: Column = None,
    hamlets: Column = None,
) -> Response:
    """The decision from the uploaded spreadsheet, else from the form's rows: what it
    moves, or every error; nothing is changed."""
    if refused := _refused(request, account, posted=True):
        return refused
    columns = {"action": action, "old": old, "new": new, "name": unit_name, "level": level,
               "parent": parent, "stat_code": stat_code, "hamlets": hamlets}  # fmt: skip
    count = max((len(v) for v in columns.values() if v), default=0)
    rows = [
        {k: (v[i] if v and i < len(v) else "") for k, v in columns.items()} for i in range(count)
    ]
    form = {"name": name.strip(), "effective": effective.strip(), "rows": rows}
    text, upload_error = await _decision_text(tep)
    day = day_param(effective)
    errors: list[tuple[str, str]] = []
    if upload_error:
        errors.append(("", upload_error))
    if day is None:
        errors.append(("", "Chọn ngày có hiệu lực (ngày/tháng/năm)."))
    if errors or day is None:
        return _reorg_page(request, session, account, errors=errors, form=form, status_code=422)
    try:
        title = name.strip() or "Sắp xếp đơn vị hành chính"
        if text is not None:
            plan = reorg.plan_from_csv(text, name=title, effective=day)
        else:
            plan = reorg.plan_from_rows(rows, name=title, effective=day, first=1)
        preview = reorg.preview(session, plan, by=account.principal.username)
    except DomainError as exc:
        session.rollback()
        found = exc.errors if isinstance(exc, reorg.ReorgRefused) else [("", _message(exc))]
        return _reorg_page(request, session, account, errors=found, form=form, status_code=422)
    session.rollback()
    return _reorg_page(request, session, account, plan=plan, preview=preview, form=form)


@router.post(REORG, response_class=HTMLResponse)
def reorg_apply(
    request: Request, session: SessionDep, account: SignedIn, plan: PlanJson = ""
) -> Response:
    """Apply the previewed plan (its date has come) or schedule it for its date."""
    if refused := _refused(request, account, posted=True):
        return refused
    try:
        decision = reorg.Plan.model_validate_json(plan)
    except ValidationError:
        errors = [("", "Phương án không đọc được; hãy xem trước lại.")]
        return _reorg_page(request, session, account, errors=errors, status_code=422)
    try:
        record, after = reorg.submit(
            session, decision, by=account.principal.username, today=_today(request)
        )
    except DomainError as exc:
        session.rollback()
        found = exc.errors if isinstance(exc, reorg.ReorgRefused) else [("", _message(exc))]
        return _reorg_page(request, session, account, errors=found, status_code=422)
    applied = record.status is ReorgStatus.APPLIED
    commit_change(
        session,
        _actor(request, account),
        "area.reorganise" if applied else "area.reorganise.schedule",
        "area_reorganisation",
        [str(record.id)],
        after=after,
        plan=applied,  # a scheduled plan changes nothing until its date
    )
    where = "da_ap_dung=1" if applied else f"da_len_lich={decision.effective.isoformat()}"
    return RedirectResponse(f"{REORG}?{where}", status_code=status.HTTP_303_SEE_OTHER)


@router.post(REORG + "/{reorg_id}/hoan-tac", response_class=HTMLResponse)
def reorg_undo(request: Request, session: SessionDep, account: SignedIn, reorg_id: str) -> Response:
    """Undo an applied plan or cancel a scheduled one (before its effective date)."""
    if refused := _refused(request, account, posted=True):
        return refused
    record = (
        reorg.get_plan(session, int(reorg_id))
        if reorg_id.isdigit() and len(reorg_id) < 10
        else None
    )
    if record is None:
        return error_page(request, account, 404, "Không tìm thấy phương án này.")
    scheduled = record.status is ReorgStatus.SCHEDULED
    try:
        reorg.undo(session, record.id, today=_today(request))
    except DomainError as exc:
        session.rollback()
        return _reorg_page(request, session, account, errors=[("", _message(exc))], status_code=422)
    commit_change(
        session,
        _actor(request, account),
        "area.reorganise.cancel" if scheduled else "area.reorganise.undo",
        "area_reorganisation",
        [str(record.id)],
        plan=not scheduled,
    )
    return RedirectResponse(f"{REORG}?da_huy=1", status_code=status.HTTP_303_SEE_OTHER)
