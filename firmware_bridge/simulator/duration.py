"""How long a cached media file plays, for media whose message gives no ``duration_ms``.

A real controller plays the file to its end; the simulator used to assume 60 s.  The
length comes from ``ffprobe`` (the decoder's own count, not a header guess) and is
cached by content hash (media are content-addressed, so one answer per file).  Without
``ffprobe`` the caller's default applies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

__all__ = ["media_duration_ms"]

_cache: dict[str, int | None] = {}
_lock = threading.Lock()


def media_duration_ms(path: Path, sha256: str) -> int | None:
    """The playing time of ``path`` in milliseconds, or None if it cannot be told."""
    with _lock:
        if sha256 in _cache:
            return _cache[sha256]
    found = _probe(path)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[sha256] = found
    return found


def _probe(path: Path) -> int | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None or not path.is_file():
        return None
    try:
        done = subprocess.run(
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        seconds = float(json.loads(done.stdout)["format"]["duration"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None
    return round(seconds * 1000) if seconds > 0 else None
