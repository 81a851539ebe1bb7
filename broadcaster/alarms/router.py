"""The alarms API: list and acknowledge alarms, thresholds, subscriptions, and the
stations' availability from their connection history."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from broadcaster.alarms import rules, service
from broadcaster.alarms.schemas import (
    AcknowledgeBody,
    AlarmQuery,
    AlarmRead,
    AvailabilityRead,
    DeliveryRead,
    StationThresholds,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
    ThresholdsBody,
    ThresholdSpecRead,
    ThresholdsRead,
)
from broadcaster.reorg import service as reorg
from kernel.db import utcnow
from kernel.dependencies import (
    Audit,
    CurrentPrincipal,
    IdPath,
    PageDep,
    SessionDep,
    TimeRangeDep,
    csv_response,
)
from kernel.errors import PermissionDeniedError
from kernel.security import Permission, Principal
from stations import service as stations
from stations.dependencies import StationDep
from stations.exceptions import AreaNotFound
from stations.models import StationKind
from stations.schemas import ListOf

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

State = Literal["open", "raised", "acknowledged", "cleared"]


def _require_city_wide(principal: Principal) -> None:
    if not principal.city_wide:
        raise PermissionDeniedError(
            "only city-wide accounts may change settings for every station",
            message_vi="Chỉ tài khoản cấp thành phố được thay đổi thiết lập chung",
        )


# --- thresholds ------------------------------------------------------------------------


@router.get("/thresholds")
def get_thresholds(session: SessionDep, principal: CurrentPrincipal) -> ThresholdsRead:
    """Every threshold with its range, and per station kind the defaults, overrides and
    effective values."""
    principal.require(Permission.STATIONS_READ)
    specs = [
        ThresholdSpecRead(
            key=s.key, label_vi=s.label_vi, unit=s.unit, minimum=s.minimum, maximum=s.maximum
        )
        for s in rules.THRESHOLDS.values()
    ]
    return ThresholdsRead.model_validate(
        {"specs": specs, "kinds": service.kind_thresholds(session)}
    )


@router.put("/thresholds/kinds/{kind}")
def put_kind_thresholds(
    kind: StationKind,
    body: ThresholdsBody,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> ThresholdsRead:
    """Override thresholds for every station of a kind (``null`` removes an override).
    Out of range: 422 with ``message_vi``."""
    principal.require(Permission.STATIONS_WRITE)
    _require_city_wide(principal)
    merged = service.set_kind_thresholds(session, kind, body.thresholds)
    audit.commit_change(
        "alarm_thresholds.update", "station_kind", [kind.value], after=merged, plan=False
    )
    return get_thresholds(session, principal)


@router.get("/thresholds/stations/{sid}")
def get_station_thresholds(
    station: StationDep, session: SessionDep, principal: CurrentPrincipal
) -> StationThresholds:
    principal.require(Permission.STATIONS_READ)
    return StationThresholds.model_validate(service.station_thresholds(session, station))


@router.put("/thresholds/stations/{sid}")
def put_station_thresholds(
    station: StationDep,
    body: ThresholdsBody,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> StationThresholds:
    """Override thresholds for one station (``null`` removes an override)."""
    principal.require_area(Permission.STATIONS_WRITE, station.area_id)
    merged = service.set_station_thresholds(session, station, body.thresholds)
    audit.commit_change(
        "alarm_thresholds.update", "station", [station.sid], after=merged, plan=False
    )
    return StationThresholds.model_validate(service.station_thresholds(session, station))


# --- availability ----------------------------------------------------------------------


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


@router.get(
    "/availability",
    response_model=list[AvailabilityRead],
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
def availability(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    period: TimeRangeDep,
    by: Literal["station", "area"] = "station",
    format_: Annotated[Literal["json", "csv", "xlsx"], Query(alias="format")] = "json",
    units: Annotated[
        str, Query(pattern=r"^(today|then|\d{4}-\d{2}-\d{2})$", max_length=10)
    ] = "today",
) -> Response:
    """Share of the period each station (or ward/commune, the mean of its stations) was
    connected, from the connection history (default: the last 7 days); JSON, or CSV and
    XLSX with Vietnamese headers.

    By ward/commune after a reorganisation: ``units=today`` (today's units), ``then``
    (each part of the period read by the units of its time) or a date (the units of
    that day: the old units before the change, the new ones after)."""
    principal.require(Permission.STATIONS_READ)
    until = period.until or utcnow()
    since = period.since or until - dt.timedelta(days=7)
    chosen = reorg.parse_units(units)
    tz = _tz(request)
    found = service.availability(
        session, since, until, by=by, scope=principal.scope, units=chosen, tz=tz
    )
    if format_ == "json":
        rows = [AvailabilityRead.model_validate(r, from_attributes=True) for r in found]
        return JSONResponse([r.model_dump() for r in rows])
    name = f"ty-le-san-sang-{by}-{since.date()}-{until.date()}"
    if format_ == "csv":
        return csv_response(service.availability_csv(found, by=by), f"{name}.csv")
    local = since.astimezone(tz), until.astimezone(tz)
    title = f"Tỷ lệ sẵn sàng từ {local[0]:%d/%m/%Y %H:%M} đến {local[1]:%d/%m/%Y %H:%M}"
    return Response(
        service.availability_xlsx(found, by=by, title=title),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


# --- subscriptions ---------------------------------------------------------------------


@router.get("/subscriptions")
def list_subscriptions(session: SessionDep, principal: CurrentPrincipal) -> list[SubscriptionRead]:
    principal.require(Permission.STATIONS_READ)
    return [
        SubscriptionRead.model_validate(s)
        for s in service.list_subscriptions(session, principal.scope, city_wide=principal.city_wide)
    ]


@router.post("/subscriptions", status_code=201)
def create_subscription(
    body: SubscriptionCreate, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> SubscriptionCreated:
    """Notify an e-mail address or a webhook of alarms at or above ``min_severity`` in an
    area (and below it).  A webhook's HMAC key is generated unless given, and shown once."""
    principal.require(Permission.STATIONS_WRITE)
    area_id = None
    if body.area_code is None:
        _require_city_wide(principal)
    else:
        area = stations.get_area(session, body.area_code)
        if not principal.reaches(area.id):
            raise AreaNotFound(body.area_code)
        area_id = area.id
    fields = body.model_dump(exclude={"area_code"})
    sub = service.create_subscription(session, area_id=area_id, **fields)
    read = SubscriptionRead.model_validate(sub)
    audit.commit_change(
        "alarm_subscription.create",
        "alarm_subscription",
        [str(sub.id)],
        after=read.model_dump(mode="json"),
        plan=False,
    )
    return SubscriptionCreated(**read.model_dump(), secret=sub.secret)


@router.delete("/subscriptions/{subscription_id}", status_code=204, response_model=None)
def delete_subscription(
    subscription_id: IdPath, session: SessionDep, principal: CurrentPrincipal, audit: Audit
) -> None:
    principal.require(Permission.STATIONS_WRITE)
    sub = service.get_subscription(
        session, subscription_id, principal.scope, city_wide=principal.city_wide
    )
    service.delete_subscription(session, sub)
    audit.commit_change(
        "alarm_subscription.delete", "alarm_subscription", [str(subscription_id)], plan=False
    )


# --- alarms ----------------------------------------------------------------------------


@router.get("")
def list_alarms(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    period: TimeRangeDep,
    query: Annotated[AlarmQuery, Query()],
) -> ListOf[AlarmRead]:
    """Alarms in the caller's areas: open ones first (critical first), newest first.
    ``state=open`` is raised or acknowledged; ``from``/``to`` bound the raise time."""
    principal.require(Permission.STATIONS_READ)
    flt = service.AlarmFilter(
        **query.model_dump(), since=period.since, until=period.until, tz=_tz(request)
    )
    rows, total = service.list_alarms(
        session, flt, scope=principal.scope, limit=page.limit, offset=page.offset
    )
    return ListOf[AlarmRead](items=[AlarmRead.model_validate(a) for a in rows], total=total)


@router.get("/{alarm_id}")
def get_alarm(alarm_id: IdPath, session: SessionDep, principal: CurrentPrincipal) -> AlarmRead:
    principal.require(Permission.STATIONS_READ)
    alarm = service.get_alarm(session, alarm_id, principal.scope)
    return AlarmRead.model_validate(alarm)


@router.post("/{alarm_id}/acknowledge")
def acknowledge(
    alarm_id: IdPath,
    body: AcknowledgeBody,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
) -> AlarmRead:
    """A technician takes the alarm on (who, with a note); it stays open until the
    condition clears.  A cleared alarm: 409."""
    principal.require(Permission.STATIONS_COMMAND)
    alarm = service.get_alarm(session, alarm_id, principal.scope)
    service.acknowledge(session, alarm, by=principal.username, note=body.note, now=utcnow())
    read = AlarmRead.model_validate(alarm)
    audit.commit_change(
        "alarm.acknowledge", "alarm", [str(alarm_id)], after={"note": alarm.ack_note}, plan=False
    )
    return read


@router.get("/{alarm_id}/deliveries")
def alarm_deliveries(
    alarm_id: IdPath, session: SessionDep, principal: CurrentPrincipal
) -> list[DeliveryRead]:
    """Every notification of this alarm and its fate (sent, pending, failed, dropped)."""
    principal.require(Permission.STATIONS_READ)
    alarm = service.get_alarm(session, alarm_id, principal.scope)
    return [DeliveryRead.model_validate(d) for d in service.deliveries(session, alarm_id=alarm.id)]
