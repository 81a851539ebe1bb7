"""FastAPI dependencies every domain router uses: the request's session (and the
factory long work opens its own sessions from), the authenticated principal, the audit
trail with the change helper, and the registry's area directory.

The composition root (`broadcaster.app`) puts the session factory on ``app.state`` and
runs its authentication dependency before every protected route; it stores the
`Principal` on ``request.state.principal``, which `get_principal` reads here.  Domain
routers therefore never import `broadcaster`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, Unpack

from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from kernel import audit
from kernel.bounds import MAX_INT32, MAX_INT64, BoundedDatetime
from kernel.changes import Actor, commit_change
from kernel.db import READ_ONLY
from kernel.errors import InvalidInput, Unauthenticated
from kernel.ownership import AreaDirectory
from kernel.security import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """The request's session.  A GET/HEAD only reads: its session begins a deferred
    transaction on SQLite, so a page or a list never waits for the ingest's writes
    (WAL readers see the last commit at once)."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    if request.method in SAFE_METHODS:
        session.connection(execution_options={READ_ONLY: True})
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_session_factory(request: Request) -> sessionmaker[Session]:
    """For long work (ingest, speech) that opens its own short sessions."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


def get_areas(request: Request) -> AreaDirectory:
    """The registry's area codes (``app.state.areas``, set by the composition root)."""
    areas: AreaDirectory = request.app.state.areas
    return areas


AreasDep = Annotated[AreaDirectory, Depends(get_areas)]


def get_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication required", message_vi="Cần đăng nhập")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class States(TypedDict, total=False):
    """What an audit entry says of its targets: their state before and after."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditTrail:
    """Records audit entries in the request's session (committed with the change)."""

    def __init__(self, session: Session, principal: Principal, ip: str | None) -> None:
        self.session = session
        self.principal = principal
        self.ip = ip

    @property
    def actor(self) -> Actor:
        return Actor(principal=self.principal, ip=self.ip)

    def commit_change(
        self,
        action: str,
        target_type: str,
        targets: Sequence[str] = (),
        *,
        plan: bool = True,
        **states: Unpack[States],
    ) -> None:
        """The change helper (`kernel.changes.commit_change`) for this request."""
        commit_change(self.session, self.actor, action, target_type, targets, plan=plan, **states)

    def record(
        self, action: str, target_type: str, targets: Sequence[str] = (), **states: Unpack[States]
    ) -> None:
        """An audit entry without a plan signal (accounts, tokens, broadcasts, commands)."""
        audit.record(
            self.session,
            actor=self.principal,
            action=action,
            target_type=target_type,
            targets=targets,
            ip=self.ip,
            **states,
        )


def get_audit(request: Request, session: SessionDep, principal: CurrentPrincipal) -> AuditTrail:
    return AuditTrail(session, principal, client_ip(request))


Audit = Annotated[AuditTrail, Depends(get_audit)]


#: A row id in a path (1 .. 2^31-1, the ``integer`` primary keys: a larger one is a
#: 422, never a database error).
IdPath = Annotated[int, Path(ge=1, le=MAX_INT32)]


@dataclass(frozen=True, slots=True)
class Page:
    """`limit`/`offset` of a list request."""

    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=1000, description="at most 1000")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(page_params)]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``from``/``to`` query parameters: aware timestamps, ``to`` after ``from``."""

    since: dt.datetime | None
    until: dt.datetime | None


def time_range(
    since: Annotated[BoundedDatetime | None, Query(alias="from", description="inclusive")] = None,
    until: Annotated[BoundedDatetime | None, Query(alias="to", description="exclusive")] = None,
) -> TimeRange:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"'{name}' needs a time zone offset (e.g. 2026-11-26T05:00:00+07:00)",
                field=("query", name),
            )
    if since is not None and until is not None and until <= since:
        raise InvalidInput("'to' must be after 'from'", field=("query", "to"))
    return TimeRange(since=since, until=until)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]


def csv_response(body: str, filename: str) -> Response:
    """A CSV download (``body`` as written for spreadsheets: UTF-8, BOM, CRLF)."""
    return Response(
        content=body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
