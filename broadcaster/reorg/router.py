"""JSON API of administrative reorganisations (administrators, city-wide): list,
preview, apply (now, or scheduled for its effective date), undo or cancel (before the
effective date)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request

from broadcaster.reorg import service
from kernel.dependencies import Audit, CurrentPrincipal, IdPath, SessionDep
from kernel.errors import PermissionDeniedError
from kernel.security import Permission, Principal
from stations.models import Reorganisation, ReorgStatus

router = APIRouter(prefix="/api/v1/areas/reorganisations", tags=["areas"])


def _require_admin(principal: Principal) -> None:
    principal.require(Permission.AREAS_WRITE)
    principal.require(Permission.USERS_MANAGE)  # it moves accounts' scopes
    if not principal.city_wide:
        raise PermissionDeniedError(
            "only city-wide administrators may reorganise areas",
            message_vi="Chỉ quản trị viên toàn địa bàn được sắp xếp đơn vị hành chính",
        )


def _read(record: Reorganisation) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "effective": record.effective.isoformat(),
        "status": record.status.value,
        "created_by": record.created_by,
        "plan": record.plan,
    }


@router.get("")
def list_reorganisations(session: SessionDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    _require_admin(principal)
    return [_read(r) for r in service.list_plans(session)]


@router.post("/preview")
def preview(plan: service.Plan, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """What applying `plan` would move; nothing is changed.  A bad plan: 422, every error."""
    _require_admin(principal)
    return service.preview(session, plan, by=principal.username)


def _today(request: Request) -> dt.date:
    return dt.datetime.now(ZoneInfo(request.app.state.settings.timezone)).date()


@router.post("", status_code=201)
def apply(
    plan: service.Plan,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> dict[str, Any]:
    """Apply the plan now if its effective date has come, else schedule it (status
    ``scheduled``: the active worker applies it when the date arrives, local midnight;
    until then ``undo`` cancels it)."""
    _require_admin(principal)
    record, after = service.submit(session, plan, by=principal.username, today=_today(request))
    action = (
        "area.reorganise" if record.status is ReorgStatus.APPLIED else "area.reorganise.schedule"
    )
    # a scheduled plan changes nothing yet
    audit.commit_change(
        action,
        "area_reorganisation",
        [str(record.id)],
        after=after,
        plan=record.status is ReorgStatus.APPLIED,
    )
    return _read(record) | {"effect": after}


@router.post("/{reorganisation_id}/undo")
def undo(
    reorganisation_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> dict[str, Any]:
    _require_admin(principal)
    scheduled = _status(session, reorganisation_id) is ReorgStatus.SCHEDULED
    record = service.undo(session, reorganisation_id, today=_today(request))
    audit.commit_change(
        "area.reorganise.cancel" if scheduled else "area.reorganise.undo",
        "area_reorganisation",
        [str(record.id)],
        plan=not scheduled,
    )
    return _read(record)


def _status(session: SessionDep, reorganisation_id: int) -> ReorgStatus | None:
    found = service.get_plan(session, reorganisation_id)
    return found.status if found is not None else None
