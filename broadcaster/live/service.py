"""Live paging in the database: check a session's targets, put it on air as a broadcast,
end it.  Flushes only; the session runner (`broadcaster.live.sessions`) commits.

A live session is an ordinary broadcast (tier ``live``, priority 7, or ``emergency``,
9) whose content is ``{"live_session": id}`` and whose play command carries
``stream``: the Icecast mount the session feeds.  So its per-station progress, the
broadcast page, the play log and "stop" are the broadcasts' own; stopping it anywhere
(this page, the broadcast page, the API) stops every station with one ``stop``
command and ends the session.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from audio_library.service import MediaLibrary
from broadcaster.dispatch import broadcasts, reports
from broadcaster.dispatch.models import BroadcastStatus
from broadcaster.dispatch.schemas import BroadcastContent, BroadcastCreate, BroadcastTargets
from broadcaster.settings import Settings
from firmware_bridge.messages import Stream
from kernel import audit
from kernel.db import utcnow
from kernel.errors import ServiceUnavailable
from kernel.security import Principal
from kernel.tiers import Tier
from stations.models import AreaLevel

__all__ = [
    "HamletChoice",
    "Icecast",
    "LiveStart",
    "RelayStart",
    "end",
    "go_live",
    "hamlet_choices",
    "is_active",
    "new_session_id",
    "precheck",
]

Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]


class LiveStart(BaseModel):
    """What a live session pages: targets, tier (live 7 or emergency 9) and a title."""

    model_config = ConfigDict(extra="forbid")

    targets: BroadcastTargets
    tier: Literal[Tier.LIVE, Tier.EMERGENCY] = Tier.LIVE
    title: Title | None = None
    max_s: Annotated[int, Field(ge=10, le=6 * 3600)] | None = Field(
        default=None, description="longest the session may last (default BROADCASTER_LIVE_MAX_S)"
    )


class RelayStart(LiveStart):
    """A live relay: the service pulls ``url`` into the streaming server for ``max_s``."""

    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")]


@dataclass(frozen=True)
class Icecast:
    """Where sessions are pushed (with the source login) and what stations are given."""

    host: str
    port: int
    password: str
    stream_base: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Icecast:
        if settings.live_icecast_url is None:
            raise ServiceUnavailable(
                "live paging is not configured (BROADCASTER_LIVE_ICECAST_URL)",
                message_vi="Chưa cấu hình máy chủ phát trực tiếp (Icecast)",
            )
        parts = urlsplit(settings.live_icecast_url.get_secret_value())
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 8000
        base = settings.live_stream_base_url or f"http://{host}:{port}"
        return cls(host, port, parts.password or "", base)

    def push_url(self, mount: str) -> str:
        """ffmpeg's ``icecast://`` output URL for ``mount``."""
        password = quote(self.password, safe="")
        return f"icecast://source:{password}@{self.host}:{self.port}/{mount}"

    def listen_url(self, mount: str) -> str:
        """The URL stations play."""
        return f"{self.stream_base}/{mount}"


def new_session_id() -> str:
    return secrets.token_hex(8)


def mount_of(session_id: str) -> str:
    return f"live-{session_id}.mp3"


def _create(data: LiveStart, session_id: str, *, until: dt.datetime) -> BroadcastCreate:
    return BroadcastCreate(
        targets=data.targets,
        content=BroadcastContent(live_session=session_id),
        tier=data.tier,
        title=data.title or ("Phát khẩn cấp trực tiếp" if data.tier is Tier.EMERGENCY else None),
        until=until,
        # a station that comes back while the session is on air still joins it
        expires_in_s=max(1, int((until - utcnow()).total_seconds())),
        lead_s=0,
    )


def precheck(session: Session, data: LiveStart, principal: Principal) -> int:
    """Refuse a session that could not go on air (permission, targets, scope) before any
    audio flows; the number of stations it reaches."""
    until = utcnow() + dt.timedelta(hours=1)
    create = _create(data, "check", until=until)
    broadcasts.check_permission(principal, create)
    return len(broadcasts.targets_of(session, create, principal).stations)


def go_live(
    session: Session,
    library: MediaLibrary,
    data: LiveStart,
    principal: Principal,
    *,
    session_id: str,
    stream_url: str,
    max_s: int,
    source: str,
) -> tuple[int, int]:
    """The session's broadcast: one ``play`` of ``stream_url`` to every target, now,
    until the longest the session may last.  (broadcast id, station count)"""
    until = utcnow() + dt.timedelta(seconds=max_s)
    create = _create(data, session_id, until=until)
    broadcast, command = broadcasts.create(
        session, library, create, principal, live=Stream(url=stream_url)
    )
    audit.record(
        session,
        actor=principal,
        action="live.start",
        target_type="broadcast",
        targets=[str(broadcast.id), *data.targets.groups, *data.targets.areas],
        after={
            "tier": data.tier,
            "cmd_id": command.cmd_id,
            "stations": broadcast.station_count,
            "live_session": session_id,
            "source": source,
            "stream": stream_url,
        },
    )
    return broadcast.id, broadcast.station_count


def is_active(session: Session, principal: Principal, broadcast_id: int) -> bool:
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    return broadcast.status is BroadcastStatus.ACTIVE


def end(session: Session, principal: Principal, broadcast_id: int, *, reason: str) -> bool:
    """Stop the session's broadcast everywhere (one ``stop`` command) if it still runs."""
    broadcast = reports.broadcast_in_scope(session, principal, broadcast_id)
    if broadcast.status is not BroadcastStatus.ACTIVE:
        return False
    command = broadcasts.stop(session, broadcast, principal)
    audit.record(
        session,
        actor=principal,
        action="live.end",
        target_type="broadcast",
        targets=[str(broadcast.id)],
        after={"cmd_id": command.cmd_id, "reason": reason},
    )
    return True


@dataclass(frozen=True)
class HamletChoice:
    """A hamlet (ấp, khu phố) the live page offers, with its enabled stations."""

    code: str
    name: str
    stations: int


def hamlet_choices(session: Session, principal: Principal) -> list[tuple[str, list[HamletChoice]]]:
    """The hamlets in the account's areas that hold an enabled station, by ward/commune
    (wards first, then communes, by name)."""
    areas = reports.all_areas(session)
    count: dict[int, int] = {}
    for station in reports.enabled_stations(session, principal.scope):
        if station.area_id is not None:
            count[station.area_id] = count.get(station.area_id, 0) + 1
    units: dict[int, list[HamletChoice]] = {}
    for area in areas.values():
        if area.level is not AreaLevel.HAMLET or not count.get(area.id):
            continue
        if not principal.reaches(area.id):
            continue
        unit = reports.unit_of(areas, area.id)
        units.setdefault(unit.id if unit else 0, []).append(
            HamletChoice(area.code, area.name, count[area.id])
        )

    def unit_key(unit_id: int) -> tuple[bool, str]:
        unit = areas.get(unit_id)
        return (unit is None or unit.level is not AreaLevel.WARD, unit.name if unit else "")

    return [
        (
            areas[unit_id].name if unit_id in areas else "Khác",
            sorted(units[unit_id], key=lambda h: h.name),
        )
        for unit_id in sorted(units, key=unit_key)
    ]
