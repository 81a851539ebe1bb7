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
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import String, cast, func, or_, select, update
from sqlalchemy.orm import Session

from audio_library import service as media
from audio_library.exceptions import AudioToolError
from audio_library.models import MediaAsset
from broadcaster.dispatch import attention as attention_signal
from broadcaster.dispatch import outbox, playlog, staged
from broadcaster.dispatch.models import (
    Broadcast,
    BroadcastStatus,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    Route,
    TargetStatus,
)
from broadcaster.dispatch.schemas import BroadcastCreate, BroadcastTargets
from firmware_bridge.messages import (
    MEDIA_FOLLOWS,
    Media,
    MediaBody,
    MediaFollows,
    PlayBody,
    Stream,
)
from kernel.db import among, utcnow
from kernel.errors import ConflictError, InvalidInput, PermissionDeniedError
from kernel.security import Permission, Principal
from kernel.tiers import Tier
from schedules.models import StreamSource
from stations import live as stations_live
from stations import service as stations
from stations import targets
from stations.models import ALL_GROUP, Group, Station, StationState

STREAM_DEFAULT_MS = 60_000
#: the emergency tier's forced volume unless configured (``BROADCASTER_EMERGENCY_VOLUME``)
EMERGENCY_VOLUME = 100


@dataclass(frozen=True)
class Plan:
    stations: list[targets.Reached]
    route: Route
    groups: list[str]
    direct: set[int]


#: the few stations that may not be subscribed to their groups yet, not the thousands
#: that are: a station without a state row, or whose published plan it has not applied
#: (built once: an emergency's way out builds no statement of its own)
_OUT_OF_STEP = (
    select(Station.id)
    .outerjoin(StationState, StationState.station_id == Station.id)
    .where(
        Station.enabled.is_(True),
        or_(
            StationState.station_id.is_(None),
            StationState.desired_published_version <= 0,
            StationState.applied_version.is_(None),
            StationState.applied_version != StationState.desired_published_version,
        ),
    )
)
_OUT_OF_STEP_ROWS = _OUT_OF_STEP.subquery()
#: the same stations' ids as one text ("3,17,42"; NULL: none), read with the registry's
#: key (`targets.resolve_names`) when the names look like the whole fleet: the route to
#: every station reads no list of its own
_OUT_OF_STEP_IDS = select(
    func.aggregate_strings(cast(_OUT_OF_STEP_ROWS.c.id, String), ",")
).scalar_subquery()


def _looks_whole_fleet(session: Session, named: BroadcastTargets) -> bool:
    """Do the targets look like the whole fleet (a root area or the ``all`` group, and
    no station by name), as far as the fleet last read says?  A guess at what to read
    with the registry's key, never an answer: `plan_route` decides on what it read."""
    if named.stations:
        return False
    if ALL_GROUP in named.groups:
        return True
    fleet = targets.FLEETS.peek(session)
    return fleet is not None and any(code in fleet.roots for code in named.areas)


def plan_route(session: Session, named: BroadcastTargets) -> Plan:
    """Resolve the targets and decide how to publish (see the module docstring)."""
    names = targets.TargetNames(stations=named.stations, groups=named.groups, areas=named.areas)
    whole_fleet = _looks_whole_fleet(session, named)
    resolution = targets.resolve_names(
        session, names, also=(_OUT_OF_STEP_IDS,) if whole_fleet else ()
    )
    resolved = resolution.stations
    if not resolved:
        raise InvalidInput(
            "the targets name no enabled station",
            field="targets",
            message_vi="Không có trạm nào trong danh sách phát",
        )
    gids: list[str] = list(named.groups)
    whole_groups = not named.stations
    for area_id, _code in resolution.rows.areas:
        if resolution.resolver.parent_of.get(area_id, -1) is None:
            gids.append(ALL_GROUP)  # a root area: the whole city
            continue
        group = session.scalar(
            select(Group).where(Group.auto.is_(True), Group.owner_area_id == area_id)
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
    reached = set(ids)
    if gids == [ALL_GROUP] and resolution.also:
        # read with the registry's key (asked for when the names looked like the whole
        # fleet): the whole fleet's
        listed = resolution.also[0]
        out_of_step = {int(i) for i in listed.split(",")} if listed else set()
        return Plan(resolved, Route.GROUPS, [ALL_GROUP], out_of_step & reached)
    out_of_sync_query = _OUT_OF_STEP
    if gids != [ALL_GROUP]:  # the whole fleet: no list of thousands of ids to bind
        out_of_sync_query = out_of_sync_query.where(among(session, Station.id, ids))
    direct = {i for i in session.scalars(out_of_sync_query) if i in reached}
    return Plan(resolved, Route.GROUPS, sorted(set(gids)), direct)


def prepare_way_out(session: Session) -> int:
    """Plan a broadcast to the whole fleet (each root area, and the ``all`` group) once,
    writing nothing: the enabled fleet is then in memory (`targets.FLEETS`) and the
    statement that reads it with the stations out of step is built, so an emergency
    soon after start-up pays neither (on the 2-core test machine the first city-wide
    emergency's store phase took 15 ms, the second 8 ms, every later one 3 ms).
    Returns how many routes were planned (none on an empty registry)."""
    fleet, _reached = targets.FLEETS.current(session)
    planned = 0
    for named in [
        *(BroadcastTargets(areas=[code]) for code in sorted(fleet.roots)),
        BroadcastTargets(groups=[ALL_GROUP]),
    ]:
        try:
            plan_route(session, named)
        except InvalidInput:  # no enabled station there yet
            continue
        planned += 1
    return planned


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
        raise InvalidInput(
            f"media asset {asset.id} has no rendition yet",
            field="content",
            message_vi=f"Tệp âm thanh {asset.id} chưa xử lý xong",
        )
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


@dataclass(frozen=True)
class SpeechFiling:
    """How the audio of a spoken emergency is filed in the media library and who stands
    in for its approval; unset fields: the sender's (`resolve_content`).  A CAP alert
    files its speech as the alert source's (`broadcaster.alerts.service`)."""

    title: str | None = None
    tags: tuple[str, ...] = ("khan-cap",)
    author: media.Author | None = None
    approved_by: str | None = None
    approval_reason: str | None = None


def resolve_content(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    *,
    start_at: dt.datetime,
    speech: media.Rendition | None = None,
    filing: SpeechFiling | None = None,
) -> Content:
    """What the broadcast plays (``speech``: its text, already spoken by `speak_text`,
    filed as ``filing`` says)."""
    emergency = data.tier is Tier.EMERGENCY
    content = data.content
    filing = filing or SpeechFiling()
    if content.text is not None:
        assert speech is not None, "speak the text first (speak_text)"
        asset = media.add_speech(
            session,
            library,
            speech,
            text=content.text,
            voice=content.voice,
            rate=content.rate,
            title=filing.title or data.title or "Phát khẩn cấp",
            category="canh-bao",
            tags=list(filing.tags),
            author=filing.author
            or media.Author(name=principal.username, user_id=principal.user_id),
        )
    elif content.asset_id is not None:
        field = ("content", "asset_id")
        if not emergency:
            asset = media.require_playable(
                session, content.asset_id, field=field, scope=principal.scope
            )
        else:
            asset = media.asset_in_scope(
                session, content.asset_id, scope=principal.scope, field=field, to_play=True
            )
            if not asset.ready:
                raise InvalidInput(
                    f"media asset {asset.id} is not ready",
                    field=field,
                    message_vi=f"Tệp âm thanh {asset.id} chưa sẵn sàng",
                )
    else:
        return _stream_content(session, library, data, start_at=start_at)
    if not asset.playable:
        media.approve_for_broadcast(
            session,
            asset,
            sender=filing.approved_by or principal.username,
            reason=filing.approval_reason
            or f"khẩn cấp: quyền phát của {principal.username} thay cho phê duyệt",
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
            f"unknown stream source {source_id}",
            field=("content", "stream_source_id"),
            message_vi=f"Không có nguồn tiếp sóng {source_id}",
        )
    if data.until is None:
        raise InvalidInput(
            "a relay needs 'until' (when to stop)",
            field="until",
            message_vi="Tiếp sóng cần có thời điểm kết thúc",
        )
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


def targets_of(session: Session, data: BroadcastCreate, principal: Principal) -> Plan:
    """The stations ``data`` reaches, all inside the sender's areas (else refused)."""
    plan = plan_route(session, data.targets)
    outside = [s.sid for s in plan.stations if not principal.reaches(s.area_id)]
    if outside:
        raise PermissionDeniedError(
            f"{len(outside)} target station(s) are outside your areas (e.g. {outside[0]})",
            message_vi="Có trạm nằm ngoài địa bàn được giao",
        )
    return plan


def check_permission(principal: Principal, data: BroadcastCreate) -> None:
    require_tier(principal, data.tier)


def require_tier(principal: Principal, tier: Tier | str) -> None:
    """Sending (or sending again) a broadcast of this tier needs these permissions."""
    principal.require(Permission.BROADCAST_SEND)
    if tier == Tier.EMERGENCY and not principal.has(Permission.BROADCAST_EMERGENCY):
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
    emergency_volume: int = EMERGENCY_VOLUME,
    attention: bool = False,
    live: Stream | None = None,
    rows_after_publish: bool = False,
) -> tuple[Broadcast, Command]:
    """Store a broadcast and its play command (flushes; the caller commits).

    Call it holding no transaction: an emergency's text is spoken first, before any
    query, so no transaction waits on the speech engine.  An emergency without its own
    ``volume`` plays at ``emergency_volume`` (a play's volume is for that play only: the
    station is back at its own volume afterwards), preceded by the attention signal when
    ``attention`` (and the service made it: `broadcaster.dispatch.attention`).  ``live``:
    the stream of a live paging session (`broadcaster.live`, content ``live_session``),
    already on air.  ``rows_after_publish``: the per-station rows are staged, to be
    written once the command is out (`broadcaster.dispatch.staged`; the caller commits,
    wakes the publisher, then calls `wake.write_staged`).
    """
    fixed_now = now is not None
    data, now, start_at = _prepare(data, principal, now=now, emergency_volume=emergency_volume)
    if (data.content.live_session is None) != (live is None):
        raise InvalidInput(
            "a live session is started at /api/v1/live/audio (microphone) or "
            "/api/v1/live/relays (a stream URL), not here",
            field=("content", "live_session"),
            message_vi="Phát trực tiếp được bắt đầu từ trang Phát trực tiếp",
        )
    speech = speak_text(library, data)
    with media.saving_speech(session, library, [speech] if speech else []):
        if speech is not None and not fixed_now:
            # the lead time is for the stations (delivery, download, a common start),
            # not for our own synthesis: "now" is when the command can leave, after it
            now = utcnow()
            if data.start_at is None:
                start_at = now + dt.timedelta(seconds=data.lead_s)
                if data.until is not None and data.until <= start_at:
                    raise InvalidInput(
                        "until must be after the start",
                        field="until",
                        message_vi="Thời điểm kết thúc phải sau thời điểm bắt đầu",
                    )
        return _store(
            session,
            library,
            data,
            principal,
            now=now,
            start_at=start_at,
            speech=speech,
            attention=attention and data.tier is Tier.EMERGENCY,
            live=live,
            rows_after_publish=rows_after_publish,
        )


def _prepare(
    data: BroadcastCreate,
    principal: Principal,
    *,
    now: dt.datetime | None,
    emergency_volume: int,
) -> tuple[BroadcastCreate, dt.datetime, dt.datetime]:
    """The checked request (an emergency's forced volume filled in), now, and the start."""
    if data.tier is Tier.EMERGENCY and data.volume is None:
        data = data.model_copy(update={"volume": emergency_volume})
    check_permission(principal, data)
    now = now or utcnow()
    start_at = data.start_at or now + dt.timedelta(seconds=data.lead_s)
    if start_at < now - dt.timedelta(seconds=5):
        raise InvalidInput(
            "start_at is in the past",
            field="start_at",
            message_vi="Thời điểm bắt đầu đã qua",
        )
    if data.until is not None and data.until <= start_at:
        raise InvalidInput(
            "until must be after the start",
            field="until",
            message_vi="Thời điểm kết thúc phải sau thời điểm bắt đầu",
        )
    return data, now, start_at


# --- a spoken emergency sent before its audio (proposal 0005) ----------------------------


class SpeechPace:
    """How long speaking a text takes on this machine, learned from each spoken emergency
    (per process): it sets when a play sent before its audio may expect the audio
    (``media_follows.ready_by``), with a margin of `MARGIN` for a busy machine."""

    MARGIN = 2.0
    #: start-up cost of one synthesis (process hand-off, encoding), seconds
    BASE_S = 0.3
    #: seconds per character before anything is measured: several times what the 2-core
    #: test machine measures (about 0.001-0.002), so the first guess is on the safe side
    FIRST_S_PER_CHAR = 0.01
    #: the audio's length before it exists: a calm announcer's four syllables a second
    MS_PER_WORD = 250

    def __init__(self) -> None:
        self._s_per_char = self.FIRST_S_PER_CHAR

    def ready_in(self, text: str) -> dt.timedelta:
        seconds = self.MARGIN * (self.BASE_S + len(text) * self._s_per_char)
        return dt.timedelta(seconds=max(seconds, 1.0))

    def learn(self, text: str, seconds: float) -> None:
        observed = max(seconds - self.BASE_S, 0.0) / max(len(text), 1)
        self._s_per_char = 0.5 * self._s_per_char + 0.5 * observed

    def spoken_ms(self, text: str) -> int:
        return len(text.split()) * self.MS_PER_WORD


SPEECH_PACE = SpeechPace()


@dataclass(frozen=True)
class SpeechToFollow:
    """A spoken emergency stored and sent before its audio (`create_before_speech`): what
    `follow_with_speech` needs to speak it and send the audio after the play."""

    broadcast_id: int
    command_id: int
    data: BroadcastCreate
    principal: Principal
    start_at: dt.datetime
    filing: SpeechFiling | None = None


def targets_if_speech_can_follow(
    session: Session, data: BroadcastCreate, principal: Principal
) -> Plan | None:
    """The stations of ``data`` if it is a spoken emergency whose stations all take a
    play before its audio (they announced ``media_follows``), else None: then
    `create_before_speech` sends it at once to them (in the same transaction: nothing is
    spoken in between, and the targets are not resolved a second time)."""
    if data.content.text is None or data.tier is not Tier.EMERGENCY:
        return None
    plan = targets_of(session, data, principal)
    if not stations_live.all_announce(session, [s.id for s in plan.stations], MEDIA_FOLLOWS):
        return None
    return plan


def create_before_speech(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    plan: Plan,
    *,
    now: dt.datetime | None = None,
    emergency_volume: int = EMERGENCY_VOLUME,
    attention: bool = False,
    filing: SpeechFiling | None = None,
) -> tuple[Broadcast, Command, SpeechToFollow]:
    """Store a spoken emergency and its play before the text is spoken (flushes; the
    caller commits and publishes, then calls `follow_with_speech`, which files the
    speech as ``filing`` says).  The play carries ``media_follows`` (proposal 0005)
    instead of its audio: its stations acknowledge it, sound the attention signal at the
    start, and play the audio when it comes.  Only for a broadcast `targets_if_speech_can_follow`
    accepted, with the ``plan`` it gave."""
    data, now, start_at = _prepare(data, principal, now=now, emergency_volume=emergency_volume)
    text = data.content.text
    assert text is not None, "a spoken emergency"
    try:
        media.check_text(library, text)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message, field=("content", "text", *exc.loc[1:]), message_vi=exc.message_vi
        ) from exc
    broadcast, command = _store(
        session,
        library,
        data,
        principal,
        now=now,
        start_at=start_at,
        speech=None,
        attention=attention,
        follows=MediaFollows(ready_by=now + SPEECH_PACE.ready_in(text)),
        plan=plan,
    )
    following = SpeechToFollow(broadcast.id, command.id, data, principal, start_at, filing)
    return broadcast, command, following


def follow_with_speech(
    session: Session, library: media.MediaLibrary, following: SpeechToFollow
) -> Broadcast:
    """Speak the text of a broadcast `create_before_speech` sent, keep it as the
    broadcast's asset, give the play its audio (stations reached from now on get the
    whole play) and send the audio to the play's stations in a ``media`` command (flushes;
    the caller commits and publishes).  Call it holding no transaction.  If the text
    cannot be spoken, the broadcast is stopped (its stations stop waiting) and the error
    goes on, for the caller to commit the stop and answer it."""
    data, principal = following.data, following.principal
    started = time.monotonic()
    try:
        speech = speak_text(library, data)
    except InvalidInput:
        broadcast = session.get(Broadcast, following.broadcast_id)
        if broadcast is not None and broadcast.status is BroadcastStatus.ACTIVE:
            stop(session, broadcast, principal)
        raise
    assert speech is not None
    assert data.content.text is not None
    SPEECH_PACE.learn(data.content.text, time.monotonic() - started)
    with media.saving_speech(session, library, [speech]):
        broadcast = session.get(Broadcast, following.broadcast_id)
        play = session.get(Command, following.command_id)
        assert broadcast is not None, "stored by create_before_speech"
        assert play is not None, "stored by create_before_speech"
        content = resolve_content(
            session,
            library,
            data,
            principal,
            start_at=following.start_at,
            speech=speech,
            filing=following.filing,
        )
        assert content.asset is not None
        assert content.media is not None
        broadcast.asset_id = content.asset.id
        if broadcast.status is BroadcastStatus.STOPPED or play.done:
            return broadcast
        body = PlayBody.model_validate(play.body)
        signal_ms = (body.attention.duration_ms or 0) if body.attention is not None else 0
        expected_ms = content.expected_ms + signal_ms
        whole = body.model_copy(update={"media": content.media, "media_follows": None})
        play.body = whole.model_dump(mode="json", by_alias=True)
        play.deadline = max(
            play.not_after,
            _deadline(following.start_at, play.not_after, play.issued_at, expected_ms),
        )
        playlog.expect(session, play.cmd_id, start=following.start_at, expected_ms=expected_ms)
        outbox.follow_up(
            session,
            play,
            type="media",
            body=MediaBody(for_=play.cmd_id, media=content.media).model_dump(
                mode="json", by_alias=True
            ),
        )
    return broadcast


def _store(
    session: Session,
    library: media.MediaLibrary,
    data: BroadcastCreate,
    principal: Principal,
    *,
    now: dt.datetime,
    start_at: dt.datetime,
    speech: media.Rendition | None,
    attention: bool = False,
    live: Stream | None = None,
    follows: MediaFollows | None = None,
    plan: Plan | None = None,
    rows_after_publish: bool = False,
) -> tuple[Broadcast, Command]:
    """``plan``: the targets, when the caller resolved them in this transaction."""
    if plan is None:
        plan = targets_of(session, data, principal)
    if follows is not None:
        assert data.content.text is not None
        expected = SPEECH_PACE.spoken_ms(data.content.text) * data.repeat
        if data.until is not None:
            expected = min(expected, int((data.until - start_at).total_seconds() * 1000))
        title = data.title or "Phát khẩn cấp"
        content = Content(title=title, kind="file", expected_ms=max(expected, 0), asset=None)
    elif live is not None:
        assert data.until is not None, "a live session has an end"
        expected = int((data.until - start_at).total_seconds() * 1000)
        title = data.title or "Phát trực tiếp"
        content = Content(title=title, kind="relay", expected_ms=expected, asset=None, stream=live)
    else:
        content = resolve_content(
            session, library, data, principal, start_at=start_at, speech=speech
        )
    signal = attention_signal.signal_asset(session) if attention else None
    signal_media = None
    if signal is not None:
        links_until = start_at + dt.timedelta(milliseconds=content.expected_ms, days=1)
        signal_media = _media(signal, library, links_until)
        content = replace(
            content, expected_ms=content.expected_ms + (signal_media.duration_ms or 0)
        )
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
        attention=signal_media,
        media_follows=follows,
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
    command = outbox.create(
        session,
        type="play",
        body=play.model_dump(mode="json", by_alias=True),
        station_ids=[s.id for s in plan.stations],
        route=plan.route,
        groups=plan.groups,
        direct_ids=plan.direct,
        not_after=not_after,
        deadline=_deadline(start_at, not_after, now, content.expected_ms),
        created_by=principal.username,
        broadcast=broadcast,  # stored with the command
        priority=priority,
        now=now,
        play=staged.PlayPlan(
            broadcast_id=0,  # the broadcast's, once stored
            title=content.title[:500],
            kind=content.kind,
            start=start_at,
            expected_ms=content.expected_ms,
        ),
        rows_after_publish=rows_after_publish,
    )
    return broadcast, command


def _deadline(
    start_at: dt.datetime, not_after: dt.datetime, now: dt.datetime, expected_ms: int
) -> dt.datetime:
    """When a play sent ``now`` is over everywhere: a station reached late (up to
    ``not_after``) starts a lead time later and plays it all."""
    lead = start_at - now
    return max(start_at, not_after + lead) + dt.timedelta(milliseconds=expected_ms)


def commands_of(session: Session, broadcast: Broadcast) -> list[Command]:
    return list(
        session.scalars(
            select(Command).where(Command.broadcast_id == broadcast.id).order_by(Command.id)
        )
    )


def stop(session: Session, broadcast: Broadcast, principal: Principal) -> Command:
    principal.require(Permission.BROADCAST_SEND)
    if broadcast.status is not BroadcastStatus.ACTIVE:
        raise ConflictError(
            f"broadcast {broadcast.id} is already {broadcast.status.value}",
            message_vi="Lượt phát này đã kết thúc",
        )
    now = utcnow()
    commands = commands_of(session, broadcast)
    plays = [c for c in commands if c.type == "play"]
    # rows not written yet (a stop right after the send): the stop reaches every station
    staged.write(session, [p.id for p in plays])
    # the original play and any "send again" still running
    running = [p for p in plays if not p.done] or plays[:1]
    stops = [_stop_play(session, p, principal, now) for p in running]
    # the audio that followed a play (proposal 0005) is not sent again either (after a
    # reconnect, `outbox.unacknowledged`): nothing will play it
    for follow in commands:
        if follow.type == "media" and not follow.done:
            outbox.stop_targets(session, follow, reason=f"stopped by {principal.username}", now=now)
    broadcast.status = BroadcastStatus.STOPPED
    broadcast.stopped_at = now
    broadcast.stopped_by = principal.username
    return stops[0]


def _stop_play(session: Session, play: Command, principal: Principal, now: dt.datetime) -> Command:
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
        broadcast_id=play.broadcast_id,
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
    return command


#: where a target ended when its station missed the broadcast ("send again" goes to them)
MISSED = (TargetStatus.EXPIRED, TargetStatus.FAILED, TargetStatus.REJECTED)


def missed_stations(session: Session, broadcast: Broadcast) -> list[int]:
    """Stations whose latest copy of the broadcast (the original or a "send again") ended
    expired, failed or rejected: the ones that did not hear it."""
    rows = session.execute(
        select(CommandTarget.station_id, CommandTarget.status)
        .join(Command, Command.id == CommandTarget.command_id)
        .where(Command.broadcast_id == broadcast.id, Command.type == "play")
        .order_by(CommandTarget.id)
    ).all()
    latest = {station_id: TargetStatus(status) for station_id, status in rows}
    return sorted(sid for sid, status in latest.items() if status in MISSED)


def resend(
    session: Session, broadcast: Broadcast, principal: Principal, *, now: dt.datetime | None = None
) -> tuple[Command, list[int]]:
    """Send the broadcast again to the stations that missed it (`missed_stations`): a new
    play command of the same broadcast (a fresh lead time and validity window of the
    original's length), so the broadcast's page and report follow each station's latest
    copy.  The broadcast is active again until the new copy settles everywhere.  Returns
    the command and the stations it goes to.  Needs
    the permission that sending it needed; a stopped broadcast is not sent again."""
    require_tier(principal, broadcast.tier)
    if broadcast.status is BroadcastStatus.STOPPED:
        raise ConflictError(
            f"broadcast {broadcast.id} was stopped by an operator",
            message_vi="Lượt phát đã bị dừng theo lệnh, không gửi lại",
        )
    now = now or utcnow()
    plays = [c for c in commands_of(session, broadcast) if c.type == "play"]
    if not plays:
        raise ConflictError(
            f"broadcast {broadcast.id} has no play command",
            message_vi="Lượt phát này không có lệnh phát nào để gửi lại",
        )
    missed = missed_stations(session, broadcast)
    if not missed:
        raise ConflictError(
            f"no station of broadcast {broadcast.id} has missed it",
            message_vi="Không có trạm nào bị lỡ lượt phát này",
        )
    original = plays[0]
    body = PlayBody.model_validate(original.body)
    lead = min(
        max((body.start_at or original.issued_at) - original.issued_at, dt.timedelta(0)),
        outbox.MAX_LEAD,
    )
    start_at = now + lead
    valid = max(original.not_after - original.issued_at, dt.timedelta(seconds=5))
    not_after = max(now + valid, start_at + dt.timedelta(seconds=5))
    if body.until is not None and body.until <= start_at:
        raise ConflictError(
            f"broadcast {broadcast.id} ended at {body.until.isoformat()}",
            message_vi="Lượt phát đã quá thời điểm kết thúc, không gửi lại được",
        )
    again = body.model_copy(update={"start_at": start_at})
    expected_ms = _expected_ms(session, broadcast, start_at)
    command = outbox.create(
        session,
        type="play",
        body=again.model_dump(mode="json", by_alias=True),
        station_ids=missed,
        route=Route.STATIONS,
        not_after=not_after,
        deadline=not_after + lead + dt.timedelta(milliseconds=expected_ms),
        created_by=principal.username,
        broadcast_id=broadcast.id,
        priority=broadcast.priority,
        now=now,
        play=staged.PlayPlan(
            broadcast_id=broadcast.id,
            title=broadcast.title[:500],
            kind="relay" if body.stream is not None else "file",
            start=start_at,
            expected_ms=expected_ms,
        ),
    )
    broadcast.status = BroadcastStatus.ACTIVE
    broadcast.not_after = max(broadcast.not_after, not_after)
    return command, missed


def _expected_ms(session: Session, broadcast: Broadcast, start_at: dt.datetime) -> int:
    """How long the broadcast plays, as its original plays planned it."""
    expected = session.scalar(
        select(Play.expected_ms).where(Play.broadcast_id == broadcast.id).limit(1)
    )
    ms = int(expected or 0)
    if broadcast.until is not None:
        ms = min(ms, int((broadcast.until - start_at).total_seconds() * 1000))
    return max(ms, 0)


STATION_COMMANDS = ("volume", "stop", "ping", "sync", "rebirth", "reboot")


def command_station(
    session: Session,
    station_id: int,
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
        station_ids=[station_id],
        not_after=now + dt.timedelta(seconds=ttl_s),
        created_by=created_by,
        now=now,
    )


def station_sids(session: Session, ids: Sequence[int]) -> dict[int, str]:
    return stations.station_sids(session, ids)
