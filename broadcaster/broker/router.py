"""Station MQTT credentials API: issue (once), rotate, show status, revoke.

``POST /api/v1/stations/{sid}/credentials`` needs ``stations:write`` on the station's
area.  It writes the credential row and the audit entry (flushed), provisions the
broker, and only then commits: a broker failure (503) leaves the database untouched.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

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


@dataclass
class CredentialChange:
    """A change to one station's broker account: by someone who may write the station
    (403 otherwise), with the broker's accounts switched on (409 otherwise)."""

    station: StationDep
    session: SessionDep
    principal: CurrentPrincipal
    audit: Audit
    settings: SettingsDep
    dynsec: DynsecDep

    def __post_init__(self) -> None:
        self.principal.require_area(Permission.STATIONS_WRITE, self.station.area_id)
        require_dynsec(self.settings)


CredentialChangeDep = Annotated[CredentialChange, Depends()]


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
def issue_credentials(change: CredentialChangeDep, response: Response) -> IssuedCredentials:
    """Issue the station's MQTT secret, or rotate it; the secret is shown only here, once."""
    station, session, settings = change.station, change.session, change.settings
    rotating = provisioning.credential_of(session, station) is not None
    # Database first (flushed, not committed), then the broker, then commit.
    change.audit.record(
        "station.credentials.rotate" if rotating else "station.credentials.issue",
        "station",
        [station.sid],
        after={"username": station.sid, "enabled": station.enabled},
    )
    (issued,) = provisioning.issue_credentials(
        session,
        change.dynsec,
        [station],
        topics=topics(settings),
        issued_by=change.principal.username,
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
def revoke_credentials(change: CredentialChangeDep) -> Response:
    """Delete the station's MQTT account (it is disconnected and cannot come back)."""
    change.audit.record("station.credentials.revoke", "station", [change.station.sid])
    provisioning.revoke_credentials(change.session, change.dynsec, change.station)
    change.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
