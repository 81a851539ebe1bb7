"""Server-Timing (W3C Server Timing) for the routes an operator waits on.

A route that marks its phases (`phases_of`, `Phases.mark`) answers with a
``Server-Timing`` header naming each phase and its duration in milliseconds, then
``total`` (from the request's arrival to the answer)::

    Server-Timing: enter;dur=2.1, store;dur=4.6, commit;dur=1.8, publish;dur=1.2, ...

A browser's developer tools draw it beside the request; the broadcast benchmark records
it for every round (``server_timing_ms``).  So where an emergency's way out spends its
time is read from the service itself, not from patches made to measure it.  Routes that
mark nothing get no header.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "Phases", "ServerTimingMiddleware", "parse", "phases_of"]

HEADER = b"server-timing"
#: where the middleware keeps a request's phases (``request.state`` is this dict)
_STATE_KEY = "server_timing"


class Phases:
    """The phases of one request, each from the end of the one before (the first from
    the request's arrival), in milliseconds."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = self._last = clock()
        self._phases: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        """The phase ``name`` ends now (a token: letters, digits, ``_``, ``-``)."""
        now = self._clock()
        self._phases.append((name, (now - self._last) * 1000))
        self._last = now

    @property
    def marked(self) -> list[tuple[str, float]]:
        return list(self._phases)

    def header(self) -> str:
        """The header's value: each phase, then ``total`` up to now."""
        total = (self._clock() - self._started) * 1000
        parts = [f"{name};dur={ms:.1f}" for name, ms in self._phases]
        parts.append(f"total;dur={total:.1f}")
        return ", ".join(parts)


class _Unmarked(Phases):
    """For a request the middleware did not see (a test's app without it)."""

    def mark(self, name: str) -> None:
        pass


def phases_of(request: Any) -> Phases:
    """The phases of ``request`` (a Starlette request), to mark."""
    found = request.scope.get("state", {}).get(_STATE_KEY)
    return found if isinstance(found, Phases) else _Unmarked()


class ServerTimingMiddleware:
    """Starts each HTTP request's `Phases` on its arrival and, if the route marked any,
    adds the ``Server-Timing`` header to its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        phases = Phases()
        scope.setdefault("state", {})[_STATE_KEY] = phases

        async def with_timing(message: Message) -> None:
            if message["type"] == "http.response.start" and phases.marked:
                headers = list(message.get("headers", []))
                headers.append((HEADER, phases.header().encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_timing)


def parse(value: str | None) -> dict[str, float]:
    """A ``Server-Timing`` value as {name: milliseconds} (metrics without ``dur`` and
    unreadable ones are left out)."""
    out: dict[str, float] = {}
    for metric in (value or "").split(","):
        name, *params = (p.strip() for p in metric.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "dur" and name:
                with contextlib.suppress(ValueError):
                    out[name] = float(number)
    return out
