"""A broadcast's per-station rows, written right after its publish.

A broadcast's play command has a target row per station (its delivery status) and a
play-log plan per station.  Written before the publish, they were most of an
emergency's way out at scale (10,000 rows each, and on an aged database a page of
each station-first index per station) while nothing about them is needed to make the
command durable: the command, its route and its station list are.  So a broadcast
sent through the API (or a CAP alert aired) stores the command with its station list
here (`store`, one row), commits, hands the command to the publisher, and once the
publisher is through with it writes the rows (`write`, in a transaction of its own:
`broadcaster.dispatch.wake.write_staged`).  Other callers write them with the command.

Whoever needs the rows first writes them, under a lock on the staged row, so they are
written once whatever the order:

- the request that staged them, right after the hand-over (the usual writer);
- the publisher recording the publish (`outbox.mark_published`: the targets go SENT);
- the ingest, before it stores acknowledgements or play events that name the command;
- a stop (`broadcasts.stop`) and the worker starting;
- the expiry sweep, for rows staged `STALE_AFTER` ago (a request that died between its
  two transactions leaves its rows staged: the worker writes them); until then the
  sweep leaves the command alone, so it does not write 10,000 rows in the middle of the
  fan-out it follows.

Until then, readers count the staged stations as PENDING (`pending_counts`), and the
publisher sends the direct copies from the staged list (`fanout_of`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, ColumnExpressionArgument, Table, delete, select
from sqlalchemy.orm import Session

from broadcaster.dispatch import playlog
from broadcaster.dispatch.models import Command, CommandTarget, StagedRows, TargetStatus
from kernel.db import among
from stations.targets import insert_per_station

__all__ = [
    "STALE_AFTER",
    "PlayPlan",
    "fanout_of",
    "pending_counts",
    "pending_of_broadcast",
    "remember",
    "staged_of_broadcast",
    "staged_row",
    "still_staged",
    "store",
    "taken",
    "write",
    "write_all",
    "write_for_cmd_ids",
    "write_stale",
]

_TARGETS = cast(Table, CommandTarget.__table__)
#: Rows still staged this long after their command was stored were left by a request that
#: died between its commit and its write (that write follows the publish and the quiet
#: moment after the fan-out, seconds at most): the expiry sweep writes them (`write_stale`).
#: Younger ones are the request's to write, while the broker fans the command out.
STALE_AFTER = dt.timedelta(seconds=30)
#: ``Session.info`` key: the commands this session staged rows for, to write after commit
_STAGED = "broadcaster_staged_rows"
#: ``Session.info`` key: (the transaction, {command id: (its direct station ids, how many
#: stations it goes to)}) of the rows staged in that transaction, so `fanout_of` need not
#: read back what it just wrote
_DIRECT = "broadcaster_staged_direct"


@dataclass(frozen=True, slots=True)
class PlayPlan:
    """The play log's plan of a broadcast's play at each of its stations."""

    broadcast_id: int
    title: str
    kind: str
    start: dt.datetime
    expected_ms: int


def _insert(
    session: Session,
    *,
    command_id: int,
    cmd_id: str,
    priority: int | None,
    station_ids: Sequence[int],
    direct: Collection[int],
    play: PlayPlan | None,
    now: dt.datetime,
) -> None:
    insert_per_station(
        session,
        _TARGETS,
        station_ids,
        {"command_id": command_id, "status": TargetStatus.PENDING, "updated_at": now},
        flag=("direct", set(direct)),
    )
    if play is not None:
        playlog.record_broadcast(
            session,
            station_ids=station_ids,
            cmd_id=cmd_id,
            broadcast_id=play.broadcast_id,
            title=play.title,
            kind=play.kind,
            priority=priority or 0,
            start=play.start,
            expected_ms=play.expected_ms,
            now=now,
        )


def store(
    session: Session,
    command: Command,
    station_ids: Sequence[int],
    direct: Collection[int],
    play: PlayPlan | None,
    now: dt.datetime,
    *,
    after_publish: bool = False,
) -> None:
    """The command's target rows (PENDING) and, for a broadcast's play, its plans;
    ``after_publish``: only its station list, staged (flushed with the command), for the
    boundary to write after its commit and hand-over (`taken`, `write`)."""
    if not after_publish:
        _insert(
            session,
            command_id=command.id,
            cmd_id=command.cmd_id,
            priority=command.priority,
            station_ids=station_ids,
            direct=direct,
            play=play,
            now=now,
        )
        return
    session.add(staged_row(command.id, station_ids, direct, play, now))
    remember(session, command, station_ids, direct)


def staged_row(
    command_id: int | None,
    station_ids: Sequence[int],
    direct: Collection[int],
    play: PlayPlan | None,
    now: dt.datetime,
) -> StagedRows:
    """The staged row of a command (``command_id`` None: filled in by the statement
    that stores it with its command, `outbox.create`)."""
    return StagedRows(
        command_id=command_id,
        station_ids=list(station_ids),
        direct_ids=sorted(direct),
        staged_at=now,
        play_title=play.title if play else None,
        play_kind=play.kind if play else None,
        play_start=play.start if play else None,
        play_expected_ms=play.expected_ms if play else None,
    )


def remember(
    session: Session, command: Command, station_ids: Sequence[int], direct: Collection[int]
) -> None:
    """Note in ``session`` that ``command``'s rows are staged: for `taken` after the
    commit, and its recipients for `fanout_of` in this transaction."""
    session.info.setdefault(_STAGED, []).append(command.id)
    current = _transaction(session)
    known: tuple[object, dict[int, tuple[list[int], int]]] | None = session.info.get(_DIRECT)
    if known is None or known[0] is not current:
        known = session.info[_DIRECT] = (current, {})
    known[1][command.id] = (sorted(direct), len(station_ids))


def _transaction(session: Session) -> object:
    """The innermost transaction ``session`` is in (a savepoint's, else its own)."""
    return session.get_nested_transaction() or session.get_transaction()


def taken(session: Session) -> list[int]:
    """The commands this session staged rows for since the last call."""
    return list(session.info.pop(_STAGED, []))


def write(session: Session, command_ids: Iterable[int]) -> int:
    """Write the staged rows of these commands, those still staged (flushes; the caller
    commits); the number of commands written.  The staged rows are locked first
    (PostgreSQL; on SQLite a writer holds the database): a second writer waits for the
    first and then finds nothing staged."""
    ids = sorted(set(command_ids))
    if not ids:
        return 0
    staged = session.execute(
        select(
            StagedRows.command_id,
            StagedRows.station_ids,
            StagedRows.direct_ids,
            StagedRows.staged_at,
            StagedRows.play_title,
            StagedRows.play_kind,
            StagedRows.play_start,
            StagedRows.play_expected_ms,
            Command.cmd_id,
            Command.priority,
            Command.broadcast_id,
        )
        .join(Command, Command.id == StagedRows.command_id)
        .where(among(session, StagedRows.command_id, ids))
        .order_by(StagedRows.command_id)
        .with_for_update(of=StagedRows)
    ).all()
    for row in staged:
        play = None
        if (
            row.play_kind is not None
            and row.broadcast_id is not None
            and row.play_start is not None
            and row.play_title is not None
        ):
            play = PlayPlan(
                broadcast_id=row.broadcast_id,
                title=row.play_title,
                kind=row.play_kind,
                start=row.play_start,
                expected_ms=row.play_expected_ms or 0,
            )
        _insert(
            session,
            command_id=row.command_id,
            cmd_id=row.cmd_id,
            priority=row.priority,
            station_ids=[int(s) for s in row.station_ids],
            direct=[int(s) for s in row.direct_ids],
            play=play,
            now=row.staged_at,
        )
    known = session.info.get(_DIRECT)
    if known is not None:
        for command_id in ids:
            known[1].pop(command_id, None)
    if staged:
        session.execute(
            delete(StagedRows).where(
                among(session, StagedRows.command_id, [row.command_id for row in staged])
            )
        )
    return len(staged)


def write_for_cmd_ids(session: Session, cmd_ids: Collection[str]) -> int:
    """`write` for the commands named by these ``cmd_id``s (acknowledgements and play
    events about to be stored), when any of them is still staged."""
    if not cmd_ids:
        return 0
    ids = session.scalars(
        select(StagedRows.command_id)
        .join(Command, Command.id == StagedRows.command_id)
        .where(Command.cmd_id.in_(sorted(cmd_ids)))
    ).all()
    return write(session, ids)


def write_all(session: Session) -> int:
    """`write` for every command still staged (the worker starting)."""
    return write(session, session.scalars(select(StagedRows.command_id)).all())


def write_stale(session: Session, now: dt.datetime) -> int:
    """`write` for the commands staged `STALE_AFTER` or longer before ``now`` (the expiry
    sweep): their request died between its commit and its write, and nobody else has
    needed the rows since."""
    stale = select(StagedRows.command_id).where(StagedRows.staged_at <= now - STALE_AFTER)
    return write(session, session.scalars(stale).all())


def still_staged(command_id: ColumnExpressionArgument[int]) -> ColumnElement[bool]:
    """Whether that command's rows are still staged (a filter: such a command has no
    target rows yet, so it must not look settled)."""
    return select(StagedRows.command_id).where(StagedRows.command_id == command_id).exists()


def fanout_of(session: Session, command_id: int) -> tuple[list[int], int] | None:
    """(The stations a staged command goes to directly, how many stations it goes to);
    None once its rows are written.  Not read back when this transaction staged them
    (an emergency's way out)."""
    known = session.info.get(_DIRECT)
    if known is not None and known[0] is _transaction(session) and command_id in known[1]:
        direct, stations = known[1][command_id]
        return list(direct), stations
    row = session.execute(
        select(StagedRows.direct_ids, StagedRows.station_ids).where(
            StagedRows.command_id == command_id
        )
    ).one_or_none()
    return None if row is None else ([int(s) for s in row[0]], len(row[1]))


def pending_counts(session: Session, command_ids: Collection[int]) -> int:
    """How many targets of these commands are staged, not written yet (all PENDING)."""
    if not command_ids:
        return 0
    return _staged_stations(session, StagedRows.command_id.in_(sorted(command_ids)))


def pending_of_broadcast(session: Session, broadcast_id: int) -> int:
    """How many targets of the broadcast's commands are staged, not written yet."""
    return _staged_stations(
        session,
        StagedRows.command_id.in_(select(Command.id).where(Command.broadcast_id == broadcast_id)),
    )


def staged_of_broadcast(session: Session, broadcast_id: int) -> dict[int, dt.datetime]:
    """The stations of the broadcast's commands whose rows are not written yet, with when
    they were staged (their targets, once written, are PENDING from then)."""
    staged: dict[int, dt.datetime] = {}
    for station_ids, staged_at in session.execute(
        select(StagedRows.station_ids, StagedRows.staged_at).where(
            StagedRows.command_id.in_(
                select(Command.id).where(Command.broadcast_id == broadcast_id)
            )
        )
    ):
        for station_id in station_ids:
            staged.setdefault(int(station_id), staged_at)
    return staged


def _staged_stations(session: Session, where: ColumnElement[bool]) -> int:
    return sum(len(ids) for ids in session.scalars(select(StagedRows.station_ids).where(where)))
