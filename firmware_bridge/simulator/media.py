"""Downloading and verifying media, and probing relay streams, for the simulator.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from firmware_bridge.messages import Media

__all__ = ["FetchResult", "MediaFetcher"]

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Outcome of one download: ``ok``, ``corrupt`` (size/hash mismatch) or ``error``."""

    status: Literal["ok", "corrupt", "error"]
    reason: str | None = None


class MediaFetcher:
    """Fleet-wide HTTP client for media downloads and stream probes."""

    def __init__(self, *, concurrency: int = 16, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=max(concurrency, 1) * 2),
        )
        self._slots = asyncio.Semaphore(max(concurrency, 1))

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

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

    async def probe_stream(self, url: str, *, timeout_s: float) -> bool:
        """True if an http(s) stream answers a GET within ``timeout_s``.

        The simulator has no RTSP/RTP/UDP/Icecast client; such URLs count as opened.
        """
        if not url.startswith(("http://", "https://")):
            return True
        try:
            async with asyncio.timeout(timeout_s), self._http.stream("GET", url) as response:
                return response.status_code < 400
        except (TimeoutError, httpx.HTTPError, OSError):
            return False
