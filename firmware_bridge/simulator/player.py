"""Playback arbitration of one virtual station: one speaker, priorities, proof of play.

The player owns "what is on air". A new play of strictly higher priority preempts the
current one (``play.preempted``); equal or lower priority never interrupts (the caller
skips or rejects it, see :meth:`Player.blocker`). Every play that begins emits
``play.started`` and then exactly one terminal event: ``play.finished``,
``play.failed`` or ``play.preempted`` (a ``stop`` command ends a play as preempted,
with the stop's id as reason). A playlist item that never starts emits only
``play.skipped``. Each play is an asyncio task running a *runner* coroutine supplied by
the station (sleep until the end, probe a relay, ...). The player also keeps the
in-memory history of what was played, for tests and the fleet status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from firmware_bridge.messages import EventType
from firmware_bridge.simulator.media import StreamListen

__all__ = ["ActivePlay", "Outcome", "PlayRecord", "Player", "RunResult"]

log = logging.getLogger(__name__)

Outcome = Literal[
    "pending", "playing", "finished", "failed", "preempted", "skipped", "rejected", "expired"
]
RunResult = tuple[Literal["finished", "failed"], str | None]
EmitFn = Callable[[EventType, "PlayRecord"], None]

_TERMINAL_EVENTS: dict[str, EventType] = {
    "finished": "play.finished",
    "failed": "play.failed",
    "preempted": "play.preempted",
}

_HISTORY = 2000


@dataclass
class PlayRecord:
    """One playlist item or play command, as the station saw it."""

    kind: Literal["item", "cmd"]
    priority: int
    item_id: str | None = None
    cmd_id: str | None = None
    title: str | None = None
    source: str = "file"
    volume: int | None = None
    #: how long the attention signal played before the content (proposal 0003)
    attention_ms: int | None = None
    desired_version: int | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: Outcome = "pending"
    reason: str | None = None
    position_ms: int | None = None
    stream: StreamListen | None = None  # what was read of a relay/stream play

    @property
    def ref(self) -> str:
        """``item:{id}`` or ``cmd:{id}``."""
        return f"item:{self.item_id}" if self.kind == "item" else f"cmd:{self.cmd_id}"

    def snapshot(self) -> PlayRecord:
        """A copy safe to hand to another thread."""
        return replace(self)


@dataclass(eq=False)
class ActivePlay:
    """The play currently on air."""

    record: PlayRecord
    offset_ms: int = 0
    on_end: Callable[[PlayRecord], None] | None = None
    task: asyncio.Task[None] | None = None
    done: bool = False


class Player:
    """One speaker: the current play, preemption and the play history."""

    def __init__(self, now: Callable[[], datetime], emit: EmitFn) -> None:
        self._now = now
        self._emit = emit
        self.current: ActivePlay | None = None
        self.history: deque[PlayRecord] = deque(maxlen=_HISTORY)

    def blocker(self, priority: int) -> PlayRecord | None:
        """What is on air at equal or higher priority (so ``priority`` may not interrupt it)."""
        if self.current is not None and self.current.record.priority >= priority:
            return self.current.record
        return None

    def skip(self, record: PlayRecord, reason: str) -> None:
        """A playlist item that does not start: ``play.skipped``."""
        record.outcome = "skipped"
        record.reason = reason
        record.ended_at = self._now()
        self.history.append(record)
        self._emit("play.skipped", record)

    def note(self, record: PlayRecord, outcome: Outcome, reason: str | None) -> None:
        """Record a command play that never started (rejected, expired...); no event."""
        record.outcome = outcome
        record.reason = reason
        record.ended_at = self._now()
        self.history.append(record)

    def begin(
        self,
        record: PlayRecord,
        runner: Callable[[ActivePlay], Awaitable[RunResult]],
        *,
        offset_ms: int = 0,
        on_end: Callable[[PlayRecord], None] | None = None,
    ) -> ActivePlay:
        """Put ``record`` on air, preempting the current play (the caller checked priority)."""
        if self.current is not None:
            self._finish(
                self.current,
                "preempted",
                f"preempted by {record.ref} (priority {record.priority})",
            )
        record.started_at = self._now()
        record.outcome = "playing"
        active = ActivePlay(record, offset_ms=offset_ms, on_end=on_end)
        self.current = active
        self.history.append(record)
        record.position_ms = offset_ms
        self._emit("play.started", record)
        active.task = asyncio.create_task(self._run(active, runner), name=f"play {record.ref}")
        return active

    def stop(self, max_priority: int, *, cmd_id: str | None, reason: str) -> int:
        """Stop the current play if its priority is <= ``max_priority`` (and it is ``cmd_id``)."""
        active = self.current
        if active is None or active.record.priority > max_priority:
            return 0
        if cmd_id is not None and active.record.cmd_id != cmd_id:
            return 0
        self._finish(active, "preempted", reason)
        return 1

    def halt(self, reason: str, *, emit: bool) -> None:
        """End the current play on reboot or death (``play.failed`` if ``emit``)."""
        active = self.current
        if active is None:
            return
        if emit:
            self._finish(active, "failed", reason)
            return
        active.done = True
        self._cancel(active)
        self.current = None
        self._close(active.record, "failed", reason)

    def position_ms(self, active: ActivePlay) -> int:
        """How far into the programme ``active`` is."""
        started = active.record.started_at or self._now()
        return active.offset_ms + max(0, int((self._now() - started).total_seconds() * 1000))

    async def _run(
        self, active: ActivePlay, runner: Callable[[ActivePlay], Awaitable[RunResult]]
    ) -> None:
        try:
            outcome, reason = await runner(active)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("play %s failed", active.record.ref)
            outcome, reason = "failed", f"{type(exc).__name__}: {exc}"
        self._finish(active, outcome, reason)

    def _finish(self, active: ActivePlay, outcome: Outcome, reason: str | None) -> None:
        if active.done:
            return
        active.done = True
        position = self.position_ms(active)
        self._cancel(active)
        if self.current is active:
            self.current = None
        self._close(active.record, outcome, reason, position)
        self._emit(_TERMINAL_EVENTS.get(outcome, "play.failed"), active.record)
        if active.on_end is not None:
            active.on_end(active.record)

    def _close(
        self, record: PlayRecord, outcome: Outcome, reason: str | None, position: int | None = None
    ) -> None:
        record.outcome = outcome
        record.reason = reason
        record.ended_at = self._now()
        if position is not None:
            record.position_ms = position

    @staticmethod
    def _cancel(active: ActivePlay) -> None:
        task = active.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
