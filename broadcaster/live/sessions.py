"""Running a live session: audio in, ffmpeg, Icecast, the broadcast on and off air.

An :class:`Encoder` is one ffmpeg process that takes the operator's audio (the
browser's MediaRecorder chunks, WebM/Opus, on its stdin; or a stream URL it pulls)
and pushes it to the session's Icecast mount as MP3 64 kbit/s mono (what stations
decode), flushing every packet.  :class:`LiveRun` is the session: once the mount
answers it puts the broadcast on air (`service.go_live`: every target gets a ``play``
with ``stream`` = the mount, priority 7 or 9, starting now); it ends when the
operator stops, the browser goes away (the socket closes, or no audio for
``BROADCASTER_LIVE_IDLE_S``), the source dies (ffmpeg exits), the broadcast is stopped
elsewhere, or the longest session time passes, and then stops the broadcast everywhere
(one ``stop`` command).  Stations also give up a dead stream by themselves.

This module is the boundary of its work (like a worker job): it opens short sessions
from the session factory and commits; no transaction is held while audio flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from audio_library.service import MediaLibrary
from broadcaster import db
from broadcaster.live import service
from broadcaster.live.service import Icecast, LiveStart
from kernel.errors import DomainError, InvalidInput
from kernel.security import Principal

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long the mount may take to appear once audio flows.
MOUNT_TIMEOUT_S = 20.0
#: How often a running session checks that its broadcast is still on air.
CHECK_S = 1.0
#: How often ending a session tries to store the stop (a database error is retried).
STOP_ATTEMPTS = 5


class Encoder:
    """ffmpeg: the session's audio to its Icecast mount (MP3 64k mono, low delay)."""

    def __init__(self, icecast: Icecast, mount: str, *, title: str) -> None:
        self.icecast = icecast
        self.mount = mount
        self.title = title
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self._drain: asyncio.Task[None] | None = None

    def _command(self, source: list[str]) -> list[str]:
        ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
        return [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "warning",
            "-fflags",
            "+nobuffer",
            "-probesize",
            "2048",
            "-analyzeduration",
            "0",
            *source,
            "-vn",
            "-ac",
            "1",
            "-ar",
            "44100",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
            "-flush_packets",
            "1",
            "-content_type",
            "audio/mpeg",
            "-ice_name",
            self.title[:200],
            "-f",
            "mp3",
            self.icecast.push_url(self.mount),
        ]

    async def start_pipe(self) -> None:
        """Audio arrives on stdin (:meth:`write`)."""
        await self._start(["-i", "pipe:0"], stdin=True)

    async def start_url(self, url: str) -> None:
        """ffmpeg pulls ``url`` itself, at its own pace."""
        await self._start(["-re", "-reconnect", "0", "-i", url], stdin=False)

    async def _start(self, source: list[str], *, stdin: bool) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self._command(source),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._drain = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self._stderr.append(line.decode("utf-8", "replace").strip())

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def problem(self) -> str:
        return " | ".join(self._stderr) or "ffmpeg stopped"

    async def write(self, chunk: bytes) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(chunk)
        await self.process.stdin.drain()

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()

    async def close(self) -> None:
        process = self.process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._drain, 1)


async def wait_for_mount(url: str, encoder: Encoder, timeout_s: float = MOUNT_TIMEOUT_S) -> bool:
    """True once Icecast serves ``url`` (the source is connected)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as http:
        while loop.time() < deadline and encoder.alive:
            try:
                async with http.stream("GET", url) as response:
                    if response.status_code == 200:
                        return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return False


@dataclass
class LiveRun:
    """One live session of one operator."""

    factory: sessionmaker[Session]
    library: MediaLibrary
    icecast: Icecast
    principal: Principal
    data: LiveStart
    max_s: int
    wake: Callable[[], None]
    session_id: str = field(default_factory=service.new_session_id)
    broadcast_id: int | None = None
    stations: int = 0
    ended: str | None = None

    @property
    def mount(self) -> str:
        return service.mount_of(self.session_id)

    @property
    def stream_url(self) -> str:
        return self.icecast.listen_url(self.mount)

    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with db.session_scope(self.factory) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def _read(self, work: Callable[[Session], T]) -> T:
        """A read that never takes SQLite's write lock (the once-a-second checks)."""

        def run() -> T:
            with db.read_session(self.factory) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def precheck(self) -> int:
        def check(session: Session) -> int:
            return service.precheck(session, self.data, self.principal)

        self.stations = await self._read(check)
        return self.stations

    async def go_live(self, encoder: Encoder, source: str) -> None:
        """Wait for the mount, then put the broadcast on air (raises if the audio never
        reaches the streaming server)."""
        if not await wait_for_mount(self.stream_url, encoder):
            detail = encoder.problem() if not encoder.alive else "no audio reached it"
            raise InvalidInput(
                f"the live stream did not start on the streaming server: {detail}",
                field="audio",
                message_vi="Không phát được luồng trực tiếp lên máy chủ phát (kiểm tra "
                "micrô hoặc địa chỉ luồng)",
            )

        def start(session: Session) -> tuple[int, int]:
            return service.go_live(
                session,
                self.library,
                self.data,
                self.principal,
                session_id=self.session_id,
                stream_url=self.stream_url,
                max_s=self.max_s,
                source=source,
            )

        self.broadcast_id, self.stations = await self._db(start)
        self.wake()
        log.info("live session %s on air: broadcast %s", self.session_id, self.broadcast_id)

    async def on_air(self) -> bool:
        if self.broadcast_id is None:
            return False
        broadcast_id = self.broadcast_id

        def check(session: Session) -> bool:
            return service.is_active(session, self.principal, broadcast_id)

        return await self._read(check)

    async def end(self, reason: str) -> None:
        """Stop the broadcast everywhere (once)."""
        if self.ended is not None:
            return
        self.ended = reason
        if self.broadcast_id is None:
            return
        broadcast_id = self.broadcast_id

        def stop(session: Session) -> bool:
            return service.end(session, self.principal, broadcast_id, reason=reason)

        for attempt in range(1, STOP_ATTEMPTS + 1):
            try:
                if await self._db(stop):
                    self.wake()
                break
            except DomainError as exc:
                log.warning("live session %s: could not stop: %s", self.session_id, exc.message)
                break
            except DBAPIError as exc:
                # e.g. a PostgreSQL deadlock with the ack ingest updating the same targets:
                # rolled back, so try again: stations must not wait for their dead stream
                log.warning(
                    "live session %s: stop attempt %d failed: %s", self.session_id, attempt, exc
                )
                await asyncio.sleep(0.1 * attempt)
        log.info("live session %s ended: %s", self.session_id, reason)

    async def watch(self, encoder: Encoder) -> str:
        """Until the session should end: the reason (source gone, stopped elsewhere,
        longest time reached)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_s
        while True:
            try:
                await asyncio.wait_for(encoder.wait(), CHECK_S)
                return f"source ended ({encoder.problem()})"
            except TimeoutError:
                pass
            if loop.time() >= deadline:
                return "longest session time reached"
            if not await self.on_air():
                return "stopped from the broadcast"


class Relays:
    """The live relays (a stream URL) this process runs, each an asyncio task."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, run: LiveRun) -> None:
        """Start pulling the URL; return once on air (or raise)."""
        assert isinstance(run.data, service.RelayStart)
        await run.precheck()
        encoder = Encoder(run.icecast, run.mount, title=run.data.title or "Tiếp sóng trực tiếp")
        try:
            await encoder.start_url(run.data.url)
            await run.go_live(encoder, source=f"relay {run.data.url}")
        except BaseException:
            await encoder.close()
            raise
        task = asyncio.create_task(self._follow(run, encoder), name=f"relay {run.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _follow(run: LiveRun, encoder: Encoder) -> None:
        try:
            reason = await run.watch(encoder)
        except asyncio.CancelledError:
            reason = "service stopping"
        except Exception as exc:
            log.exception("live relay %s failed", run.session_id)
            reason = f"error: {type(exc).__name__}"
        await encoder.close()
        await run.end(reason)

    async def stop_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
