"""Station MQTT credentials API: issue (once), rotate, show status, revoke.

``POST /api/v1/stations/{sid}/credentials`` needs ``stations:write`` on the station's
area.  It writes the credential row and the audit entry (flushed), provisions the
broker, and only then commits: a broker failure (503) leaves the database untouched.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from broadcaster.broker import provisioning
from broadcaster.broker.dependencies import DynsecDep, SettingsDep, require_dynsec
from broadcaster.broker.models import StationCredential
from broadcaster.broker.schemas import CredentialStatus, IssuedCredentials
from broadcaster.broker.service import server_account, topics
from kernel.dependencies import Audit, CurrentPrincipal, SessionDep
from kernel.security import Permission
from stations.dependencies import StationDep
from stations.models import Station

router = APIRouter(prefix="/api/v1", tags=["stations"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BROKER_ERRORS: dict[int | str, dict[str, object]] = {
    503: {"description": "the broker is unreachable or refused the change; nothing was saved"},
    409: {"description": "broker credentials are switched off (BROADCASTER_MQTT_DYNSEC)"},
}


def _status(station: Station, record: StationCredential | None) -> CredentialStatus:
    return CredentialStatus(
        sid=station.sid,
        username=station.sid,
        client_id=provisioning.station_client_id(station.sid),
        issued=record is not None,
        created_at=record.created_at if record else None,
        created_by=record.created_by if record else None,
        rotated_at=record.rotated_at if record else None,
        rotated_by=record.rotated_by if record else None,
        rotations=record.rotations if record else 0,
        enabled=station.enabled,
    )


@router.get("/stations/{sid}/credentials")
def get_credentials(
    station: StationDep, session: SessionDep, principal: CurrentPrincipal
) -> CredentialStatus:
    """Whether the station has MQTT credentials and when they were issued or rotated."""
    principal.require(Permission.STATIONS_READ)
    return _status(station, provisioning.credential_of(session, station))


@router.post(
    "/stations/{sid}/credentials",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "rotated: the previous secret no longer works"},
        **_BROKER_ERRORS,
    },
)
def issue_credentials(
    station: StationDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    settings: SettingsDep,
    dynsec: DynsecDep,
    response: Response,
) -> IssuedCredentials:
    """Issue the station's MQTT secret, or rotate it; the secret is shown only here, once."""
    principal.require_area(Permission.STATIONS_WRITE, station.area_id)
    require_dynsec(settings)
    rotating = provisioning.credential_of(session, station) is not None
    # Database first (flushed, not committed), then the broker, then commit.
    audit.record(
        "station.credentials.rotate" if rotating else "station.credentials.issue",
        "station",
        [station.sid],
        after={"username": station.sid, "enabled": station.enabled},
    )
    (issued,) = provisioning.issue_credentials(
        session,
        dynsec,
        [station],
        topics=topics(settings),
        issued_by=principal.username,
        server_account=server_account(settings),
    )
    session.commit()
    response.headers.update(_NO_STORE)
    if issued.rotated:
        response.status_code = status.HTTP_200_OK
    return IssuedCredentials(
        sid=station.sid,
        username=station.sid,
        password=issued.password,
        client_id=provisioning.station_client_id(station.sid),
        mqtt_url=settings.mqtt_station_url,
        rotated=issued.rotated,
    )


@router.delete(
    "/stations/{sid}/credentials",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_BROKER_ERRORS,
)
def revoke_credentials(
    station: StationDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: Audit,
    settings: SettingsDep,
    dynsec: DynsecDep,
) -> Response:
    """Delete the station's MQTT account (it is disconnected and cannot come back)."""
    principal.require_area(Permission.STATIONS_WRITE, station.area_id)
    require_dynsec(settings)
    audit.record("station.credentials.revoke", "station", [station.sid])
    provisioning.revoke_credentials(session, dynsec, station)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
