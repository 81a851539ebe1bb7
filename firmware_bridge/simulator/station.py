"""One virtual station controller, following PROTOCOL.md "Station behaviour" 1-6.

Lifecycle: :meth:`Station.boot` loads the station's flash (:mod:`.store`), schedules the
playlist it already holds and starts the connection loop. Each connection is a fresh
:class:`~.aio_mqtt.AioMqttClient`: client id ``st-{sid}``, username ``{sid}`` and the
station secret, clean start false (session expiry on MQTT 5), keep-alive 30 s and the
will ``{"online": false, "bdseq": N}`` (retained, QoS 1, 10 s will delay on MQTT 5).
``bdseq`` is the last one plus one and is persisted once the broker accepts the
connection. After CONNACK the station subscribes (own ``cmd`` and ``desired``,
``server/state``, ``grp/all/cmd`` and one ``grp/{gid}/cmd`` per configured group), then
publishes its birth, its ``reported`` state and the spool, and starts telemetry with
``seq`` 0.

Outbound acks and events go through a spool (:meth:`Station._send`): appended to disk
first, published at once when online, kept until the broker's PUBACK. Whatever is
unacknowledged when the link drops is published again, oldest first, after the next
birth. Events carry ``{sid}.{boot}.{n}`` ids, unique across reboots.

Commands (rule 4) are handled by `.commands.CommandHandling`, a part of `Station`; the
settings and value types live in `.config` (and are re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import OrderedDict, deque
from collections.abc import Coroutine
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion

from firmware_bridge.errors import ConfigError, ProtocolError, TopicError
from firmware_bridge.messages import (
    Desired,
    Event,
    EventType,
    FaultKind,
    Media,
    Playing,
    PlaylistItem,
    Reported,
    StationState,
    Telemetry,
    dump_message,
    parse_message,
)
from firmware_bridge.schema import MessageKind
from firmware_bridge.simulator.aio_mqtt import AioMqttClient, ConnectFailed
from firmware_bridge.simulator.commands import CommandHandling, clip
from firmware_bridge.simulator.config import FleetContext, SimSettings, StationSpec, StationStatus
from firmware_bridge.simulator.duration import media_duration_ms
from firmware_bridge.simulator.faults import RUNTIME, Fault
from firmware_bridge.simulator.health import Health
from firmware_bridge.simulator.player import ActivePlay, Player, PlayRecord, RunResult
from firmware_bridge.simulator.store import PersistedState, SpoolEntry, SpoolKind, StationStore
from firmware_bridge.topics import TopicKind

__all__ = ["FleetContext", "SimSettings", "Station", "StationSpec", "StationStatus"]

log = logging.getLogger(__name__)


def _item_ids(desired: Desired | None) -> frozenset[str]:
    """The ids of a desired playlist's items (what a station's handled items are kept
    against: worked out once per desired, not at every write of the state)."""
    return frozenset(i.item_id for i in desired.playlist) if desired is not None else frozenset()


_BDSEQ_MOD = 2**31
_DEFAULT_TELEMETRY_S = 60


class Station(CommandHandling):
    """A virtual station controller (commands: `CommandHandling`)."""

    def __init__(
        self, spec: StationSpec, ctx: FleetContext, faults: set[Fault], rng: random.Random
    ) -> None:
        self.sid = spec.sid
        self.password = spec.password
        self.faults = frozenset(faults)
        self._ctx = ctx
        self._settings = ctx.settings
        self._topics = ctx.topics
        self._rng = rng
        # a clock of its own (shared origin and speed), so that a clock fault can shift it
        self.clock = ctx.clock.with_offset(self._clock_fault() if Fault.CLOCK in faults else 0.0)
        self.store = StationStore(ctx.state_dir / spec.sid)
        self.player = Player(self.clock.now, self._on_play_event)
        self.alive = False
        self.online = False
        self.connects = 0
        self.events_sent = 0
        self._protocol = (
            MQTTProtocolVersion.MQTTv311
            if self._settings.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        brokers = len(ctx.url.addresses)
        self._broker_attempt = rng.randrange(brokers) if brokers > 1 else 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._named: dict[str, asyncio.Task[Any]] = {}
        self._mqtt: AioMqttClient | None = None
        self._frozen: AioMqttClient | None = None
        self._session_ended = asyncio.Event()
        self._reboot_requested = False
        self._bdseq: int | None = None
        self._boot_id = ""
        self._event_n = 0
        self._booted_at = self.clock.now()
        self._desired: Desired | None = None
        self._applied_version: int | None = None
        self._missing: list[str] = []
        self._volume: int | None = None
        self._groups: set[str] = set()
        self._acks: OrderedDict[str, bytes] = OrderedDict()
        self._ack_status: dict[str, str] = {}
        self._handled: set[str] = set()
        self._current_items: frozenset[str] = frozenset()  # the desired playlist's item ids
        self._pending_plays: dict[str, tuple[PlayRecord, asyncio.Task[Any]]] = {}
        self._command_media: dict[str, set[str]] = {}
        # proposal 0005: media of ``media`` commands not yet taken by their play, and
        # the plays waiting for theirs
        self._followed_media: OrderedDict[str, Media] = OrderedDict()
        self._media_waiters: dict[str, asyncio.Future[Media]] = {}
        self._spool_seq = 0
        self._pending: deque[SpoolEntry] = deque()
        self._inflight: dict[int, SpoolEntry] = {}
        self._spool_dirty = False
        self._state_dirty = False
        self._telemetry_seq = 0
        self._health_at = self.clock.now()
        self.health = Health(rng)
        self._unstalled = asyncio.Event()  # cleared while the ``stall`` fault holds
        if Fault.STALL not in faults:
            self._unstalled.set()

    def _clock_fault(self) -> float:
        low, high = self._settings.faults.clock_offset_s
        return self._rng.uniform(low, high) * self._rng.choice((-1.0, 1.0))

    # ================================================================ lifecycle

    async def boot(self) -> None:
        """Power on: load the flash, resume the plan, start connecting."""
        if self.alive:
            return
        self.alive = True
        self.online = False
        self._boot_id = secrets.token_hex(4)
        self._event_n = 0
        self._booted_at = self.clock.now()
        self._health_at = self._booted_at
        state = self.store.load_state()
        self._bdseq = state.last_bdseq
        self._volume = state.volume
        self._handled = set(state.handled_items)
        self._acks = OrderedDict((k, v.encode("utf-8")) for k, v in state.acks.items())
        self._ack_status = {k: self._status_of(v) for k, v in self._acks.items()}
        self._pending = deque()
        self._inflight = {}
        for kind, payload in self.store.load_spool():
            self._spool_seq += 1
            self._pending.append(SpoolEntry(self._spool_seq, kind, payload))
        self.health = Health(
            self._rng,
            overheat=Fault.OVERHEAT in self.faults,
            speaker_fault=Fault.SPEAKER in self.faults,
            storage_low=Fault.STORAGE in self.faults,
            clock_unsynced=Fault.CLOCK in self.faults,
        )
        self._desired = self._load_desired()
        self._current_items = _item_ids(self._desired)
        self._applied_version = self._desired.version if self._desired else None
        self._groups = set(self._desired.config.groups) if self._desired else set()
        if self._desired is not None:
            self._missing = self._compute_missing(self._desired)
            self._schedule_playlist(self._desired)
            if self._missing:
                self._spawn_named("apply", self._apply_media(self._desired))
        self._spawn(self._connection_loop())
        self._spawn(self._health_loop())
        if Fault.FLAP in self.faults:
            self._spawn_named("flap", self._flap_loop())
        if Fault.MAINS in self.faults:
            self._spawn(self._mains_loop())

    async def shutdown(self) -> None:
        """Stop cleanly: publish the death ourselves, DISCONNECT, persist."""
        if not self.alive:
            self._dispose_frozen()
            self.store.close()
            return
        self.alive = False
        client = self._mqtt
        await self._cancel_tasks()
        self.player.halt("simulator stopped", emit=False)
        if client is not None:
            if self.online and client.connected and self._bdseq is not None:
                death = dump_message(StationState(online=False, bdseq=self._bdseq))
                await client.publish_wait(self._topics.state(self.sid), death, retain=True)
            await client.disconnect()
        self._end_session()
        self._mqtt = None
        self.flush()
        self.store.close()

    async def kill(self, mode: Literal["silent", "abort"] = "silent") -> None:
        """Power loss: vanish without DISCONNECT.

        ``silent`` freezes the socket (the broker fires the will after 1.5 x keep-alive);
        ``abort`` drops the TCP connection (the broker fires the will at once, or after
        the will delay on MQTT 5).
        """
        if not self.alive:
            return
        self.alive = False
        client = self._mqtt
        self._mqtt = None
        if client is not None:
            if mode == "silent":
                client.freeze()
                self._frozen = client
            else:
                client.dispose()
        await self._cancel_tasks()
        self.player.halt("power lost", emit=False)
        self._end_session()
        self.store.close()  # what it wrote is in the file; the next boot opens it again

    async def restart(self) -> None:
        """Boot again after :meth:`kill` (or kill first if still alive)."""
        await self.kill("abort")
        self._dispose_frozen()
        await self.boot()

    def drop_link(self) -> None:
        """A link flap: the connection drops without DISCONNECT; the station reconnects."""
        if self._mqtt is not None:
            self._mqtt.abort()

    def tick(self) -> None:
        """Once a second from the fleet: MQTT keep-alive and debounced persistence."""
        if self._mqtt is not None:
            self._mqtt.tick()
        self.flush()

    def flush(self) -> None:
        """Write the spool and small state if they changed."""
        if self._spool_dirty:
            self._spool_dirty = False
            entries = sorted([*self._pending, *self._inflight.values()], key=lambda e: e.seq)
            self.store.rewrite_spool(entries)
        if self._state_dirty:
            self._save_state()

    @property
    def spooled(self) -> int:
        """Acks and events not yet acknowledged by the broker."""
        return len(self._pending) + len(self._inflight)

    def status(self) -> StationStatus:
        """A snapshot for tests and the fleet summary."""
        current = self.player.current
        return StationStatus(
            sid=self.sid,
            alive=self.alive,
            online=self.online,
            bdseq=self._bdseq,
            connects=self.connects,
            protocol=None
            if self._mqtt is None
            else ("5" if self._mqtt.protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"),
            desired_version=self._applied_version,
            missing=tuple(self._missing),
            volume=self._volume,
            groups=tuple(sorted(self._groups)),
            playing=current.record.snapshot() if current is not None else None,
            plays=tuple(r.snapshot() for r in self.player.history),
            acks=dict(self._ack_status),
            faults=tuple(sorted(f.value for f in self.faults)),
            active_faults=tuple(sorted(self.health.active)),
            events_sent=self.events_sent,
            spooled=self.spooled,
            telemetry_seq=self._telemetry_seq,
            clock_offset_s=self.clock.offset_s,
        )

    # ================================================================ tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _spawn_named(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro`` under ``name``, cancelling the previous task of that name."""
        old = self._named.pop(name, None)
        if old is not None:
            old.cancel()
        task = self._spawn(coro)
        self._named[name] = task
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task failed", self.sid, exc_info=task.exception())

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        active = self.player.current
        if active is not None and active.task is not None:
            tasks.append(active.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._named.clear()
        self._pending_plays.clear()

    def _dispose_frozen(self) -> None:
        if self._frozen is not None:
            self._frozen.dispose()
            self._frozen = None

    # ================================================================ connection

    async def _connection_loop(self) -> None:
        settings = self._settings
        delay = settings.reconnect_min_s
        while True:
            try:
                await self._connect()
            except ConnectFailed as exc:
                if (
                    exc.protocol_refused
                    and settings.protocol == "auto"
                    and self._protocol == MQTTProtocolVersion.MQTTv5
                ):
                    log.info("%s: broker refused MQTT 5, using 3.1.1", self.sid)
                    self._protocol = MQTTProtocolVersion.MQTTv311
                    continue
                log.debug("%s: connect failed: %s", self.sid, exc.reason)
            else:
                delay = settings.reconnect_min_s
                await self._session_ended.wait()
                if self._reboot_requested:
                    self._reboot_requested = False
                    continue
            await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))
            delay = min(delay * 2, settings.reconnect_max_s)

    async def _connect(self) -> None:
        ctx, settings = self._ctx, self._settings
        bdseq = 0 if self._bdseq is None else (self._bdseq + 1) % _BDSEQ_MOD
        death = dump_message(StationState(online=False, bdseq=bdseq))
        client = AioMqttClient(
            client_id=f"st-{self.sid}",
            protocol=self._protocol,
            keepalive=settings.keepalive,
            executor=ctx.executor,
            username=self.sid,
            password=self.password,
            will=(self._topics.state(self.sid), death),
            will_delay_s=settings.will_delay_s,
            session_expiry_s=settings.session_expiry_s,
            clean_start=False,
            tls=ctx.tls,
            on_message=self._on_message,
            on_published=self._on_published,
            on_lost=self._on_lost,
        )
        self._session_ended = asyncio.Event()
        try:
            # A clustered broker: spread the stations over the nodes, and try the next
            # node after a failed or lost connection (the session lives in the cluster).
            host, port = ctx.url.address(self._broker_attempt)
            self._broker_attempt += 1
            async with ctx.connect_slots:
                await client.connect(host, port, timeout_s=settings.connect_timeout_s)
        except BaseException:
            client.dispose()
            raise
        self._mqtt = client
        self._bdseq = bdseq
        self._save_state()
        self.connects += 1
        try:
            refused = await client.subscribe(
                [(topic, 1) for topic in self._subscriptions(self._groups)]
            )
            if refused and ctx.url.clustered:
                # a cluster that lost a node answers 0x80 until it elected new leaders:
                # start again (on the next node) rather than stay deaf
                raise ConnectFailed(f"subscriptions refused: {', '.join(refused)}")
        except (ConnectFailed, TimeoutError) as exc:
            client.dispose()
            self._end_session()
            raise ConnectFailed(f"subscribe failed: {exc}") from exc
        if not client.connected:
            self._end_session()
            raise ConnectFailed("connection lost while subscribing")
        self._publish_retained(self._topics.state(self.sid), self._birth())
        self.online = True
        if self._desired is not None:
            self._publish_reported()
        while self._pending:
            self._publish_entry(self._pending.popleft())
        self._telemetry_seq = 0
        self._spawn_named("telemetry", self._telemetry_loop())
        log.debug("%s: online (bdseq %d)", self.sid, bdseq)

    def _subscriptions(self, groups: set[str]) -> list[str]:
        topics = self._topics
        return [
            topics.cmd(self.sid),
            topics.desired(self.sid),
            topics.server_state(),
            *(topics.group_cmd(gid) for gid in sorted({"all", *groups})),
        ]

    def _birth(self) -> StationState:
        return StationState(
            online=True,
            bdseq=self._bdseq if self._bdseq is not None else 0,
            at=self.clock.now(),
            firmware=self._settings.firmware,
            model=self._settings.model,
            capabilities=list(self._settings.capabilities),
            desired_version=self._applied_version,
        )

    def _on_lost(self, reason: str) -> None:
        log.info("%s: connection lost (%s)", self.sid, reason)
        self._end_session()

    def _end_session(self) -> None:
        """Forget the connection: requeue unacknowledged messages, stop telemetry."""
        self.online = False
        if self._inflight:
            requeue = sorted([*self._inflight.values(), *self._pending], key=lambda e: e.seq)
            self._inflight.clear()
            self._pending = deque(requeue)
        task = self._named.pop("telemetry", None)
        if task is not None:
            task.cancel()
        self._session_ended.set()

    def _publish_retained(self, topic: str, message: StationState | Reported) -> None:
        if self._mqtt is not None:
            self._mqtt.publish(topic, dump_message(message), qos=1, retain=True)

    def _publish_reported(self) -> None:
        if not self.online:
            return
        reported = Reported(
            desired_version=self._applied_version,
            at=self.clock.now(),
            missing=list(self._missing),
            cache_bytes=self.store.cache_bytes(),
            volume=self._volume,
        )
        self._publish_retained(self._topics.reported(self.sid), reported)

    # ================================================================ spool

    def _send(self, kind: SpoolKind, payload: bytes) -> None:
        self._spool_seq += 1
        entry = SpoolEntry(self._spool_seq, kind, payload)
        self.store.append_spool(entry)
        if self.online and self._mqtt is not None:
            self._publish_entry(entry)
        else:
            self._pending.append(entry)

    def _publish_entry(self, entry: SpoolEntry) -> None:
        assert self._mqtt is not None
        topic = self._topics.ack(self.sid) if entry.kind == "ack" else self._topics.event(self.sid)
        mid = self._mqtt.publish(topic, entry.payload, qos=1, retain=False)
        self._inflight[mid] = entry

    def _on_published(self, mid: int) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        self._spool_dirty = True
        if entry.kind == "event":
            self.events_sent += 1

    def _emit(self, type_: EventType, **fields: Any) -> None:
        self._event_n += 1
        event = Event(
            event_id=f"{self.sid}.{self._boot_id}.{self._event_n}",
            type=type_,
            at=self.clock.now(),
            **fields,
        )
        self._send("event", dump_message(event))

    def _on_play_event(self, type_: EventType, record: PlayRecord) -> None:
        self._emit(
            type_,
            item_id=record.item_id,
            cmd_id=record.cmd_id,
            desired_version=record.desired_version,
            position_ms=record.position_ms,
            reason=clip(record.reason) if type_ != "play.started" else None,
        )

    # ================================================================ persistence

    def _save_state(self) -> None:
        self._state_dirty = False
        state = PersistedState(
            last_bdseq=self._bdseq,
            volume=self._volume,
            handled_items=sorted(self._handled & self._current_items),
            acks={k: v.decode("utf-8") for k, v in self._acks.items()},
        )
        self.store.save_state(state)

    def _load_desired(self) -> Desired | None:
        raw = self.store.load_desired()
        if raw is None:
            return None
        try:
            desired = parse_message(MessageKind.DESIRED, raw)
        except ProtocolError as exc:
            log.warning("%s: stored desired unreadable: %s", self.sid, exc.reason)
            return None
        assert isinstance(desired, Desired)
        return desired

    # ================================================================ inbound

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if not self.alive:
            return
        try:
            ref = self._topics.parse(message.topic)
        except TopicError as exc:
            log.warning("%s: %s", self.sid, exc.reason)
            return
        if ref.kind == TopicKind.DESIRED and ref.sid == self.sid:
            self._on_desired(bytes(message.payload))
        elif (ref.kind == TopicKind.CMD and ref.sid == self.sid) or ref.kind == TopicKind.GROUP_CMD:
            self._on_command(bytes(message.payload))
        elif ref.kind == TopicKind.SERVER_STATE:
            log.debug("%s: server state %r", self.sid, message.payload[:80])

    # ---------------------------------------------------------------- desired (rule 2)

    def _on_desired(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            desired = parse_message(MessageKind.DESIRED, payload)
        except ProtocolError as exc:
            log.warning("%s: invalid desired ignored: %s", self.sid, exc.reason)
            return
        assert isinstance(desired, Desired)
        held = self._desired.version if self._desired is not None else None
        if held is not None and desired.version <= held:
            log.debug("%s: desired v%d ignored (holding v%d)", self.sid, desired.version, held)
            return
        self._desired = desired
        self._current_items = _item_ids(desired)
        self.store.save_desired(payload)
        self._volume = desired.config.volume
        self._state_dirty = True
        self._apply_groups(set(desired.config.groups))
        self._schedule_playlist(desired)
        if self.online:
            self._spawn_named("telemetry", self._telemetry_loop(publish_first=False))
        self._spawn_named("apply", self._apply_media(desired))

    def _apply_groups(self, groups: set[str]) -> None:
        if groups == self._groups:
            return
        old = self._groups
        self._groups = groups
        client = self._mqtt
        if client is None or not client.connected:
            return
        added = sorted(groups - old - {"all"})
        removed = sorted(old - groups - {"all"})
        if added:
            self._spawn(self._subscribe_groups(client, added))
        client.unsubscribe([self._topics.group_cmd(gid) for gid in removed])

    async def _subscribe_groups(self, client: AioMqttClient, gids: list[str]) -> None:
        with contextlib.suppress(ConnectFailed, TimeoutError):
            await client.subscribe([(self._topics.group_cmd(gid), 1) for gid in gids])

    def _referenced_media(self, desired: Desired) -> dict[str, Media]:
        now = self.clock.now()
        refs: dict[str, Media] = {}
        for item in desired.playlist:
            if item.end_at <= now:
                continue
            for media in (item.media, item.fallback):
                if media is not None:
                    refs.setdefault(media.sha256, media)
        return refs

    def _compute_missing(self, desired: Desired) -> list[str]:
        return sorted(
            sha
            for sha, media in self._referenced_media(desired).items()
            if not self.store.has_media(sha, media.bytes)
        )

    async def _apply_media(self, desired: Desired) -> None:
        await self._unstalled.wait()  # the ``stall`` fault: never done while it holds
        refs = self._referenced_media(desired)
        todo = [m for sha, m in refs.items() if not self.store.has_media(sha, m.bytes)]
        await asyncio.gather(*(self._fetch(media) for media in todo))
        in_use = set(refs).union(*self._command_media.values())
        self.store.drop_media_except(in_use)
        self._missing = self._compute_missing(desired)
        self._applied_version = desired.version
        self._publish_reported()

    async def _fetch(self, media: Media, *, cmd_id: str | None = None) -> bool:
        result = await self._ctx.fetcher.fetch(
            media,
            self.store.media_path(media.sha256),
            throttle_bps=self._settings.faults.slow_bytes_per_s
            if Fault.SLOW in self.faults
            else None,
            corrupt=Fault.CORRUPT in self.faults,
        )
        if result.status == "corrupt":
            self._emit(
                "media.corrupt",
                sha256=media.sha256,
                cmd_id=cmd_id,
                desired_version=self._desired.version if self._desired and cmd_id is None else None,
                reason=clip(result.reason),
            )
        if result.status != "ok":
            log.warning("%s: media %s: %s", self.sid, media.sha256[:12], result.reason)
        return result.status == "ok"

    # ---------------------------------------------------------------- playlist (rule 3)

    def _schedule_playlist(self, desired: Desired) -> None:
        self._spawn_named("playlist", self._playlist_loop(desired))

    async def _playlist_loop(self, desired: Desired) -> None:
        now = self.clock.now()
        pending = [
            item
            for item in desired.playlist
            if item.item_id not in self._handled and self._item_end(item) > now
        ]
        pending.sort(key=lambda item: item.start_at)
        while pending:
            await self.clock.sleep_until(pending[0].start_at)
            now = self.clock.now()
            due = [item for item in pending if item.start_at <= now]
            pending = [item for item in pending if item.start_at > now]
            for item in sorted(due, key=lambda item: -item.priority):
                if self._item_end(item) > now:
                    self._start_item(item, desired.version)

    def _item_end(self, item: PlaylistItem) -> datetime:
        """When the item stops: its media's duration (unless looped), at most ``end_at``."""
        media = item.media if item.kind == "file" else None
        if media is None or item.loop:
            return item.end_at
        duration_ms = self._duration_ms(media)
        if duration_ms is None:
            return item.end_at
        return min(item.end_at, item.start_at + timedelta(milliseconds=duration_ms))

    def _duration_ms(self, media: Media) -> int | None:
        """The media's length: as the message says, else the cached file's real length."""
        if media.duration_ms is not None:
            return media.duration_ms
        if not self.store.has_media(media.sha256, media.bytes):
            return None
        return media_duration_ms(self.store.media_path(media.sha256), media.sha256)

    def _start_item(self, item: PlaylistItem, version: int) -> None:
        now = self.clock.now()
        self._handled.add(item.item_id)
        self._state_dirty = True
        record = PlayRecord(
            kind="item",
            priority=item.priority,
            item_id=item.item_id,
            title=item.title,
            source=item.kind,
            volume=item.volume if item.volume is not None else self._volume,
            desired_version=version,
            scheduled_at=item.start_at,
        )
        blocker = self.player.blocker(item.priority)
        if blocker is not None:
            self.player.skip(record, f"busy: {blocker.ref} at priority {blocker.priority}")
            return
        offset_ms = max(0, int((now - item.start_at).total_seconds() * 1000))
        if item.kind == "file":
            media = item.media
            if media is None or not self.store.has_media(media.sha256, media.bytes):
                self.player.skip(record, "media missing")
                return
            self.player.begin(
                record, partial(self._play_until, self._item_end(item)), offset_ms=offset_ms
            )
        else:
            self.player.begin(record, partial(self._run_relay, item), offset_ms=offset_ms)

    async def _play_until(self, end: datetime, active: ActivePlay) -> RunResult:
        await self.clock.sleep_until(end)
        return "finished", None

    async def _run_relay(self, item: PlaylistItem, active: ActivePlay) -> RunResult:
        assert item.url is not None
        return await self._play_stream(
            item.url, item.fallback, item.end_at, active, item_id=item.item_id
        )

    # ---------------------------------------------------------------- telemetry (rule 6)

    def _telemetry_interval(self) -> float:
        if self._desired is None:
            return _DEFAULT_TELEMETRY_S
        return self._desired.config.telemetry_interval_s

    async def _telemetry_loop(self, *, publish_first: bool = True) -> None:
        if not publish_first:
            await self.clock.sleep(self._telemetry_interval())
        while self.online and self._mqtt is not None:
            self._publish_telemetry(self._mqtt)
            await self.clock.sleep(self._telemetry_interval())

    def _publish_telemetry(self, client: AioMqttClient) -> None:
        current = self.player.current
        playing = None
        if current is not None:
            rec = current.record
            playing = Playing(priority=rec.priority, item_id=rec.item_id, cmd_id=rec.cmd_id)
        health = self.health
        now = self.clock.now()
        telemetry = Telemetry(
            seq=self._telemetry_seq,
            at=now,
            uptime_s=max(0, int((now - self._booted_at).total_seconds())),
            volume=self._volume if self._volume is not None else 70,
            playing=playing,
            clock_offset_ms=round(self.clock.offset_s * 1000 + self._rng.gauss(0.0, 2.0), 1),
            rssi_dbm=round(health.rssi_dbm, 1),
            amp_temp_c=round(health.amp_temp_c, 1),
            supply_v=round(health.supply_v, 2),
            on_battery=health.on_battery,
            speaker_ok=health.speaker_ok,
            storage_free_mb=round(health.storage_free_mb, 1),
            fm_on=False,
        )
        client.publish(
            self._topics.telemetry(self.sid), dump_message(telemetry), qos=0, retain=False
        )
        self._telemetry_seq += 1

    async def _health_loop(self) -> None:
        while True:
            period = min(max(self._telemetry_interval(), 5.0), 60.0)
            await self.clock.sleep(period)
            self._health_step()

    def _health_step(self) -> None:
        now = self.clock.now()
        dt = (now - self._health_at).total_seconds()
        self._health_at = now
        current = self.player.current
        volume = self._volume if self._volume is not None else 70
        if current is not None and current.record.volume is not None:
            volume = current.record.volume
        for change in self.health.step(dt, playing=current is not None, volume=volume):
            fault: FaultKind = change.fault
            self._emit(
                "fault.raised" if change.raised else "fault.cleared",
                fault=fault,
                reason=clip(change.reason),
            )

    def inject(self, fault: Fault, active: bool = True) -> None:
        """Switch a fault (any of `faults.RUNTIME`) on or off while running; the station
        reports at once (fault event and telemetry)."""
        if fault not in RUNTIME:
            raise ConfigError(f"fault {fault.value!r} cannot be switched at run time")
        health = self.health
        was = fault in self.faults
        self.faults = self.faults | {fault} if active else self.faults - {fault}
        if fault is Fault.OVERHEAT:
            health.set_overheat(active)
        elif fault is Fault.WARM:
            health.set_warm(active)
        elif fault is Fault.SPEAKER:
            health.speaker_ok = not active
        elif fault is Fault.STORAGE:
            health.storage_free_mb = 50.0 if active else 3000.0
        elif fault is Fault.MAINS:
            health.mains = not active
        elif fault is Fault.FLAT:
            health.set_flat(active)
        elif fault is Fault.CLOCK:
            health.clock_unsynced = active
            self.clock.offset_s = self._clock_fault() if active else 0.0
        elif fault is Fault.FLAP and active and not was:
            self._spawn_named("flap", self._flap_loop())
        elif fault is Fault.FLAP and not active:
            self._cancel_named("flap")
        elif fault is Fault.STALL:
            (self._unstalled.clear if active else self._unstalled.set)()
        elif fault is Fault.CORRUPT and not active and was and self._desired and self._missing:
            self._spawn_named("apply", self._apply_media(self._desired))  # retry the failed
        self._health_step()
        if self.online and self._mqtt is not None:
            self._publish_telemetry(self._mqtt)

    def _cancel_named(self, name: str) -> None:
        task = self._named.pop(name, None)
        if task is not None:
            task.cancel()

    # ---------------------------------------------------------------- injected faults

    async def _flap_loop(self) -> None:
        low, high = self._settings.faults.flap_every_s
        while True:
            await asyncio.sleep(self._rng.uniform(low, high))
            if self._mqtt is not None and self._mqtt.connected:
                log.info("%s: link flap", self.sid)
                self.drop_link()

    async def _mains_loop(self) -> None:
        faults = self._settings.faults
        while True:
            await self.clock.sleep(self._rng.uniform(*faults.mains_after_s))
            self.health.mains = False
            await self.clock.sleep(self._rng.uniform(*faults.mains_outage_s))
            self.health.mains = True
