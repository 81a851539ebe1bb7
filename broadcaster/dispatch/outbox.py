"""The command outbox: stored before published, followed through its acknowledgements.

Lifecycle of a command at one station (`CommandTarget.status`)::

    PENDING --publish--> SENT --ack--> RECEIVED --> IN_PROGRESS --> SUCCEEDED | FAILED
                                   \\-> REJECTED | EXPIRED (acked by the station)
    not RECEIVED by not_after (+ transit grace)      --> EXPIRED (by us)
    RECEIVED but no final ack by the command deadline --> FAILED "no final acknowledgement"

A status never moves backwards (a late RECEIVED after SUCCEEDED is ignored).  The
deadline is `not_after` for short commands and the end of the play for `play`, since a
station that took an emergency in time keeps playing it past `not_after`.

Republishing after a restart or a lost connection reuses the same `cmd_id`; stations
dedupe on it, so a command is never executed twice and never sent under a new id.  It
covers every target without a final ack, RECEIVED and IN_PROGRESS included: our MQTT
session is clean, so acks a station sent while we were down or disconnected are gone,
and the copy makes the station re-send its last ack (PROTOCOL.md, station rule 4).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

from sqlalchemy import Select, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from broadcaster.dispatch import staged
from broadcaster.dispatch.models import (
    TERMINAL,
    Broadcast,
    BroadcastStatus,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    Route,
    StagedRows,
    TargetStatus,
)
from firmware_bridge.messages import Command as CommandMessage
from firmware_bridge.messages import PlayBody
from kernel.db import among, attach_inserted, new_row, utcnow
from stations.models import Station
from stations.targets import IDS_PER_STATEMENT

log = logging.getLogger(__name__)

TRANSIT_GRACE = dt.timedelta(seconds=2)
FINAL_ACK_GRACE = dt.timedelta(seconds=60)
MAX_LEAD = dt.timedelta(seconds=60)
# targets still waiting for a final ack: a republished copy reaches them
_TARGETS = cast(Table, CommandTarget.__table__)

OPEN = (TargetStatus.PENDING, TargetStatus.SENT, TargetStatus.RECEIVED, TargetStatus.IN_PROGRESS)


def new_cmd_id() -> str:
    """Time-ordered, unique, within the protocol's id pattern: ``c-<ms hex>-<random>``."""
    return f"c-{int(time.time() * 1000):x}-{secrets.token_hex(5)}"


def create(
    session: Session,
    *,
    type: str,
    body: dict[str, Any],
    station_ids: Sequence[int],
    route: Route = Route.STATIONS,
    groups: Sequence[str] = (),
    direct_ids: Iterable[int] = (),
    not_after: dt.datetime,
    deadline: dt.datetime | None = None,
    created_by: str,
    broadcast_id: int | None = None,
    broadcast: Broadcast | None = None,
    priority: int | None = None,
    now: dt.datetime | None = None,
    play: staged.PlayPlan | None = None,
    rows_after_publish: bool = False,
) -> Command:
    """Store a command and its targets (PENDING), with a broadcast's ``play`` its plans
    in the play log; the publisher sends it.  ``rows_after_publish``: only the station
    list is stored with the command, and the rows are written once it is out
    (`broadcaster.dispatch.staged`; the boundary calls `wake.write_staged`).

    ``broadcast``: a new broadcast (not added to the session) the command plays, stored
    with it (``broadcast_id`` and ``play``'s are its id).  On PostgreSQL, with the rows
    after the publish, the broadcast, the command and its staged row are one statement
    (`_store_together`): each statement is a round trip on an emergency's way out."""
    now = now or utcnow()
    direct = set(direct_ids) if route is Route.GROUPS else set(station_ids)
    command = Command(
        cmd_id=new_cmd_id(),
        type=type,
        body=body,
        priority=priority,
        issued_at=now,
        not_after=not_after,
        deadline=max(deadline or not_after, not_after),
        route=route,
        groups=list(groups),
        broadcast_id=broadcast_id,
        created_by=created_by,
    )
    if broadcast is not None:
        if rows_after_publish and session.get_bind().dialect.name == "postgresql":
            row = staged.staged_row(None, station_ids, direct, play, now)
            _store_together(session, broadcast, command, row)
            staged.remember(session, command, station_ids, direct)
            return command
        session.add(broadcast)
        session.flush()
        command.broadcast_id = broadcast.id
        if play is not None:
            play = replace(play, broadcast_id=broadcast.id)
    session.add(command)
    session.flush()
    staged.store(session, command, station_ids, direct, play, now, after_publish=rows_after_publish)
    return command


def _together() -> Select[int, int]:
    """``INSERT`` a broadcast, its command (``broadcast_id``: the new broadcast's) and the
    command's staged row (``command_id``: the new command's), each column bound as
    ``b_``, ``c_`` or ``s_`` and its name; the new broadcast's and command's ids.  One
    statement (PostgreSQL's data-modifying ``WITH``), built once."""

    def bound(table: Table, prefix: str, *filled: str) -> tuple[list[str], list[Any]]:
        names = [c.name for c in table.columns if not c.primary_key and c.name not in filled]
        return names, [bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in names]

    broadcasts, commands, rows = (
        cast(Table, Broadcast.__table__),
        cast(Table, Command.__table__),
        cast(Table, StagedRows.__table__),
    )
    names, values = bound(broadcasts, "b_")
    new_broadcast = (
        insert(broadcasts).values(dict(zip(names, values, strict=True)))
        .returning(broadcasts.c.id).cte("new_broadcast")
    )  # fmt: skip
    names, values = bound(commands, "c_", "broadcast_id")
    new_command = (
        insert(commands)
        .from_select([*names, "broadcast_id"], select(*values, new_broadcast.c.id))
        .returning(commands.c.id, commands.c.broadcast_id)
        .cte("new_command")
    )
    names, values = bound(rows, "s_", "command_id")
    new_row = (
        insert(rows)
        .from_select([*names, "command_id"], select(*values, new_command.c.id))
        .cte("new_staged_row")
    )
    return select(new_command.c.broadcast_id, new_command.c.id).add_cte(new_row)


_TOGETHER = _together()


def _store_together(
    session: Session, broadcast: Broadcast, command: Command, row: StagedRows
) -> None:
    """Insert the three rows in one statement (`_together`) and put the objects in the
    session as the rows inserted."""
    params = {f"b_{k}": v for k, v in new_row(broadcast).items()}
    # the command's broadcast and the row's command (its key) are the statement's to fill
    params.update({f"c_{k}": v for k, v in new_row(command).items() if k != "broadcast_id"})
    params.update({f"s_{k}": v for k, v in new_row(row).items()})
    broadcast_id, command_id = session.execute(_TOGETHER, params).one()
    attach_inserted(session, broadcast, broadcast_id)
    command.broadcast_id = broadcast_id
    attach_inserted(session, command, command_id)
    attach_inserted(session, row, command_id)


def to_publish(session: Session, now: dt.datetime) -> list[Command]:
    """Commands stored but never published, still valid."""
    return list(
        session.scalars(
            select(Command)
            .where(Command.published_at.is_(None), Command.not_after > now, Command.done.is_(False))
            .order_by(Command.priority.desc().nulls_last(), Command.id)
        )
    )


def unacknowledged(session: Session, now: dt.datetime) -> list[Command]:
    """Published commands some target has not finally acknowledged, still valid.

    Republished (same `cmd_id`) when the worker starts or the broker connection returns.
    Only while `not_after` is more than the transit grace away: a copy arriving after
    `not_after` is acked EXPIRED even by a station that took the command in time.
    """
    waiting = select(CommandTarget.command_id).where(CommandTarget.status.in_(OPEN)).distinct()
    return list(
        session.scalars(
            select(Command)
            .where(
                Command.id.in_(waiting),
                Command.not_after > now + TRANSIT_GRACE,
                Command.done.is_(False),
            )
            .order_by(Command.id)
        )
    )


class Recipients(NamedTuple):
    """Where a command is published, and how many stations it reaches."""

    groups: list[str]
    sids: list[str]
    #: its targets still open (staged or written): what the broker copies it to, which
    #: sizes the quiet moment after its fan-out (`Settings.fanout_quiet_for`)
    stations: int


def recipients(session: Session, command: Command) -> Recipients:
    """Group gids for fan-out plus station sids for direct copies (from the staged
    station list while the targets are not written yet), and how many stations it
    reaches."""
    groups = list(command.groups) if command.route is Route.GROUPS else []
    fanout = staged.fanout_of(session, command.id)
    if fanout is not None:
        direct, stations = fanout
        sids = []
        if direct:  # most often none: every target is subscribed to its groups
            query = select(Station.sid).where(among(session, Station.id, direct))
            sids = sorted(session.scalars(query))
        return Recipients(groups, sids, stations)
    rows = session.execute(
        select(Station.sid)
        .join(CommandTarget, CommandTarget.station_id == Station.id)
        .where(
            CommandTarget.command_id == command.id,
            CommandTarget.direct.is_(True),
            CommandTarget.status.in_(OPEN),
        )
        .order_by(Station.sid)
    )
    sids = [r[0] for r in rows]
    stations = len(sids)
    if groups:  # the rest are reached through their groups
        open_targets = select(func.count()).where(
            CommandTarget.command_id == command.id, CommandTarget.status.in_(OPEN)
        )
        stations = session.scalar(open_targets) or 0
    return Recipients(groups, sids, stations)


@dataclass(frozen=True)
class Outgoing:
    """A command read for publishing (the publisher holds no transaction meanwhile)."""

    command_id: int
    groups: list[str]
    sids: list[str]
    message: CommandMessage
    late: bool = False
    #: how many stations it reaches (`Recipients.stations`)
    stations: int = 0


def outgoing(session: Session, command: Command, late: list[str] | None = None) -> Outgoing:
    """What to publish for the command: to its groups and direct stations, or (``late``)
    only to those stations, reached late, with a fresh start (`late_body`)."""
    if late is None:
        groups, sids, stations = recipients(session, command)
        body = command.body
    else:
        groups, sids, stations = [], late, len(late)
        body = late_body(command, utcnow())
    message = CommandMessage.model_validate(
        {
            "cmd_id": command.cmd_id,
            "type": command.type,
            "issued_at": command.issued_at,
            "not_after": command.not_after,
            "body": body,
        }
    )
    return Outgoing(command.id, groups, sids, message, late=late is not None, stations=stations)


def mark_published(
    session: Session,
    command: Command,
    now: dt.datetime,
    *,
    only_sids: Collection[str] | None = None,
) -> None:
    """Record a publish: its waiting targets are now sent (``only_sids``: a late copy
    went to those stations only; another may have come back since it was read).  Rows
    still staged are written first, so they go SENT too."""
    staged.write(session, [command.id])
    command.published_at = command.published_at or now
    command.publish_count += 1
    waiting = [
        CommandTarget.command_id == command.id,
        CommandTarget.status == TargetStatus.PENDING,
    ]
    if only_sids is not None:
        waiting.append(
            CommandTarget.station_id.in_(select(Station.id).where(Station.sid.in_(only_sids)))
        )
    session.execute(
        update(CommandTarget).where(*waiting).values(status=TargetStatus.SENT, updated_at=now)
    )
    if command.type == "ping":
        # a fast station's answer can be stored before this record of the publish: its
        # clock offset is worked out now that the send time is known
        answered = session.scalars(
            select(CommandTarget).where(
                CommandTarget.command_id == command.id,
                CommandTarget.station_time.is_not(None),
                CommandTarget.clock_offset_ms.is_(None),
            )
        )
        for target in answered:
            _measure_clock(command, target)


def redeliver_on_births(session: Session, births: Mapping[int, dt.datetime]) -> set[int]:
    """Stations came (back) online (station id -> when its birth arrived): every
    still-valid broadcast play each has not received goes to it again, directly (its
    target back to PENDING; the publisher sends it with a fresh `start_at`, see
    `late_body`).  A whole batch of births (a reconnect storm after a broker restart is
    hundreds per batch) costs one read of the valid plays and one UPDATE per play, not a
    statement per birth.  Returns the stations that have something to take."""
    if not births:
        return set()
    earliest = min(births.values())
    plays = session.execute(
        select(Command.id, Command.not_after).where(
            Command.type == "play",
            Command.broadcast_id.is_not(None),
            Command.published_at.is_not(None),
            Command.done.is_(False),
            Command.not_after > earliest + TRANSIT_GRACE,
        )
    ).all()
    late: set[int] = set()
    for command_id, not_after in plays:
        # valid when each station's birth arrived, as if it were stored alone
        born = {s: at for s, at in births.items() if not_after > at + TRANSIT_GRACE}
        for first in range(0, len(born), IDS_PER_STATEMENT):
            station_ids = list(born)[first : first + IDS_PER_STATEMENT]
            late.update(
                session.scalars(
                    update(CommandTarget)
                    .where(
                        CommandTarget.command_id == command_id,
                        among(session, CommandTarget.station_id, station_ids),
                        CommandTarget.status == TargetStatus.SENT,
                    )
                    .values(
                        status=TargetStatus.PENDING,
                        direct=True,
                        updated_at=max(born[s] for s in station_ids),
                    )
                    .returning(CommandTarget.station_id)
                )
            )
    return late


def late_deliveries(session: Session, now: dt.datetime) -> list[tuple[Command, list[str]]]:
    """Published, still-valid commands with targets waiting for a late copy
    (`redeliver_on_birth`), with those stations' sids."""
    rows = session.execute(
        select(Command, Station.sid)
        .join(CommandTarget, CommandTarget.command_id == Command.id)
        .join(Station, Station.id == CommandTarget.station_id)
        .where(
            Command.published_at.is_not(None),
            Command.done.is_(False),
            Command.not_after > now + TRANSIT_GRACE,
            CommandTarget.status == TargetStatus.PENDING,
        )
        .order_by(Command.id, Station.sid)
    ).all()
    out: dict[int, tuple[Command, list[str]]] = {}
    for command, sid in rows:
        out.setdefault(command.id, (command, []))[1].append(sid)
    return list(out.values())


def follow_up(session: Session, command: Command, *, type: str, body: dict[str, Any]) -> Command:
    """A command to the stations of ``command``, by the same route and valid as long
    (e.g. the audio of a play sent before the audio existed)."""
    rows = session.execute(
        select(CommandTarget.station_id, CommandTarget.direct).where(
            CommandTarget.command_id == command.id
        )
    ).all()
    return create(
        session,
        type=type,
        body=body,
        station_ids=[station_id for station_id, _ in rows],
        route=command.route,
        groups=command.groups,
        direct_ids=[station_id for station_id, direct in rows if direct],
        not_after=command.not_after,
        created_by=command.created_by,
        broadcast_id=command.broadcast_id,
        priority=command.priority,
    )


def late_body(command: Command, now: dt.datetime) -> dict[str, Any]:
    """A play's body for a station reached late: it starts the usual lead time from now
    (the lead the broadcast was sent with) and plays from the start."""
    body = PlayBody.model_validate(command.body)
    if body.start_at is None:
        return command.body
    lead = min(max(body.start_at - command.issued_at, dt.timedelta(0)), MAX_LEAD)
    late = body.model_copy(update={"start_at": max(body.start_at, now + lead)})
    return late.model_dump(mode="json", by_alias=True)


def find(session: Session, cmd_id: str) -> Command | None:
    return session.scalar(select(Command).where(Command.cmd_id == cmd_id))


@dataclass
class AckTargets:
    """The commands and targets a batch of acknowledgements names, loaded with one
    statement each (`load_ack_targets`), so applying each ack is Python work on rows
    already in the session: no statement per acknowledgement."""

    commands: dict[str, Command] = field(default_factory=dict)
    targets: dict[tuple[int, int], CommandTarget] = field(default_factory=dict)


def load_ack_targets(session: Session, pairs: Iterable[tuple[str, int]]) -> AckTargets:
    """The commands and (command, station) targets of ``pairs`` of (cmd_id, station id),
    the targets locked until the transaction ends (`apply_acks` says why)."""
    wanted = set(pairs)
    loaded = AckTargets()
    if not wanted:
        return loaded
    cmd_ids = sorted({cmd_id for cmd_id, _ in wanted})
    for command in session.scalars(select(Command).where(Command.cmd_id.in_(cmd_ids))):
        loaded.commands[command.cmd_id] = command
    if not loaded.commands:
        return loaded
    by_id = {command.id: command.cmd_id for command in loaded.commands.values()}
    station_ids = sorted({station_id for _, station_id in wanted})
    rows = session.scalars(
        select(CommandTarget)
        .where(
            CommandTarget.command_id.in_(sorted(by_id)),
            among(session, CommandTarget.station_id, station_ids),
        )
        .order_by(CommandTarget.id)
        .with_for_update()
    )
    for target in rows:
        if (by_id[target.command_id], target.station_id) in wanted:
            loaded.targets[(target.command_id, target.station_id)] = target
    return loaded


def apply_ack(
    session: Session,
    *,
    station_id: int,
    cmd_id: str,
    status: str,
    at: dt.datetime,
    received_at: dt.datetime,
    reason: str | None,
    station_time: dt.datetime | None,
    loaded: AckTargets | None = None,
) -> str:
    """Apply one acknowledgement; returns "ok", "stale", "unknown_command" or "not_target".

    With ``loaded`` (`load_ack_targets` of the batch) the command and target are looked
    up there; only a terminal REJECTED/EXPIRED/FAILED of a play reads its play row."""
    if loaded is not None:
        command = loaded.commands.get(cmd_id)
        if command is None:
            return "unknown_command"
        target = loaded.targets.get((command.id, station_id))
    else:
        command = find(session, cmd_id)
        if command is None:
            return "unknown_command"
        target = session.scalar(
            select(CommandTarget)
            .where(CommandTarget.command_id == command.id, CommandTarget.station_id == station_id)
            .with_for_update()
        )
    if target is None:
        return "not_target"
    new = TargetStatus(status)
    if target.status.terminal or new.rank < target.status.rank:
        return "stale"
    if new is target.status and not new.terminal:
        return "stale"
    target.status = new
    target.reason = reason[:500] if reason else target.reason
    target.updated_at = received_at
    if new is TargetStatus.RECEIVED or target.received_at is None:
        target.received_at = target.received_at or received_at
    if station_time is not None:
        target.station_time = station_time
        _measure_clock(command, target)
    if new.terminal and command.type == "play":
        _settle_play(session, station_id, command, new, reason, at)
    return "ok"


@dataclass(frozen=True, slots=True)
class AckIn:
    """One acknowledgement to apply (`apply_acks`)."""

    station_id: int
    cmd_id: str
    status: str
    at: dt.datetime
    received_at: dt.datetime
    reason: str | None = None
    station_time: dt.datetime | None = None


def apply_ack_in(session: Session, ack: AckIn, loaded: AckTargets | None = None) -> str:
    """`apply_ack` of one `AckIn`."""
    return apply_ack(
        session,
        station_id=ack.station_id,
        cmd_id=ack.cmd_id,
        status=ack.status,
        at=ack.at,
        received_at=ack.received_at,
        reason=ack.reason,
        station_time=ack.station_time,
        loaded=loaded,
    )


#: terminal statuses whose play command has a play row to settle (`_settle_play`)
_SETTLES_PLAY = frozenset({TargetStatus.REJECTED, TargetStatus.EXPIRED, TargetStatus.FAILED})


def apply_acks(session: Session, acks: Sequence[AckIn]) -> list[str]:
    """Apply a batch of acknowledgements as `apply_ack` would one by one, in order, and
    return each one's result ("ok", "stale", "unknown_command", "not_target").

    The commands and targets are read with one statement each (plain columns, no ORM
    objects) and every changed target is written with one ``UPDATE`` for the batch
    (executemany by primary key).  A target that needs more than its own row (a ping's
    answer, which measures the clock; a play that ended without playing, which settles
    its play row) takes `apply_ack` for all of its acknowledgements in the batch.

    Call it only for targets no ORM object of this session has loaded: the statement
    writes the rows behind the identity map's back.

    The targets are read ``FOR UPDATE`` (PostgreSQL; SQLite has one writer and ignores
    it), in id order: a stop or an expiry committed while the batch was being stored is
    what the batch reads and judges its acks against, instead of a status it then
    overwrites (read committed would let an IN_PROGRESS undo a STOPPED)."""
    results = ["unknown_command"] * len(acks)
    if not acks:
        return results
    targets = _TARGETS
    commands: dict[str, tuple[int, str]] = {
        cmd_id: (command_id, ctype)
        for command_id, cmd_id, ctype in session.execute(
            select(Command.id, Command.cmd_id, Command.type).where(
                Command.cmd_id.in_(sorted({a.cmd_id for a in acks}))
            )
        )
    }
    if not commands:
        return results
    command_ids = sorted({command_id for command_id, _ in commands.values()})
    station_ids = sorted({a.station_id for a in acks})
    # (command id, station id) -> [target id, status, received_at, reason, changed]
    rows: dict[tuple[int, int], list[Any]] = {}
    for first in range(0, len(station_ids), IDS_PER_STATEMENT):
        for tid, command_id, station_id, status, received_at, reason in session.execute(
            select(
                targets.c.id,
                targets.c.command_id,
                targets.c.station_id,
                targets.c.status,
                targets.c.received_at,
                targets.c.reason,
            )
            .where(
                targets.c.command_id.in_(command_ids),
                among(
                    session, targets.c.station_id, station_ids[first : first + IDS_PER_STATEMENT]
                ),
            )
            .order_by(targets.c.id)
            .with_for_update()
        ):
            rows[(command_id, station_id)] = [tid, TargetStatus(status), received_at, reason, False]
    slow: set[tuple[int, int]] = set()
    for ack in acks:
        known = commands.get(ack.cmd_id)
        if known is not None and (known[0], ack.station_id) in rows:
            new = TargetStatus(ack.status)
            if ack.station_time is not None or (known[1] == "play" and new in _SETTLES_PLAY):
                slow.add((known[0], ack.station_id))
    for index, ack in enumerate(acks):
        known = commands.get(ack.cmd_id)
        if known is None:
            continue
        key = (known[0], ack.station_id)
        row = rows.get(key)
        if row is None:
            results[index] = "not_target"
        elif key in slow:
            results[index] = apply_ack_in(session, ack)
        else:
            results[index] = _advance(row, TargetStatus(ack.status), ack)
    changed = [
        {
            "b_id": tid,
            "b_status": status,
            "b_received_at": received_at,
            "b_reason": reason,
            "b_updated_at": updated_at,
        }
        for tid, status, received_at, reason, updated_at in rows.values()
        if updated_at is not False
    ]
    if changed:
        session.execute(
            update(targets)
            .where(targets.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                received_at=bindparam("b_received_at"),
                reason=bindparam("b_reason"),
                updated_at=bindparam("b_updated_at"),
            ),
            changed,
        )
    return results


def _advance(row: list[Any], new: TargetStatus, ack: AckIn) -> str:
    """`apply_ack`'s rules on a target row read by `apply_acks` ([id, status,
    received_at, reason, updated_at or False while unchanged])."""
    current: TargetStatus = row[1]
    if current.terminal or new.rank < current.rank:
        return "stale"
    if new is current and not new.terminal:
        return "stale"
    row[1] = new
    row[3] = ack.reason[:500] if ack.reason else row[3]
    row[4] = ack.received_at
    if new is TargetStatus.RECEIVED or row[2] is None:
        row[2] = row[2] or ack.received_at
    return "ok"


def clock_offset_ms(command: Command, target: CommandTarget) -> float | None:
    """A ping's answer: the station's clock against the midpoint of our send time and the
    time its answer came (``updated_at``: set by each acknowledgement applied), or None
    while either is unknown."""
    if command.type != "ping" or command.published_at is None or target.station_time is None:
        return None
    midpoint = command.published_at + (target.updated_at - command.published_at) / 2
    return (target.station_time - midpoint).total_seconds() * 1000


def _measure_clock(command: Command, target: CommandTarget) -> None:
    """Store the offset once both times are known: `apply_ack` when the send was recorded
    first, `mark_published` when the answer came first.  (Two transactions in flight at
    once on PostgreSQL can each miss the other's write: `reports.command_read` works it
    out on reading then.)"""
    offset = clock_offset_ms(command, target)
    if offset is not None:
        target.clock_offset_ms = offset


def _settle_play(
    session: Session,
    station_id: int,
    command: Command,
    status: TargetStatus,
    reason: str | None,
    at: dt.datetime,
) -> None:
    """A play command that ended without play events (rejected, expired) in the play log."""
    if status not in (TargetStatus.REJECTED, TargetStatus.EXPIRED, TargetStatus.FAILED):
        return  # SUCCEEDED: the play events tell the play log (no read per final ack)
    play = session.scalar(
        select(Play).where(Play.station_id == station_id, Play.cmd_id == command.cmd_id)
    )
    if play is None or play.status not in (PlayStatus.PLANNED, PlayStatus.PLAYING):
        return
    if status is TargetStatus.REJECTED:
        play.status = PlayStatus.SKIPPED
    elif status is TargetStatus.EXPIRED:
        play.status = PlayStatus.MISSED
    elif status is TargetStatus.FAILED and play.status is PlayStatus.PLANNED:
        play.status = PlayStatus.FAILED
    else:
        return
    play.reason = (reason or status.value.lower())[:500]
    play.updated_at = at


#: (from statuses, to status, reason) of a command's targets past its not_after
_UNRECEIVED = (
    [TargetStatus.PENDING, TargetStatus.SENT],
    TargetStatus.EXPIRED,
    "not received before not_after",
)
#: ... and past its deadline (and the grace of a final acknowledgement)
_UNFINISHED = (
    [TargetStatus.RECEIVED, TargetStatus.IN_PROGRESS],
    TargetStatus.FAILED,
    "no final acknowledgement",
)


def _settle_targets(
    session: Session,
    command: Command,
    statuses: Sequence[TargetStatus],
    status: TargetStatus,
    reason: str,
    now: dt.datetime,
) -> list[int]:
    """Move the command's targets still in one of ``statuses`` to ``status``; the
    stations moved."""
    return list(
        session.scalars(
            update(CommandTarget)
            .where(CommandTarget.command_id == command.id, CommandTarget.status.in_(statuses))
            .values(status=status, reason=reason, updated_at=now)
            .returning(CommandTarget.station_id)
        )
    )


def stop_targets(session: Session, command: Command, *, reason: str, now: dt.datetime) -> None:
    """An operator stopped the command: its unsettled targets end STOPPED (never FAILED;
    a late final ack from a station is then stale) and the command is done.  (A command
    whose rows are still staged has them written first by `broadcasts.stop`.)"""
    _settle_targets(session, command, OPEN, TargetStatus.STOPPED, reason, now)
    command.done = True


def expire_due(session: Session, now: dt.datetime) -> int:
    """Targets past their command's limits: EXPIRED if never received, FAILED if no
    final ack by the deadline.  Marks commands done when every target is final (and
    their broadcast finished).  Returns the number of targets settled and commands
    ended: anything but 0 is to be committed.  A command whose rows are still staged is
    left alone (without them it would look settled): its request writes them once the
    fan-out is over, or this sweep once they are stale (`staged.write_stale`)."""
    changed = staged.write_stale(session, now)
    unsettled = (
        select(CommandTarget.id)
        .where(
            CommandTarget.command_id == Command.id,
            CommandTarget.status.not_in(list(TERMINAL)),
        )
        .exists()
    )
    open_commands = list(
        session.scalars(
            select(Command).where(
                Command.done.is_(False),
                or_(Command.not_after < now - TRANSIT_GRACE, ~unsettled),
                ~staged.still_staged(Command.id),
            )
        )
    )
    for command in open_commands:
        if command.not_after >= now - TRANSIT_GRACE:  # settled early: only mark it done
            _end(session, command)
            changed += 1
            continue
        unreceived = _settle_targets(session, command, *_UNRECEIVED, now)
        changed += len(unreceived)
        if command.type == "play":
            for station_id in unreceived:
                _settle_play(
                    session,
                    station_id,
                    command,
                    TargetStatus.EXPIRED,
                    "expired before delivery",
                    now,
                )
        if command.deadline + FINAL_ACK_GRACE < now:
            late = _settle_targets(session, command, *_UNFINISHED, now)
            changed += len(late)
        remaining = session.scalar(
            select(CommandTarget.id)
            .where(
                CommandTarget.command_id == command.id,
                CommandTarget.status.not_in(list(TERMINAL)),
            )
            .limit(1)
        )
        if remaining is None:
            _end(session, command)
            changed += 1
    return changed


def _end(session: Session, command: Command) -> None:
    """Every target of the command settled: it is done, and so is its broadcast (the API
    then says ``finished``, as the page does)."""
    command.done = True
    if command.type == "play" and command.broadcast_id is not None:
        # ... unless a "send again" of the same broadcast is still under way
        running = (
            select(Command.id)
            .where(
                Command.broadcast_id == command.broadcast_id,
                Command.type == "play",
                Command.done.is_(False),
                Command.id != command.id,
            )
            .exists()
        )
        session.execute(
            update(Broadcast)
            .where(
                Broadcast.id == command.broadcast_id,
                Broadcast.status == BroadcastStatus.ACTIVE,
                ~running,
            )
            .values(status=BroadcastStatus.FINISHED)
        )


def progress(session: Session, command_ids: Sequence[int]) -> dict[str, int]:
    """Number of targets in each status, over some commands (those still staged
    count as PENDING)."""
    rows = session.execute(
        select(CommandTarget.status, func.count())
        .where(CommandTarget.command_id.in_(command_ids))
        .group_by(CommandTarget.status)
    )
    counts = {s.value: 0 for s in TargetStatus}
    counts[TargetStatus.PENDING.value] = staged.pending_counts(session, command_ids)
    for status, count in rows:
        counts[TargetStatus(status).value] += int(count)
    return counts


def unacknowledged_by_station(session: Session, since: dt.datetime) -> dict[int, int]:
    """Command targets given up since ``since`` for want of an acknowledgement (never
    received before ``not_after``, or no final one by the deadline), per station."""
    rows = session.execute(
        select(CommandTarget.station_id, func.count())
        .where(
            or_(
                *(
                    and_(CommandTarget.status == status, CommandTarget.reason == reason)
                    for _, status, reason in (_UNRECEIVED, _UNFINISHED)
                )
            ),
            CommandTarget.updated_at >= since,
        )
        .group_by(CommandTarget.station_id)
    )
    return {station_id: int(n) for station_id, n in rows}


def lag_seconds(session: Session, now: dt.datetime) -> float:
    """How long the oldest command still waiting to be published has waited (0: none)."""
    oldest = session.scalar(
        select(func.min(Command.created_at)).where(
            Command.published_at.is_(None), Command.not_after > now, Command.done.is_(False)
        )
    )
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite's MIN() comes back without the column type
        oldest = oldest.replace(tzinfo=dt.UTC)
    return max((now - oldest).total_seconds(), 0.0)


def receive_latencies(session: Session, since: dt.datetime) -> list[float]:
    """Seconds from publishing a broadcast's command to each station's receipt, for
    broadcasts published since ``since`` (the broadcast latency histogram)."""
    rows = session.execute(
        select(Command.published_at, CommandTarget.received_at)
        .join(CommandTarget, CommandTarget.command_id == Command.id)
        .where(
            Command.broadcast_id.is_not(None),
            Command.published_at >= since,
            CommandTarget.received_at.is_not(None),
        )
    )
    return [max((got - sent).total_seconds(), 0.0) for sent, got in rows if sent and got]
