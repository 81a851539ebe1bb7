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
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from kernel import audit
from kernel.bounds import MAX_INT32, MAX_INT64, DayOrInstant
from kernel.changes import Actor, commit_change
from kernel.db import READ_ONLY, WRITE_FIRST
from kernel.errors import InvalidInput, Unauthenticated
from kernel.local_time import SITE_TIMEZONE
from kernel.ownership import AreaDirectory
from kernel.security import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """The request's session.  A GET/HEAD only reads: its session begins a deferred
    transaction on SQLite, so a page or a list never waits for the ingest's writes
    (WAL readers see the last commit at once)."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    bind = factory.kw["bind"]
    if request.method in SAFE_METHODS:
        # bound to a read-only view of the engine: the connection is taken when the
        # first query runs (authentication), not here, so no request holds a pooled
        # connection across one more hop to the threadpool (a burst of more requests
        # than the pool holds - a hundred progress streams reconnecting - would wait
        # for connections held by requests that wait for threads)
        session = factory(bind=bind.execution_options(**{READ_ONLY: True}))
    else:
        # a person waits on it: its write goes before the ingest's next batch (SQLite)
        session = factory(bind=bind.execution_options(**{WRITE_FIRST: True}))
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


#: `writes_first` of each factory, made once
_WRITES_FIRST: WeakKeyDictionary[sessionmaker[Session], sessionmaker[Session]] = WeakKeyDictionary()


def writes_first(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """``factory`` whose sessions' writes go before the background writers waiting
    (SQLite: the ingest's next batch, a worker's job), as the request's own session's
    do: for the short sessions of long work a person waits on (an upload's or a CAP
    alert's audio, stored while a city-wide broadcast's acks come in)."""
    first = _WRITES_FIRST.get(factory)
    if first is None:
        bind = factory.kw["bind"]
        first = sessionmaker(
            **{**factory.kw, "bind": bind.execution_options(**{WRITE_FIRST: True})}
        )
        _WRITES_FIRST[factory] = first
    return first


def get_session_factory(request: Request) -> sessionmaker[Session]:
    """For long work (ingest, speech) that opens its own short sessions; a request that
    writes gets `writes_first` of it."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory if request.method in SAFE_METHODS else writes_first(factory)


SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


async def get_areas(request: Request) -> AreaDirectory:
    """The registry's area codes (``app.state.areas``, set by the composition root);
    ``async`` like `get_principal` below."""
    areas: AreaDirectory = request.app.state.areas
    return areas


AreasDep = Annotated[AreaDirectory, Depends(get_areas)]


def principal_of(request: Request) -> Principal:
    """The principal authentication put on the request (401 without one)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication required", message_vi="Cần đăng nhập")
    return principal


# The dependencies that only read the request or build a small object are ``async``: FastAPI
# runs them on the event loop, where a plain ``def`` costs a hop to the thread pool and back
# (every request that sends a broadcast resolves several of them before its route runs).


async def get_principal(request: Request) -> Principal:
    return principal_of(request)


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


async def get_audit(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> AuditTrail:
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


def site_zone(request: Request) -> ZoneInfo:
    """The site's time zone (the composition root's settings, when it has them)."""
    settings = getattr(request.app.state, "settings", None)
    return ZoneInfo(getattr(settings, "timezone", SITE_TIMEZONE))


def day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone)


def time_range(
    request: Request,
    since: Annotated[
        DayOrInstant | None,
        Query(
            alias="from",
            description="inclusive: a timestamp with its offset, or a plain date "
            "(2026-12-01: from the start of that day, site time)",
        ),
    ] = None,
    until: Annotated[
        DayOrInstant | None,
        Query(
            alias="to",
            description="exclusive timestamp, or a plain date (2026-12-31: up to the end "
            "of that day, site time)",
        ),
    ] = None,
) -> TimeRange:
    zone = site_zone(request)
    bounds: dict[str, dt.datetime | None] = {}
    for name, value in (("from", since), ("to", until)):
        if value is None or isinstance(value, dt.datetime):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(
                    f"'{name}' needs a time zone offset (e.g. 2026-11-26T05:00:00+07:00) "
                    "or is a plain date (2026-11-26)",
                    field=("query", name),
                    message_vi=f"Thời điểm '{name}' cần có múi giờ (ví dụ "
                    "2026-11-26T05:00:00+07:00) hoặc chỉ ghi ngày (2026-11-26)",
                )
            bounds[name] = value
        else:  # a plain date: the whole day; 'to' includes the day it names
            bounds[name] = day_start(value + dt.timedelta(days=1 if name == "to" else 0), zone)
    start, end = bounds["from"], bounds["to"]
    if start is not None and end is not None and end <= start:
        raise InvalidInput(
            "'to' must be after 'from'",
            field=("query", "to"),
            message_vi="Thời điểm kết thúc ('to') phải sau thời điểm bắt đầu ('from')",
        )
    return TimeRange(since=start, until=end)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]


def csv_response(body: str, filename: str) -> Response:
    """A CSV download (``body`` as written for spreadsheets: UTF-8, BOM, CRLF)."""
    return Response(
        content=body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
