"""Dependencies of the schedule routes: scoped loading (404 outside the caller's areas),
the service time zone, and access to the calendar feeds (a login or a signed link)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from kernel.dependencies import CurrentPrincipal, IdPath, SessionDep
from kernel.errors import Unauthenticated
from kernel.security import Permission, Principal
from schedules import service
from schedules.exceptions import ProgrammeNotFound, RuleNotFound, StreamSourceNotFound
from schedules.models import Programme, ScheduleRule, StreamSource

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


def get_tz(request: Request) -> tzinfo:
    """The service time zone (``Settings.timezone`` of the composition root)."""
    name = getattr(getattr(request.app.state, "settings", None), "timezone", DEFAULT_TIMEZONE)
    return ZoneInfo(str(name))


TzDep = Annotated[tzinfo, Depends(get_tz)]


def source_in_scope(
    source_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> StreamSource:
    principal.require(Permission.SCHEDULES_READ)
    source = service.get_source(session, source_id)
    if not service.reaches_owner(principal, source.owner_area_id):
        raise StreamSourceNotFound(source_id)
    return source


def programme_in_scope(
    programme_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Programme:
    principal.require(Permission.SCHEDULES_READ)
    programme = service.get_programme(session, programme_id)
    if not service.reaches_owner(principal, programme.owner_area_id):
        raise ProgrammeNotFound(programme_id)
    return programme


def rule_in_scope(
    rule_id: IdPath,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ScheduleRule:
    principal.require(Permission.SCHEDULES_READ)
    rule = service.get_rule(session, rule_id)
    if not service.reaches_owner(principal, rule.owner_area_id):
        raise RuleNotFound(rule_id)
    return rule


SourceDep = Annotated[StreamSource, Depends(source_in_scope)]
ProgrammeDep = Annotated[Programme, Depends(programme_in_scope)]
RuleDep = Annotated[ScheduleRule, Depends(rule_in_scope)]

Authenticator = Callable[[Request, Session], Principal]
"""``app.state.authenticate``: the composition root's login check (bearer or cookie)."""


def calendar_access(
    request: Request,
    session: SessionDep,
    exp: Annotated[str | None, Query(max_length=12, description="signed link: expiry")] = None,
    sig: Annotated[str | None, Query(max_length=64, description="signed link: HMAC")] = None,
) -> Principal | None:
    """``None`` for a signed link (checked by the route, which knows the canonical path);
    otherwise the logged-in principal, exactly as on the protected routes (401 without
    credentials)."""
    if exp is not None or sig is not None:
        return None
    authenticate: Authenticator | None = getattr(request.app.state, "authenticate", None)
    if authenticate is None:
        raise Unauthenticated("authentication required", message_vi="Cần đăng nhập")
    return authenticate(request, session)


CalendarAccess = Annotated[Principal | None, Depends(calendar_access)]
