"""Downloading and verifying media, and reading relay streams, for the simulator.

One ``httpx.AsyncClient`` and one semaphore serve the whole fleet, so a thousand
stations applying a new desired do not open a thousand connections to the media
server at once. A file is streamed to ``{sha}.part``, its size and SHA-256 are checked,
and only then renamed into the cache: the cache never holds an unverified file.
The ``slow`` and ``corrupt`` faults act here (throttled reads; one flipped byte, so the
hash check fails as it would on a damaged flash page).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from firmware_bridge.messages import Media

__all__ = ["FetchResult", "MediaFetcher", "StreamListen"]

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Outcome of one download: ``ok``, ``corrupt`` (size/hash mismatch) or ``error``."""

    status: Literal["ok", "corrupt", "error"]
    reason: str | None = None


@dataclass(slots=True)
class StreamListen:
    """What a station read of a stream it played: when the first audio bytes arrived
    (wall clock, ``time.time()``), how many bytes, how often it (re)opened the stream."""

    first_byte_at: float | None = None
    bytes: int = 0
    opens: int = 0


class MediaFetcher:
    """Fleet-wide HTTP client for media downloads and the streams stations play."""

    def __init__(self, *, concurrency: int = 16, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=max(concurrency, 1) * 2),
        )
        self._slots = asyncio.Semaphore(max(concurrency, 1))
        # every station playing a stream holds its own connection for the whole play,
        # as a speaker does: no pool limit (the download limit above is for files)
        self._streams = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, read=None),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pools."""
        await self._http.aclose()
        await self._streams.aclose()

    async def fetch(
        self,
        media: Media,
        dest: Path,
        *,
        throttle_bps: int | None = None,
        corrupt: bool = False,
    ) -> FetchResult:
        """Download ``media`` to ``dest`` if its size and SHA-256 match."""
        part = dest.with_name(dest.name + ".part")
        moved = False
        try:
            async with self._slots:
                try:
                    result = await self._download(
                        media, part, throttle_bps=throttle_bps, corrupt=corrupt
                    )
                    if result.status == "ok":
                        os.replace(part, dest)
                        moved = True
                except (httpx.HTTPError, OSError) as exc:
                    result = FetchResult("error", f"download failed: {type(exc).__name__}: {exc}")
            return result
        finally:
            if not moved:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()

    async def _download(
        self, media: Media, part: Path, *, throttle_bps: int | None, corrupt: bool
    ) -> FetchResult:
        digest = hashlib.sha256()
        size = 0
        async with self._http.stream("GET", media.url) as response:
            if response.status_code >= 400:
                return FetchResult("error", f"HTTP {response.status_code}")
            with part.open("wb") as fh:
                async for chunk in response.aiter_bytes(_CHUNK):
                    if corrupt and size == 0 and chunk:
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    size += len(chunk)
                    if size > media.bytes:
                        return FetchResult("corrupt", f"more than {media.bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
                    if throttle_bps:
                        await asyncio.sleep(len(chunk) / throttle_bps)
        if size != media.bytes:
            return FetchResult("corrupt", f"size {size} != {media.bytes}")
        if digest.hexdigest() != media.sha256:
            return FetchResult("corrupt", "sha256 mismatch")
        return FetchResult("ok")

    async def listen(
        self,
        url: str,
        *,
        gap_s: float,
        reading: StreamListen,
        on_bytes: Callable[[bytes], None] | None = None,
    ) -> str:
        """Read the http(s) stream ``url`` as a station plays it, until cancelled.

        A stream refused at the first attempt (an error status, a connection refused)
        is given up at once; one that does not answer is given up after ``gap_s``.  Once
        playing, it is reopened whenever it ends or breaks; unavailable (an error status,
        no bytes) for ``gap_s`` seconds in a row, the station gives up and the reason is
        returned, so nothing keeps "playing" a dead stream.  Other schemes (rtsp, udp...)
        cannot be read here: they count as playing until cancelled.
        """
        if not url.startswith(("http://", "https://")):
            await asyncio.Event().wait()
        lost_since = time.monotonic()
        reason = "stream could not be opened"
        while True:
            remaining = gap_s - (time.monotonic() - lost_since)
            if remaining <= 0:
                return f"{reason} for {gap_s:g} s"
            try:
                async with asyncio.timeout(remaining) as deadline:
                    async with self._streams.stream("GET", url) as response:
                        if response.status_code >= 400:
                            reason = f"stream answered HTTP {response.status_code}"
                            raise _Unavailable
                        reading.opens += 1
                        async for chunk in response.aiter_raw():
                            if not chunk:
                                continue
                            if reading.first_byte_at is None:
                                reading.first_byte_at = time.time()
                            reading.bytes += len(chunk)
                            if on_bytes is not None:
                                on_bytes(chunk)
                            lost_since = time.monotonic()
                            # silence for gap_s is a dead stream: the gap restarts per read
                            deadline.reschedule(asyncio.get_running_loop().time() + gap_s)
                        reason = "stream ended"
            except _Unavailable:
                if not reading.opens:  # refused outright: it cannot be opened
                    return reason
            except TimeoutError:
                reason = reason if reading.opens == 0 else "stream stalled"
            except (httpx.HTTPError, OSError) as exc:
                reason = f"stream broke: {type(exc).__name__}"
                if not reading.opens:
                    return f"stream could not be opened: {type(exc).__name__}"
            await asyncio.sleep(min(0.5, max(0.0, gap_s - (time.monotonic() - lost_since))))


class _Unavailable(Exception):
    """The stream answered an error status."""
