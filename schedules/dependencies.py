"""Dependencies of the schedule routes: scoped loading (404 outside the caller's areas),
the service time zone, and access to the calendar feeds (a login or a signed link)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from kernel.dependencies import CurrentPrincipal, IdPath, SessionDep, site_zone
from kernel.errors import NotFoundError, Unauthenticated
from kernel.security import Permission, Principal
from schedules.exceptions import ProgrammeNotFound, RuleNotFound, StreamSourceNotFound
from schedules.models import Programme, ScheduleRule, StreamSource
from schedules.service import programmes, rules, sources
from schedules.service.scope import reaches_owner


def get_tz(request: Request) -> tzinfo:
    """The service time zone (``Settings.timezone`` of the composition root)."""
    return site_zone(request)


TzDep = Annotated[tzinfo, Depends(get_tz)]


Owned = TypeVar("Owned", StreamSource, Programme, ScheduleRule)


def _seen(principal: Principal, found: Owned, missing: NotFoundError) -> Owned:
    """`found`, if the caller's areas reach it; `missing` (a 404) otherwise."""
    if not reaches_owner(principal, found.owner_area_id):
        raise missing
    return found


def source_in_scope(
    source_id: IdPath, session: SessionDep, caller: CurrentPrincipal
) -> StreamSource:
    caller.require(Permission.SCHEDULES_READ)
    return _seen(caller, sources.get_source(session, source_id), StreamSourceNotFound(source_id))


def programme_in_scope(
    programme_id: IdPath, session: SessionDep, caller: CurrentPrincipal
) -> Programme:
    caller.require(Permission.SCHEDULES_READ)
    found = programmes.get_programme(session, programme_id)
    return _seen(caller, found, ProgrammeNotFound(programme_id))


def rule_in_scope(rule_id: IdPath, session: SessionDep, caller: CurrentPrincipal) -> ScheduleRule:
    caller.require(Permission.SCHEDULES_READ)
    return _seen(caller, rules.get_rule(session, rule_id), RuleNotFound(rule_id))


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
