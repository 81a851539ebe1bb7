"""A quiet moment after a command fans out: the service's own work waits, the broker's
fan-out and the stations go first.

When the broker has taken a command for many stations, it still has to copy it to every
one of them, and on a city's machine the broker runs beside the service.  The acks come
back while it does.  Reading them at once (paho's network thread, a message at a time),
storing them and writing the command's per-station rows would take a core from the
broker's fan-out just when it matters.  `QuietWindow` is that moment: whoever sent the
command opens it (`open`); the bridge's network thread leaves what the stations send in
the broker until it ends, then reads it in one go, and the service's bookkeeping of the
publish (`wait`) follows.  Nothing is lost or reordered: the messages wait in the
broker's queue for our session (QoS 1), as they would behind a slow batch.

The window is short (the service's ``BROADCASTER_FANOUT_QUIET_S``, 50 ms by default) and
any publish ends it at once (`end`): the network thread is what writes a publish and
reads the broker's acknowledgement of it, so the next command never waits on the quiet.
"""

from __future__ import annotations

import threading
import time

__all__ = ["QuietWindow"]


class QuietWindow:
    """Thread-safe: opened by one thread, waited on by others, ended by any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._ended = threading.Event()
        self._ended.set()
        self.opened = 0  # how many windows were opened (a counter for tests and stats)

    def open(self, seconds: float) -> None:
        """Start a quiet moment of ``seconds`` from now (0 or less: none)."""
        if seconds <= 0:
            return
        with self._lock:
            self._until = time.monotonic() + seconds
            self._ended.clear()
            self.opened += 1

    def end(self) -> None:
        """End the moment now (a publish needs the network thread)."""
        with self._lock:
            self._until = 0.0
            self._ended.set()

    def remaining(self) -> float:
        """Seconds left of the moment (0 when none is open)."""
        with self._lock:
            if self._ended.is_set():
                return 0.0
            return max(0.0, self._until - time.monotonic())

    def wait(self) -> None:
        """Return once no quiet moment is open (at once when none is)."""
        remaining = self.remaining()
        if remaining > 0:
            self._ended.wait(remaining)
