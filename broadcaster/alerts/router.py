"""CAP ingest (authorised sources, by integration token), alert management and the CAP
feed of our own emergencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from audio_library.dependencies import LibraryDep
from audio_library.service import MediaLibrary
from broadcaster.alerts import service
from broadcaster.alerts.models import Alert
from broadcaster.alerts.schemas import (
    AlertRead,
    IngestResult,
    SourceCreate,
    SourceCreated,
    SourceRead,
    SourceUpdate,
)
from broadcaster.alerts.vocabulary import AlertOutcome
from broadcaster.db import read_session
from broadcaster.dispatch.wake import commit_following, wake, write_staged
from kernel import audit as audit_log
from kernel.db import commit_retrying
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    client_ip,
    writes_first,
)
from kernel.errors import DomainError
from kernel.security import Permission
from stations.schemas import ListOf

CAP_MEDIA_TYPE = "application/cap+xml"
TOKEN_HEADER = "X-Alert-Token"  # noqa: S105 - a header name

#: management and export: behind the login
router = APIRouter(prefix="/api/v1", tags=["alerts"])
#: ingest: a source's integration token, no login
public_router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


def token_authenticator(
    factory: sessionmaker[Session],
) -> Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[bool]]:
    """For the body-limit middleware: does a request carry a source's alert token?  (A CAP
    alert may be larger than what an anonymous request may send.)"""
    header = TOKEN_HEADER.lower().encode()

    def valid(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        token = next((v.decode("latin-1") for n, v in headers if n == header), None)
        if not token:
            return False
        with read_session(factory) as session:
            return service.known_token(session, token.strip())

    async def check(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        return await run_in_threadpool(valid, headers)

    return check


def _wake(request: Request) -> None:
    wake(request.app)


def _air(
    request: Request, session: Session, library: MediaLibrary, plan: service.AirPlan
) -> int | None:
    """Air an approved alert; commits.  A spoken emergency whose stations take a play
    before its audio is sent at once and its speech follows (`service.air_before_speech`);
    any other is spoken or its audio processed first, holding no transaction."""
    # its audio's rows are written as the operator's are, before the ingest's next batch
    factory = writes_first(request.app.state.sessionmaker)
    settings = request.app.state.settings
    sound = {
        "emergency_volume": settings.emergency_volume,
        "attention": settings.emergency_attention,
    }
    following = None
    try:
        aired = (
            service.air_before_speech(session, library, plan, **sound)
            if settings.emergency_speech_follows
            else None
        )
        if aired is not None:
            broadcast, following = aired
        else:
            session.rollback()  # end the reads: nothing waits on the speech
            broadcast = service.air(session, factory, library, plan, **sound)
    except DomainError as exc:
        session.rollback()
        service.air_failed(session, plan.alert_id, exc)
        session.commit()
        raise
    audit_log.record(
        session,
        actor=None,
        actor_name=plan.approved_by or "cap",
        action="alert.air",
        target_type="alert",
        targets=[str(plan.alert_id), str(broadcast.id)],
        ip=client_ip(request),
        after={"broadcast_id": broadcast.id, "stations": len(plan.sids), "tier": plan.tier},
    )
    session.commit()
    _wake(request)
    write_staged(request.app, session)
    if following is not None:
        # the play is out; its audio follows (if the text cannot be spoken, the stop of
        # the broadcast and the alert waiting again are committed and the error answered)
        commit_following(
            request.app,
            session,
            lambda: service.follow_with_speech(session, library, plan, following),
        )
    return broadcast.id


async def _raw_body(request: Request) -> bytes:
    """The document as sent (read here, not by FastAPI's body validation, so a request
    without a valid token is a 401 whatever its body)."""
    return await request.body()


@public_router.post(
    "/cap",
    status_code=status.HTTP_202_ACCEPTED,
    responses={401: {}, 403: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {CAP_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def ingest_cap(
    request: Request,
    session: SessionDep,
    library: LibraryDep,
    data: Annotated[bytes, Depends(_raw_body)],
    token: Annotated[str | None, Header(alias=TOKEN_HEADER)] = None,
) -> IngestResult:
    """Take in one CAP 1.2 alert from an authorised source (header ``X-Alert-Token``).

    Refused (401/403/409/422, recorded, nothing airs): unknown source or bad token, a
    missing or bad XML signature from a source that signs (403), not valid CAP 1.2, a
    bad area, expired, already received.  Accepted (202): see
    ``outcome`` — ``aired``, ``held`` (for an approver), ``not_aired`` (Test, Exercise,
    Draft, Cancel...), ``no_stations`` (the area holds none of our stations)."""

    def receive() -> service.Ingested:
        result = service.ingest(session, token, data)
        alert = result.alert
        audit_log.record(
            session,
            actor=None,
            actor_name=f"cap-source:{alert.source_id}" if alert.source_id else "cap-unknown",
            action="alert.receive",
            target_type="alert",
            targets=[str(alert.id), *(str(b) for b in result.stopped)],
            ip=client_ip(request),
            after={
                "identifier": alert.identifier,
                "outcome": alert.outcome.value,
                "reason": alert.reason,
                "stations": len(alert.stations),
            },
        )
        return result

    # a Cancel stops the running broadcast: on PostgreSQL a deadlock victim of the ack
    # ingest updating the same targets, run again (kernel.db.commit_retrying)
    result = commit_retrying(session, receive)
    alert = result.alert
    if result.refusal is not None:
        raise result.refusal
    if result.stopped:
        _wake(request)
    broadcast_id = _air(request, session, library, result.plan) if result.plan else None
    return IngestResult(
        alert_id=alert.id,
        outcome=AlertOutcome.AIRED.value if broadcast_id else alert.outcome.value,
        aired=broadcast_id is not None,
        broadcast_id=broadcast_id,
        station_count=len(alert.stations),
        no_stations=alert.no_stations,
        stopped_broadcasts=result.stopped,
        message=result.message,
        message_vi=result.message_vi,
    )


# --- sources ---------------------------------------------------------------------------


@router.post("/alert-sources", status_code=status.HTTP_201_CREATED)
def create_source(
    data: SourceCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> SourceCreated:
    """A new authorised source; its token is shown once."""
    principal.require(Permission.USERS_MANAGE)
    source, token = service.create_source(
        session,
        name=data.name,
        auto_air=data.auto_air,
        created_by=principal.username,
        certificate=data.certificate or None,
    )
    audit.record(
        "alert_source.create",
        "alert_source",
        [str(source.id)],
        after=data.model_dump(exclude={"certificate"}) | {"signed": bool(data.certificate)},
    )
    session.commit()
    return SourceCreated(**SourceRead.model_validate(source).model_dump(), token=token)


@router.get("/alert-sources")
def list_sources(session: SessionDep, principal: CurrentPrincipal) -> list[SourceRead]:
    principal.require(Permission.USERS_MANAGE)
    return [SourceRead.model_validate(s) for s in service.list_sources(session)]


@router.patch("/alert-sources/{source_id}")
def update_source(
    source_id: IdPath,
    data: SourceUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> SourceRead:
    principal.require(Permission.USERS_MANAGE)
    source = service.update_source(
        session,
        source_id,
        auto_air=data.auto_air,
        enabled=data.enabled,
        certificate=data.certificate,
    )
    changes = data.model_dump(exclude_none=True, exclude={"certificate"})
    if data.certificate is not None:
        changes["signed"] = bool(data.certificate)
    audit.record("alert_source.update", "alert_source", [str(source.id)], after=changes)
    session.commit()
    return SourceRead.model_validate(source)


# --- alerts ----------------------------------------------------------------------------


def _read(alert: Alert) -> AlertRead:
    return AlertRead.model_validate(alert)


@router.get("/alerts", response_model=ListOf[AlertRead])
def list_alerts(
    session: SessionDep, principal: CurrentPrincipal, page: PageDep
) -> ListOf[AlertRead]:
    principal.require(Permission.STATIONS_READ)
    items, total = service.list_alerts(session, limit=page.limit, offset=page.offset)
    return ListOf(items=[_read(a) for a in items], total=total)


@router.get("/alerts/feed", response_class=Response)
def alerts_feed(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Our own emergencies as an Atom feed of CAP 1.2 alerts (one per entry)."""
    principal.require(Permission.STATIONS_READ)
    body = service.feed(session, request.app.state.settings.public_base_url)
    return Response(body, media_type="application/atom+xml")


@router.get("/alerts/export/{broadcast_id}", response_class=Response)
def export_alert(
    broadcast_id: IdPath, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One of our emergency broadcasts as a CAP 1.2 alert (a Cancel once stopped)."""
    principal.require(Permission.STATIONS_READ)
    body = service.export_one(session, broadcast_id, request.app.state.settings.public_base_url)
    return Response(body, media_type=CAP_MEDIA_TYPE)


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: IdPath, session: SessionDep, principal: CurrentPrincipal) -> AlertRead:
    """One received alert: its outcome and reason, matched stations, approval, broadcast."""
    principal.require(Permission.STATIONS_READ)
    alert = service.get_alert(session, alert_id)
    return _read(alert)


@router.post("/alerts/{alert_id}/approve")
def approve_alert(
    alert_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
    audit: Audit,
) -> AlertRead:
    """Approve a held alert: it airs at once."""
    plan = service.approve(session, alert_id, principal)
    audit.record("alert.approve", "alert", [str(alert_id)])
    session.commit()
    _air(request, session, library, plan)
    return _read(service.get_alert(session, alert_id))


@router.post("/alerts/{alert_id}/reject")
def reject_alert(
    alert_id: IdPath, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> AlertRead:
    alert = service.reject(session, alert_id, principal)
    audit.record("alert.reject", "alert", [str(alert_id)])
    session.commit()
    return _read(alert)


__all__ = ["public_router", "router"]
