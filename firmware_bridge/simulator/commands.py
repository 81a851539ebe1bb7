"""Rule 4 of PROTOCOL.md "Station behaviour": how a station handles commands.

Commands are processed in the protocol's order: expired (``EXPIRED``), already seen
(the last ack again), unknown/invalid (``REJECTED``), then ``RECEIVED`` ->
``IN_PROGRESS`` -> ``SUCCEEDED``/``FAILED``.  A play that is busy at equal or higher
priority is ``REJECTED`` with reason ``busy`` (also when its ``start_at`` arrives).
The last ack of each command (up to `MAX_ACKS`) is kept, so a repeated ``cmd_id`` gets
it again instead of running twice.

Proposal 0005 (capability ``media_follows``): a ``play`` may come before its audio,
with ``media_follows: {"ready_by": ...}`` instead of ``media``. At ``start_at`` it
begins as any play (``IN_PROGRESS``, ``play.started``), plays its attention signal if
any, then waits for the audio, which comes in a ``media`` command (``for`` the play's
``cmd_id``). A ``media`` command is acked ``RECEIVED`` and ``IN_PROGRESS`` (its download
starts), then ``SUCCEEDED`` once its file is downloaded and verified (``FAILED`` if
not). One that comes before its play, or for
a play that no longer waits, is kept (the last `MAX_FOLLOWED_MEDIA`) so that a later
play takes it at once. Without its audio by ``ready_by`` + `MEDIA_FOLLOWS_GRACE_S` the
play fails, reason ``media never came``.

`CommandHandling` is a part of `Station`: it uses the station's connection, spool,
player and flash, declared below for the type checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Coroutine
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, get_args

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from firmware_bridge.errors import ProtocolError
from firmware_bridge.messages import (
    AckStatus,
    Command,
    CommandType,
    Desired,
    EmptyBody,
    EventType,
    Media,
    MediaBody,
    Message,
    PlayBody,
    Reported,
    StationState,
    StopBody,
    VolumeBody,
    dump_ack,
    dump_message,
    parse_message,
)
from firmware_bridge.schema import MessageKind
from firmware_bridge.simulator.aio_mqtt import AioMqttClient
from firmware_bridge.simulator.clock import SimClock
from firmware_bridge.simulator.config import FleetContext, SimSettings
from firmware_bridge.simulator.faults import Fault
from firmware_bridge.simulator.media import StreamListen
from firmware_bridge.simulator.player import ActivePlay, Outcome, Player, PlayRecord, RunResult
from firmware_bridge.simulator.store import SpoolKind, StationStore
from firmware_bridge.topics import Topics

__all__ = [
    "MAX_ACKS",
    "MAX_FOLLOWED_MEDIA",
    "MEDIA_FOLLOWS_GRACE_S",
    "MEDIA_NEVER_CAME",
    "CommandHandling",
    "clip",
]

log = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _parse_command(payload: bytes) -> Message:
    """A command parsed once per process for all the stations that receive the same
    bytes: a group command reaches every station a simulator process runs, and each
    real station would parse it on its own processor, in parallel, not one after the
    other on this one.  The models are frozen, so stations share them safely; a payload
    that does not parse raises each time (errors are not cached)."""
    return parse_message(MessageKind.COMMAND, payload)


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_TIMESTAMP = TypeAdapter(AwareDatetime)
#: How many commands' last acks a station remembers.
MAX_ACKS = 1000
_MAX_REASON = 500
#: proposal 0005: how long past ``ready_by`` a play waits for its ``media`` command
MEDIA_FOLLOWS_GRACE_S = 10.0
#: how many ``media`` commands' media a station keeps for plays not waiting for them
MAX_FOLLOWED_MEDIA = 32
#: the reason a play that waited for its media in vain fails with
MEDIA_NEVER_CAME = "media never came"


def clip(reason: str | None) -> str | None:
    """A reason short enough for an ack or event."""
    if reason is None or len(reason) <= _MAX_REASON:
        return reason
    return reason[: _MAX_REASON - 3] + "..."


class CommandHandling:
    """Rule 4: commands, their acks and command plays."""

    if TYPE_CHECKING:  # the parts of `Station` this uses
        sid: str
        clock: SimClock
        player: Player
        store: StationStore
        online: bool
        faults: frozenset[Fault]
        _ctx: FleetContext
        _settings: SimSettings
        _topics: Topics
        _mqtt: AioMqttClient | None
        _bdseq: int | None
        _reboot_requested: bool
        _booted_at: datetime
        _desired: Desired | None
        _missing: list[str]
        _volume: int | None
        _state_dirty: bool
        _acks: OrderedDict[str, bytes]
        _ack_status: dict[str, str]
        _pending_plays: dict[str, tuple[PlayRecord, asyncio.Task[Any]]]
        _command_media: dict[str, set[str]]
        _followed_media: OrderedDict[str, Media]
        _media_waiters: dict[str, asyncio.Future[Media]]

        def _send(self, kind: SpoolKind, payload: bytes) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
        def _spawn_named(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
        def _publish_retained(self, topic: str, message: StationState | Reported) -> None: ...
        def _publish_reported(self) -> None: ...
        def _birth(self) -> StationState: ...
        def _end_session(self) -> None: ...
        async def _apply_media(self, desired: Desired) -> None: ...
        async def _fetch(self, media: Media, *, cmd_id: str | None = None) -> bool: ...
        def _emit(self, type_: EventType, **fields: Any) -> None: ...
        def _duration_ms(self, media: Media) -> int | None: ...

    def _on_command(self, payload: bytes) -> None:
        if Fault.DEAF in self.faults:
            return  # a hung command handler: nothing acknowledged, nothing played
        now = self.clock.now()
        try:
            message = _parse_command(payload)
        except ProtocolError as exc:
            self._on_invalid_command(payload, exc, now)
            return
        assert isinstance(message, Command)
        cmd = message
        if now > cmd.not_after:
            self._ack(
                cmd.cmd_id, "EXPIRED", reason=f"not_after passed ({cmd.not_after.isoformat()})"
            )
            if cmd.type == "play" and isinstance(cmd.body, PlayBody):
                self.player.note(self._cmd_record(cmd, cmd.body), "expired", "not_after passed")
            return
        if cmd.cmd_id in self._acks:
            self._send("ack", self._acks[cmd.cmd_id])
            return
        body = cmd.body
        if cmd.type == "play" and isinstance(body, PlayBody):
            self._cmd_play(cmd, body)
        elif cmd.type == "stop" and isinstance(body, StopBody):
            self._cmd_stop(cmd, body)
        elif cmd.type == "volume" and isinstance(body, VolumeBody):
            self._cmd_volume(cmd, body)
        elif cmd.type == "media" and isinstance(body, MediaBody):
            self._cmd_media(cmd, body)
        elif isinstance(body, EmptyBody):
            self._ack(cmd.cmd_id, "RECEIVED")
            self._ack(cmd.cmd_id, "IN_PROGRESS")
            if cmd.type == "ping":
                self._ack(cmd.cmd_id, "SUCCEEDED", station_time=self.clock.now())
            elif cmd.type == "rebirth":
                if self.online:
                    self._publish_retained(self._topics.state(self.sid), self._birth())
                    self._publish_reported()
                self._ack(cmd.cmd_id, "SUCCEEDED")
            elif cmd.type == "sync":
                self._spawn(self._cmd_sync(cmd))
            elif cmd.type == "reboot":
                self._ack(cmd.cmd_id, "SUCCEEDED")
                self._spawn(self._reboot())

    def _on_invalid_command(self, payload: bytes, exc: ProtocolError, now: datetime) -> None:
        try:
            document = json.loads(payload)
        except ValueError:
            document = None
        cmd_id = document.get("cmd_id") if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(cmd_id, str) or not _ID.match(cmd_id):
            log.warning("%s: command without a usable cmd_id dropped: %s", self.sid, exc.reason)
            return
        try:
            not_after: datetime | None = _TIMESTAMP.validate_python(document.get("not_after"))
        except ValidationError:
            not_after = None
        if not_after is not None and now > not_after:
            self._ack(cmd_id, "EXPIRED", reason="not_after passed")
            return
        if cmd_id in self._acks:
            self._send("ack", self._acks[cmd_id])
            return
        ctype = document.get("type")
        if ctype not in get_args(CommandType):
            reason = f"unknown command type {ctype!r}"
        else:
            reason = f"invalid command: {exc.reason.removeprefix('command: ')}"
        self._ack(cmd_id, "REJECTED", reason=reason)

    def _ack(
        self,
        cmd_id: str,
        status: AckStatus,
        *,
        reason: str | None = None,
        station_time: datetime | None = None,
    ) -> None:
        payload = dump_ack(
            cmd_id, status, self.clock.now(), reason=clip(reason), station_time=station_time
        )
        self._acks[cmd_id] = payload
        self._acks.move_to_end(cmd_id)
        while len(self._acks) > MAX_ACKS:
            old, _ = self._acks.popitem(last=False)
            self._ack_status.pop(old, None)
        self._ack_status[cmd_id] = status
        if status not in ("RECEIVED", "IN_PROGRESS"):
            self._command_media.pop(cmd_id, None)  # its media may now leave the cache
        self._state_dirty = True
        self._send("ack", payload)

    @staticmethod
    def _status_of(payload: bytes) -> str:
        try:
            return str(json.loads(payload)["status"])
        except (ValueError, KeyError, TypeError):
            return "?"

    def _cmd_record(self, cmd: Command, body: PlayBody) -> PlayRecord:
        return PlayRecord(
            kind="cmd",
            priority=body.priority,
            cmd_id=cmd.cmd_id,
            title=body.title,
            source="stream" if body.stream is not None else "file",
            volume=body.volume if body.volume is not None else self._volume,
            scheduled_at=body.start_at or self.clock.now(),
        )

    def _cmd_play(self, cmd: Command, body: PlayBody) -> None:
        record = self._cmd_record(cmd, body)
        immediate = body.start_at is None or body.start_at <= self.clock.now()
        blocker = self.player.blocker(body.priority) if immediate else None
        if blocker is not None:
            reason = f"busy: {blocker.ref} at priority {blocker.priority}"
            self._ack(cmd.cmd_id, "REJECTED", reason=reason)
            self.player.note(record, "rejected", reason)
            return
        self._ack(cmd.cmd_id, "RECEIVED")
        task = self._spawn(self._run_play_command(cmd, body, record))
        self._pending_plays[cmd.cmd_id] = (record, task)

    async def _run_play_command(self, cmd: Command, body: PlayBody, record: PlayRecord) -> None:
        try:
            media = body.media
            fallback = body.stream.fallback if body.stream is not None else None
            attention = body.attention
            followed = self._followed_media.get(cmd.cmd_id) if body.media_follows else None
            self._command_media[cmd.cmd_id] = {
                m.sha256 for m in (media, fallback, attention, followed) if m
            }
            missing = media is not None and not self.store.has_media(media.sha256, media.bytes)
            if missing and media is not None and not await self._fetch(media, cmd_id=cmd.cmd_id):
                self._fail_command(cmd, record, "media download failed", "failed")
                return
            if fallback is not None and not self.store.has_media(fallback.sha256, fallback.bytes):
                await self._fetch(fallback, cmd_id=cmd.cmd_id)
            # the attention signal is a nicety: without it, the content plays alone
            if attention is not None and not self.store.has_media(
                attention.sha256, attention.bytes
            ):
                await self._fetch(attention, cmd_id=cmd.cmd_id)
            if body.start_at is not None:
                await self.clock.sleep_until(body.start_at)
            now = self.clock.now()
            scheduled_in_time = body.start_at is not None and body.start_at <= cmd.not_after
            if now > cmd.not_after and not scheduled_in_time:
                # e.g. a download outlasted the command: never start after not_after
                self._ack(cmd.cmd_id, "EXPIRED", reason="not_after passed before the start")
                self.player.note(record, "expired", "not_after passed before the start")
                return
            if body.until is not None and now >= body.until:
                self._fail_command(cmd, record, "until passed before the start", "failed")
                return
            blocker = self.player.blocker(body.priority)
            if blocker is not None:
                reason = f"busy: {blocker.ref} at priority {blocker.priority}"
                self._ack(cmd.cmd_id, "REJECTED", reason=reason)
                self.player.note(record, "rejected", reason)
                return
        finally:
            self._pending_plays.pop(cmd.cmd_id, None)
        self._ack(cmd.cmd_id, "IN_PROGRESS")
        self.player.begin(
            record,
            partial(self._run_command_play, body),
            on_end=partial(self._command_play_ended, cmd.cmd_id),
        )

    def _fail_command(
        self, cmd: Command, record: PlayRecord, reason: str, outcome: Outcome
    ) -> None:
        self._ack(cmd.cmd_id, "FAILED", reason=reason)
        self.player.note(record, outcome, reason)

    def _command_play_ended(self, cmd_id: str, record: PlayRecord) -> None:
        if record.outcome == "finished":
            self._ack(cmd_id, "SUCCEEDED")
        else:
            self._ack(cmd_id, "FAILED", reason=f"{record.outcome}: {record.reason}")

    async def _media_ms(self, media: Media) -> int | None:
        """The media's length: as its message says (no thread for that: a city-wide
        play starts thousands at once), else probed from the cached file off the loop."""
        if media.duration_ms is not None:
            return media.duration_ms
        return await asyncio.to_thread(self._duration_ms, media)

    async def _run_command_play(self, body: PlayBody, active: ActivePlay) -> RunResult:
        attention = body.attention
        if attention is not None and self.store.has_media(attention.sha256, attention.bytes):
            # proposal 0003: the signal once, at the play's volume, then the content
            ms = await self._media_ms(attention)
            ms = ms if ms is not None else (attention.duration_ms or 0)
            active.record.attention_ms = ms
            await self.clock.sleep_until(self.clock.now() + timedelta(milliseconds=ms))
        media = body.media
        if media is None and body.media_follows is not None:
            cmd_id = active.record.cmd_id or ""
            media = await self._await_followed_media(cmd_id, body.media_follows.ready_by)
            if media is None:
                return "failed", MEDIA_NEVER_CAME
            self._command_media.setdefault(cmd_id, set()).add(media.sha256)
            # evicted from the cache since it came (a desired-state sync): fetch it again
            missing = not self.store.has_media(media.sha256, media.bytes)
            if missing and not await self._fetch(media, cmd_id=cmd_id):
                return "failed", "media download failed"
        now = self.clock.now()
        repeat = body.repeat or 1
        default = timedelta(seconds=self._settings.default_play_s)
        if media is not None:
            duration_ms = await self._media_ms(media)
            one = timedelta(milliseconds=duration_ms) if duration_ms is not None else default
            end = now + one * repeat
            if body.until is not None:
                end = min(end, body.until)
            await self.clock.sleep_until(end)
            return "finished", None
        assert body.stream is not None
        end = body.until if body.until is not None else now + default * repeat
        return await self._play_stream(
            body.stream.url,
            body.stream.fallback,
            end,
            active,
            cmd_id=active.record.cmd_id,
            repeat=repeat,
        )

    async def _play_stream(
        self,
        url: str,
        fallback: Media | None,
        end: datetime,
        active: ActivePlay,
        *,
        item_id: str | None = None,
        cmd_id: str | None = None,
        repeat: int = 1,
    ) -> RunResult:
        """Play a stream until ``end`` by reading it as a speaker would (a command's
        ``stream`` or a playlist relay alike).  A stream that cannot be opened, or dies
        and stays dead for ``relay_open_timeout_s``, ends in the fallback media if any,
        else the play fails: a station never keeps "playing" a dead stream."""
        reading = StreamListen()
        active.record.stream = reading
        tap = self._settings.stream_tap
        on_bytes = partial(tap, self.sid, active.record.ref) if tap is not None else None
        gap = self.clock.real_seconds(self._settings.relay_open_timeout_s)
        left = self.clock.real_seconds((end - self.clock.now()).total_seconds())
        try:
            async with asyncio.timeout(max(left, 0.0)):
                reason = await self._ctx.fetcher.listen(
                    url, gap_s=gap, reading=reading, on_bytes=on_bytes
                )
        except TimeoutError:
            return "finished", None
        if reading.opens:
            reason = f"stream lost: {reason}"
        return await self._play_fallback(
            fallback, end, active, item_id=item_id, cmd_id=cmd_id, repeat=repeat, reason=reason
        )

    async def _await_followed_media(self, cmd_id: str, ready_by: datetime) -> Media | None:
        """Proposal 0005: the media of play ``cmd_id``, once its ``media`` command has
        brought it (at once if it came early); None if not by ``ready_by`` + the grace.
        Cancelled with the play (a ``stop``, a preemption, a reboot)."""
        media = self._followed_media.pop(cmd_id, None)
        if media is not None:
            return media
        waiter: asyncio.Future[Media] = asyncio.get_running_loop().create_future()
        self._media_waiters[cmd_id] = waiter
        deadline = ready_by + timedelta(seconds=MEDIA_FOLLOWS_GRACE_S)
        try:
            left = self.clock.real_seconds((deadline - self.clock.now()).total_seconds())
            async with asyncio.timeout(max(left, 0.0)):
                return await waiter
        except TimeoutError:
            return None
        finally:
            if self._media_waiters.get(cmd_id) is waiter:
                del self._media_waiters[cmd_id]

    def _cmd_media(self, cmd: Command, body: MediaBody) -> None:
        self._ack(cmd.cmd_id, "RECEIVED")
        self._ack(cmd.cmd_id, "IN_PROGRESS")  # the download starts
        self._spawn(self._run_media_command(cmd, body))

    async def _run_media_command(self, cmd: Command, body: MediaBody) -> None:
        """Proposal 0005: download and verify the media of the play ``body.for_`` names,
        then hand it to that play (or keep it for a play still to come)."""
        media = body.media
        self._command_media[cmd.cmd_id] = {media.sha256}
        stored = self.store.has_media(media.sha256, media.bytes)
        if not stored and not await self._fetch(media, cmd_id=cmd.cmd_id):
            self._ack(cmd.cmd_id, "FAILED", reason="media download failed")
            return
        self._hand_followed_media(body.for_, media)
        self._ack(cmd.cmd_id, "SUCCEEDED")

    def _hand_followed_media(self, play_id: str, media: Media) -> None:
        if play_id in self._command_media:  # the play is pending or on air: keep its file
            self._command_media[play_id].add(media.sha256)
        waiter = self._media_waiters.get(play_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(media)
            return
        # it came first (redelivery order), or for a play not waiting (any more): keep it
        self._followed_media[play_id] = media
        self._followed_media.move_to_end(play_id)
        while len(self._followed_media) > MAX_FOLLOWED_MEDIA:
            self._followed_media.popitem(last=False)

    def _cmd_stop(self, cmd: Command, body: StopBody) -> None:
        self._ack(cmd.cmd_id, "RECEIVED")
        self._ack(cmd.cmd_id, "IN_PROGRESS")
        max_priority = body.max_priority if body.max_priority is not None else 9
        reason = f"stopped by {cmd.cmd_id}"
        stopped = self.player.stop(max_priority, cmd_id=body.cmd_id, reason=reason)
        for pid, (record, task) in list(self._pending_plays.items()):
            if (body.cmd_id is None or body.cmd_id == pid) and record.priority <= max_priority:
                task.cancel()
                self._pending_plays.pop(pid, None)
                self._ack(pid, "FAILED", reason=f"cancelled by {cmd.cmd_id}")
                self.player.note(record, "failed", f"cancelled by {cmd.cmd_id}")
                stopped += 1
        self._ack(cmd.cmd_id, "SUCCEEDED", reason=f"stopped {stopped} play(s)")

    def _cmd_volume(self, cmd: Command, body: VolumeBody) -> None:
        self._ack(cmd.cmd_id, "RECEIVED")
        self._ack(cmd.cmd_id, "IN_PROGRESS")
        self._volume = body.level
        self._state_dirty = True
        if self._desired is not None:
            self._publish_reported()
        self._ack(cmd.cmd_id, "SUCCEEDED")

    async def _cmd_sync(self, cmd: Command) -> None:
        desired = self._desired
        if desired is None:
            self._ack(cmd.cmd_id, "SUCCEEDED", reason="no desired state held")
            return
        task = self._spawn_named("apply", self._apply_media(desired))
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._missing:
            self._ack(cmd.cmd_id, "FAILED", reason=f"{len(self._missing)} media still missing")
        else:
            self._ack(cmd.cmd_id, "SUCCEEDED")

    async def _reboot(self) -> None:
        """``reboot``: publish our own death, DISCONNECT, reboot the player, reconnect."""
        client = self._mqtt
        if client is None or self._bdseq is None:
            return
        death = dump_message(StationState(online=False, bdseq=self._bdseq))
        self.online = False
        await client.publish_wait(self._topics.state(self.sid), death, retain=True)
        self._reboot_requested = True
        await client.disconnect()
        self._end_session()
        self.player.halt("reboot", emit=True)
        self._booted_at = self.clock.now()
        log.info("%s: rebooted", self.sid)

    async def _play_fallback(
        self,
        fallback: Media | None,
        end: datetime,
        active: ActivePlay,
        *,
        item_id: str | None = None,
        cmd_id: str | None = None,
        repeat: int,
        reason: str = "stream could not be opened within 10 s",
    ) -> RunResult:
        """Play a relay's fallback when its stream cannot be opened or is lost (a
        command's stream or a playlist relay alike)."""
        if fallback is None or not self.store.has_media(fallback.sha256, fallback.bytes):
            missing = "fallback missing" if fallback else "no fallback"
            return "failed", f"{reason}; {missing}"
        self._emit(
            "relay.fallback",
            item_id=item_id,
            cmd_id=cmd_id,
            sha256=fallback.sha256,
            desired_version=active.record.desired_version,
            reason=clip(reason),
        )
        active.record.source = "fallback"
        if fallback.duration_ms is not None:
            end = min(end, self.clock.now() + timedelta(milliseconds=fallback.duration_ms * repeat))
        await self.clock.sleep_until(end)
        return "finished", None
