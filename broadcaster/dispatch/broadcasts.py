"""Ad-hoc and emergency broadcasts, and single-station commands.

A broadcast is one `play` command (one `cmd_id`) to every target station: published
once per group topic when the targets are whole groups (the broker fans it out), or
once per station topic otherwise.  In the group case, stations not known to have
applied their current desired state (so maybe not yet subscribed to the group) also
get a direct copy; the shared `cmd_id` makes the station play it once.

Stations start together: the play carries a synchronised `start_at` a short lead time
ahead (default 2 s) that each station waits for on its own NTP-synced clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from audio_library import service as media
from audio_library.exceptions import AudioToolError
from audio_library.models import MediaAsset
from broadcaster.dispatch import outbox, playlog
from broadcaster.dispatch.models import Broadcast, BroadcastStatus, Command, Play, PlayStatus, Route
from broadcaster.dispatch.schemas import BroadcastCreate
from firmware_bridge.messages import Media, PlayBody, Stream
from kernel.db import utcnow
from kernel.errors import ConflictError, InvalidInput, PermissionDeniedError
from kernel.security import Permission, Principal
from kernel.tiers import Tier
from schedules.models import StreamSource
from stations import service as stations
from stations import targets
from stations.models import ALL_GROUP, Area, Group, Station, StationState

STREAM_DEFAULT_MS = 60_000


@dataclass(frozen=True)
class Plan:
    stations: list[Station]
    route: Route
    groups: list[str]
    direct: set[int]


def plan_route(session: Session, data: BroadcastCreate) -> Plan:
    """Resolve the targets and decide how to publish (see the module docstring)."""
    named = targets.TargetNames(
        stations=data.targets.stations, groups=data.targets.groups, areas=data.targets.areas
    )
    resolved = targets.resolve(session, named)
    if not resolved:
        raise InvalidInput(
            "the targets name no enabled station",
            field="targets",
            message_vi="Không có trạm nào trong danh sách phát",
        )
    gids: list[str] = list(data.targets.groups)
    whole_groups = not data.targets.stations
    for code in data.targets.areas:
        area = session.scalar(select(Area).where(Area.code == code))
        if area is not None and area.parent_id is None:
            gids.append(ALL_GROUP)
            continue
        group = session.scalar(
            select(Group).where(
                Group.auto.is_(True), Group.owner_area_id == (area.id if area else -1)
            )
        )
        if group is None:
            whole_groups = False
            break
        gids.append(group.gid)
    if not whole_groups:
        return Plan(resolved, Route.STATIONS, [], {s.id for s in resolved})
    if ALL_GROUP in gids:
        gids = [ALL_GROUP]
    ids = [s.id for s in resolved]
    in_sync = set(
        session.scalars(
            select(StationState.station_id).where(
                StationState.station_id.in_(ids),
                StationState.desired_published_version > 0,
                StationState.applied_version == StationState.desired_published_version,
            )
        )
    )
    return Plan(resolved, Route.GROUPS, sorted(set(gids)), {i for i in ids if i not in in_sync})


@dataclass(frozen=True)
class Content:
    """What a broadcast plays: a file (``media``) or a relay (``stream``)."""

    title: str
    kind: str
    expected_ms: int
    asset: MediaAsset | None
    media: Media | None = None
    stream: Stream | None = None


def _media(asset: MediaAsset, library: media.MediaLibrary, until: dt.datetime) -> Media:
    if asset.sha256 is None or asset.bytes is None:
        raise InvalidInput(f"media asset {asset.id} has no rendition yet", field="content")
    return Media(
        url=library.asset_url(asset, until),
        sha256=asset.sha256,
        bytes=asset.bytes,
        duration_ms=asset.duration_ms or 0,
        content_type=asset.mime or "audio/mpeg",
    )


def speak_text(library: media.MediaLibrary, data: BroadcastCreate) -> media.Rendition | None:
    """Read an emergency broadcast's text aloud (long work, no database), or None when
    the broadcast plays an asset or a stream.  Only emergencies may speak unapproved text."""
    content = data.content
    if content.text is None:
        return None
    if data.tier is not Tier.EMERGENCY:
        raise InvalidInput(
            "a text broadcast needs approval first: create the bulletin in the media "
            "library (POST /api/v1/media/tts) and have it approved; only emergency "
            "broadcasts may be spoken on the spot",
            field=("content", "text"),
            message_vi="Bản tin văn bản cần được duyệt trước khi phát (trừ phát khẩn cấp)",
        )
    try:
        return media.speak(library, text=content.text, voice=content.voice, rate=content.rate)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message, field=("content", "text", *exc.loc[1:]), message_vi=exc.message_vi
        ) from exc
    except AudioToolError as exc:
        raise InvalidInput(
            f"the text could not be spoken: {exc.message}",
            field=("content", "text"),
            message_vi=exc.message_vi or "Không chuyển được văn bản thành giọng nói",
        ) from exc


def resolve_content(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    *,
    start_at: dt.datetime,
    speech: media.Rendition | None = None,
) -> Content:
    """What the broadcast plays (``speech``: its text, already spoken by `speak_text`)."""
    emergency = data.tier is Tier.EMERGENCY
    content = data.content
    if content.text is not None:
        assert speech is not None, "speak the text first (speak_text)"
        asset = media.add_speech(
            session,
            library,
            speech,
            text=content.text,
            voice=content.voice,
            rate=content.rate,
            title=data.title or "Phát khẩn cấp",
            category="canh-bao",
            tags=["khan-cap"],
            author=media.Author(name=principal.username, user_id=principal.user_id),
        )
    elif content.asset_id is not None:
        field = ("content", "asset_id")
        if not emergency:
            asset = media.require_playable(
                session, content.asset_id, field=field, scope=principal.scope
            )
        else:
            asset = media.asset_in_scope(
                session, content.asset_id, scope=principal.scope, field=field
            )
            if not asset.ready:
                raise InvalidInput(f"media asset {asset.id} is not ready", field=field)
    else:
        return _stream_content(session, library, data, start_at=start_at)
    if not asset.playable:
        media.approve_for_broadcast(
            session,
            asset,
            sender=principal.username,
            reason=f"khẩn cấp: quyền phát của {principal.username} thay cho phê duyệt",
        )
    repeat = data.repeat
    expected = (asset.duration_ms or 0) * repeat
    if data.until is not None:
        expected = min(expected, int((data.until - start_at).total_seconds() * 1000))
    links_until = start_at + dt.timedelta(milliseconds=expected) + dt.timedelta(days=1)
    return Content(
        title=data.title or asset.title,
        kind="file",
        expected_ms=max(expected, 0),
        asset=asset,
        media=_media(asset, library, links_until),
    )


def _stream_content(
    session: Session, library: media.MediaLibrary, data: BroadcastCreate, *, start_at: dt.datetime
) -> Content:
    source_id = data.content.stream_source_id
    source = session.get(StreamSource, source_id) if source_id is not None else None
    if source is None or not source.enabled:
        raise InvalidInput(
            f"unknown stream source {source_id}", field=("content", "stream_source_id")
        )
    if data.until is None:
        raise InvalidInput("a relay needs 'until' (when to stop)", field="until")
    expected = int((data.until - start_at).total_seconds() * 1000)
    fallback = None
    if source.fallback is not None and source.fallback.playable:
        fallback = _media(source.fallback, library, data.until + dt.timedelta(days=1))
    return Content(
        title=data.title or source.name,
        kind="relay",
        expected_ms=expected,
        asset=None,
        stream=Stream(url=source.url, fallback=fallback),
    )


def check_permission(principal: Principal, data: BroadcastCreate) -> None:
    principal.require(Permission.BROADCAST_SEND)
    if data.tier is Tier.EMERGENCY and not principal.has(Permission.BROADCAST_EMERGENCY):
        raise PermissionDeniedError(
            "emergency broadcasts need the emergency permission",
            message_vi="Tài khoản không có quyền phát khẩn cấp",
        )


def create(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    *,
    now: dt.datetime | None = None,
) -> tuple[Broadcast, Command]:
    """Store a broadcast and its play command (flushes; the caller commits).

    Call it holding no transaction: an emergency's text is spoken first, before any
    query, so no transaction waits on the speech engine.
    """
    check_permission(principal, data)
    now = now or utcnow()
    start_at = data.start_at or now + dt.timedelta(seconds=data.lead_s)
    if start_at < now - dt.timedelta(seconds=5):
        raise InvalidInput("start_at is in the past", field="start_at")
    if data.until is not None and data.until <= start_at:
        raise InvalidInput("until must be after the start", field="until")
    speech = speak_text(library, data)
    with media.saving_speech(session, library, [speech] if speech else []):
        return _store(session, library, data, principal, now=now, start_at=start_at, speech=speech)


def _store(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    *,
    now: dt.datetime,
    start_at: dt.datetime,
    speech: media.Rendition | None,
) -> tuple[Broadcast, Command]:
    plan = plan_route(session, data)
    outside = [s.sid for s in plan.stations if not principal.reaches(s.area_id)]
    if outside:
        raise PermissionDeniedError(
            f"{len(outside)} target station(s) are outside your areas (e.g. {outside[0]})",
            message_vi="Có trạm nằm ngoài địa bàn được giao",
        )
    content = resolve_content(session, library, data, principal, start_at=start_at, speech=speech)
    priority = data.tier.priority
    valid_s = data.expires_in_s if data.expires_in_s is not None else data.tier.validity_s
    not_after = max(now + dt.timedelta(seconds=valid_s), start_at + dt.timedelta(seconds=5))
    play = PlayBody(
        priority=priority,
        title=content.title[:500],
        media=content.media,
        stream=content.stream,
        start_at=start_at,
        until=data.until,
        volume=data.volume,
        repeat=data.repeat if data.repeat > 1 else None,
    )
    broadcast = Broadcast(
        title=content.title[:300],
        tier=data.tier,
        priority=priority,
        content=data.content.model_dump(exclude_none=True),
        asset_id=content.asset.id if content.asset else None,
        targets=data.targets.model_dump(),
        station_count=len(plan.stations),
        start_at=start_at,
        until=data.until,
        repeat=data.repeat,
        not_after=not_after,
        status=BroadcastStatus.ACTIVE,
        approval_note=(
            f"emergency: broadcast permission of {principal.username} stands in for approval"
            if data.tier is Tier.EMERGENCY
            else None
        ),
        created_by=principal.username,
        created_by_id=principal.user_id,
    )
    session.add(broadcast)
    session.flush()
    command = outbox.create(
        session,
        type="play",
        body=play.model_dump(mode="json", by_alias=True),
        station_ids=[s.id for s in plan.stations],
        route=plan.route,
        groups=plan.groups,
        direct_ids=plan.direct,
        not_after=not_after,
        # a station reached late (up to not_after) starts a lead time later and plays it all
        deadline=max(start_at, not_after + (start_at - now))
        + dt.timedelta(milliseconds=content.expected_ms),
        created_by=principal.username,
        broadcast_id=broadcast.id,
        priority=priority,
        now=now,
    )
    playlog.record_broadcast(
        session,
        station_ids=[s.id for s in plan.stations],
        cmd_id=command.cmd_id,
        broadcast_id=broadcast.id,
        title=content.title,
        kind=content.kind,
        priority=priority,
        start=start_at,
        expected_ms=content.expected_ms,
        now=now,
    )
    return broadcast, command


def commands_of(session: Session, broadcast: Broadcast) -> list[Command]:
    return list(
        session.scalars(
            select(Command).where(Command.broadcast_id == broadcast.id).order_by(Command.id)
        )
    )


def stop(session: Session, broadcast: Broadcast, principal: Principal) -> Command:
    principal.require(Permission.BROADCAST_SEND)
    if broadcast.status is not BroadcastStatus.ACTIVE:
        raise ConflictError(f"broadcast {broadcast.id} is already {broadcast.status.value}")
    now = utcnow()
    play = next(c for c in commands_of(session, broadcast) if c.type == "play")
    station_ids = list(session.scalars(select(Play.station_id).where(Play.cmd_id == play.cmd_id)))
    command = outbox.create(
        session,
        type="stop",
        body={"cmd_id": play.cmd_id, "max_priority": 9},
        station_ids=station_ids,
        route=play.route,
        groups=play.groups,
        direct_ids=station_ids if play.route is Route.STATIONS else [],
        not_after=now + dt.timedelta(seconds=30),
        created_by=principal.username,
        broadcast_id=broadcast.id,
        now=now,
    )
    outbox.stop_targets(session, play, reason=f"stopped by {principal.username}", now=now)
    session.execute(
        update(Play)
        .where(Play.cmd_id == play.cmd_id, Play.status == PlayStatus.PLANNED)
        .values(
            status=PlayStatus.CANCELLED, reason=f"stopped by {principal.username}", updated_at=now
        )
    )
    broadcast.status = BroadcastStatus.STOPPED
    broadcast.stopped_at = now
    broadcast.stopped_by = principal.username
    return command


STATION_COMMANDS = ("volume", "stop", "ping", "sync", "rebirth", "reboot")


def command_station(
    session: Session,
    station: Station,
    *,
    type: str,
    body: dict[str, Any],
    created_by: str,
    ttl_s: int = 30,
) -> Command:
    now = utcnow()
    return outbox.create(
        session,
        type=type,
        body=body,
        station_ids=[station.id],
        not_after=now + dt.timedelta(seconds=ttl_s),
        created_by=created_by,
        now=now,
    )


def station_sids(session: Session, ids: Sequence[int]) -> dict[int, str]:
    return stations.station_sids(session, ids)
