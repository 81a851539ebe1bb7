"""Acknowledgements stored in batches (`outbox.apply_acks`, the ingest's path for
stations that sent nothing else in a batch) end exactly where `outbox.apply_ack`, one
by one, ends: same results, same rows, whatever the order, repeats and stale acks."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import get_args

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.alarms.models import Alarm, AlarmStatus
from broadcaster.alarms.rules import Condition, Severity
from broadcaster.dispatch import outbox, playlog
from broadcaster.dispatch.ingest import Ingestor
from broadcaster.dispatch.models import (
    Command,
    CommandTarget,
    DeadLetter,
    Play,
    PlayStatus,
    StationEvent,
    TargetStatus,
)
from firmware_bridge.client import Inbound
from firmware_bridge.errors import RetryLater
from firmware_bridge.messages import (
    Ack,
    AckStatus,
    Event,
    EventType,
    Reported,
    StationState,
    Telemetry,
)
from firmware_bridge.topics import TopicKind, Topics
from stations import live, tan_an
from stations.models import ConnectionCause, Station, StationConnection
from stations.models import StationState as StateRow
from tests.support.loa import wait_until

TOPICS = Topics()
STATUSES = list(get_args(AckStatus))


@pytest.fixture
def fleet(session_factory: sessionmaker[Session]) -> list[tuple[int, str]]:
    """The Tân An stations, each with a state row (as after its birth)."""
    with db.session_scope(session_factory) as session:
        tan_an.load(session)
    with db.session_scope(session_factory) as session:
        stations = [(int(i), str(s)) for i, s in session.execute(select(Station.id, Station.sid))]
        for station_id, _ in stations:
            live.state_of(session, station_id)
    return sorted(stations)


def _commands(
    session_factory: sessionmaker[Session], station_ids: list[int]
) -> dict[str, list[int]]:
    """A play to every station, a stop to half of them, a ping to a few: cmd_id -> ids."""
    now = dt.datetime.now(dt.UTC)
    made: dict[str, list[int]] = {}
    with db.session_scope(session_factory) as session:
        for ctype, ids in (
            ("play", station_ids),
            ("stop", station_ids[::2]),
            ("ping", station_ids[:5]),
        ):
            command = outbox.create(
                session,
                type=ctype,
                body={},
                station_ids=ids,
                not_after=now + dt.timedelta(hours=1),
                created_by="test",
                now=now,
            )
            made[command.cmd_id] = ids
    return made


def _targets(session: Session) -> list[tuple[object, ...]]:
    return sorted(
        tuple(row)
        for row in session.execute(
            select(
                CommandTarget.command_id,
                CommandTarget.station_id,
                CommandTarget.status,
                CommandTarget.reason,
                CommandTarget.received_at,
                CommandTarget.updated_at,
                CommandTarget.station_time,
                CommandTarget.clock_offset_ms,
            )
        )
    )


def _random_acks(
    rng: random.Random, commands: dict[str, list[int]], all_ids: list[int]
) -> list[outbox.AckIn]:
    base = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)
    acks = []
    for n in range(rng.randint(50, 400)):
        cmd_id = rng.choice([*commands, "c-unknown"])
        ids = commands.get(cmd_id, all_ids)
        station_id = rng.choice(ids) if rng.random() < 0.95 else rng.choice(all_ids)
        status = rng.choice(STATUSES)
        ping = cmd_id in commands and commands[cmd_id] == all_ids[:5]
        acks.append(
            outbox.AckIn(
                station_id=station_id,
                cmd_id=cmd_id,
                status=status,
                at=base + dt.timedelta(milliseconds=n),
                received_at=base + dt.timedelta(milliseconds=n, microseconds=500),
                reason=rng.choice([None, "amp", "busy: b-1 at priority 9"]),
                station_time=base if ping and status == "SUCCEEDED" else None,
            )
        )
    return acks


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_ends_where_acks_applied_one_by_one_end(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]], seed: int
) -> None:
    all_ids = [i for i, _ in fleet][:40]
    commands = _commands(session_factory, all_ids)
    acks = _random_acks(random.Random(seed), commands, all_ids)
    kw = ("station_id", "cmd_id", "status", "at", "received_at", "reason", "station_time")
    with session_factory() as session:
        one_by_one = [outbox.apply_ack(session, **{k: getattr(a, k) for k in kw}) for a in acks]
        session.flush()
        expected = _targets(session)
        session.rollback()
    with session_factory() as session:
        batched = outbox.apply_acks(session, acks)
        session.flush()
        got = _targets(session)
        session.rollback()
    assert batched == one_by_one
    assert got == expected
    assert {"ok", "stale", "unknown_command", "not_target"} >= set(batched)
    assert "ok" in batched  # the sequences exercise both
    assert "stale" in batched


def _ack(sid: str, cmd_id: str, status: str, at: dt.datetime) -> Inbound:
    return Inbound(
        sid=sid,
        kind=TopicKind.ACK,
        message=Ack(cmd_id=cmd_id, status=status, at=at),  # type: ignore[arg-type]
        topic=TOPICS.ack(sid),
        received_at=at,
    )


def test_ingest_batches_acks_and_keeps_each_station_in_order(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]]
) -> None:
    """Stations that sent only acks take the batched path; a station that also sent an
    event in the batch keeps the path in order; a bad ack is quarantined alone;
    last_seen moves forward; the acked cmd_ids are announced once."""
    ids = [i for i, _ in fleet][:30]
    sids = dict(fleet)
    commands = _commands(session_factory, ids)
    play = next(c for c, targets in commands.items() if targets == ids)
    announced: list[str] = []
    ingest = Ingestor(session_factory, on_ack=announced.append)
    now = dt.datetime.now(dt.UTC)
    batch = [_ack(sids[i], play, "RECEIVED", now) for i in ids]
    batch += [_ack(sids[i], play, "IN_PROGRESS", now + dt.timedelta(seconds=1)) for i in ids]
    mixed = sids[ids[0]]
    batch.append(
        Inbound(
            sid=mixed,
            kind=TopicKind.EVENT,
            message=Event(event_id="e-1", type="fault.raised", at=now, fault="amp_overheat"),
            topic=TOPICS.event(mixed),
            received_at=now,
        )
    )
    # a value no column can hold (a timestamp in year 9999 is fine for the model)
    bad = _ack(sids[ids[1]], play, "SUCCEEDED", dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    batch.append(bad)
    batch.append(_ack(sids[ids[2]], "c-unknown", "RECEIVED", now))
    # play events of an acks-only station: batched too, a repeat counted once
    started = Event(event_id="e-2", type="play.started", at=now, cmd_id=play)
    for _ in range(2):
        batch.append(
            Inbound(
                sid=sids[ids[3]],
                kind=TopicKind.EVENT,
                message=started,
                topic=TOPICS.event(sids[ids[3]]),
                received_at=now,
            )
        )
    ingest(batch)
    stats = ingest.stats()
    assert stats["ack"] == 2 * len(ids)
    assert stats["ack_unknown_command"] == 1
    assert stats["event"] == 1  # the fault event; the play has no play row here:
    assert stats["event_unknown_item"] == 2  # not stored, said so
    assert announced == [play]
    with session_factory() as session:
        rows = session.execute(
            select(CommandTarget.status, CommandTarget.received_at).where(
                CommandTarget.command.has(cmd_id=play)
            )
        ).all()
        assert len(rows) == len(ids)
        assert {str(status) for status, _ in rows} == {"IN_PROGRESS"}
        assert {received for _, received in rows} == {now}
        seen = dict(session.execute(select(StateRow.station_id, StateRow.last_seen)).all())
        assert all(seen[i] is not None and seen[i] >= now for i in ids)
        assert session.get(StateRow, ids[0]).faults == ["amp_overheat"]  # type: ignore[union-attr]
        letters = session.scalars(select(DeadLetter)).all()
        assert [(d.sid, d.category) for d in letters] == [(sids[ids[1]], "range")]
    # stale and repeated acks in a later batch change nothing and are counted stale
    ingest([_ack(sids[i], play, "RECEIVED", now + dt.timedelta(seconds=2)) for i in ids])
    assert ingest.stats()["ack_stale"] == len(ids)
    with session_factory() as session:
        assert {
            str(s)
            for s in session.scalars(
                select(CommandTarget.status).where(CommandTarget.command.has(cmd_id=play))
            )
        } == {"IN_PROGRESS"}


#: every event type but the fault ones (they take the one-by-one path)
EVENT_TYPES = [t for t in get_args(EventType) if not t.startswith("fault.")]


def _plays_and_alarm(session_factory: sessionmaker[Session], ids: list[int]) -> None:
    """A broadcast play and a schedule item at each station; a speaker-line alarm on
    the first station during the first half hour (its plays then are not heard)."""
    base = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)
    with db.session_scope(session_factory) as session:
        for station_id in ids:
            for source, key in (("broadcast", {"cmd_id": "b-1"}), ("schedule", {"item_id": "i-1"})):
                session.add(
                    Play(
                        station_id=station_id,
                        source=source,
                        title="Bản tin",
                        kind="file",
                        priority=3,
                        planned_start=base,
                        planned_end=base + dt.timedelta(minutes=5),
                        expected_ms=300_000,
                        status=PlayStatus.PLANNED,
                        updated_at=base,
                        **key,
                    )
                )
        session.add(
            Alarm(
                station_id=ids[0],
                condition=Condition.SPEAKER_LINE,
                severity=Severity.CRITICAL,
                status=AlarmStatus.CLEARED,
                raised_at=base - dt.timedelta(minutes=1),
                last_seen_at=base,
                cleared_at=base + dt.timedelta(minutes=30),
            )
        )


def _random_events(rng: random.Random, ids: list[int]) -> list[playlog.EventIn]:
    base = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)
    events = []
    for n in range(rng.randint(50, 300)):
        named = rng.choice([{"cmd_id": "b-1"}, {"item_id": "i-1"}, {"item_id": "i-9"}, {}])
        at = base + dt.timedelta(seconds=rng.randint(0, 600))
        events.append(
            playlog.EventIn(
                station_id=rng.choice(ids),
                event_id=f"e-{rng.randint(0, 120)}",  # repeats: duplicates, in and across
                type=rng.choice(EVENT_TYPES),
                at=at,
                received_at=at + dt.timedelta(milliseconds=n),
                position_ms=rng.choice([None, 0, 120_000, 299_000]),
                reason=rng.choice([None, "amp hot"]),
                **named,
            )
        )
    finished = base + dt.timedelta(minutes=6)
    events.append(
        playlog.EventIn(
            station_id=ids[0],
            event_id="e-last",
            type="play.finished",
            at=finished,
            received_at=finished,
            cmd_id="b-1",
            position_ms=300_000,
        )
    )
    return events


def _plays(session: Session) -> list[tuple[object, ...]]:
    return sorted(
        (
            tuple(row)
            for row in session.execute(
                select(
                    Play.station_id,
                    Play.item_id,
                    Play.cmd_id,
                    Play.status,
                    Play.started_at,
                    Play.ended_at,
                    Play.played_ms,
                    Play.reason,
                    Play.updated_at,
                )
            )
        ),
        key=repr,
    )


def _events(session: Session) -> list[tuple[object, ...]]:
    return sorted(
        tuple(row)
        for row in session.execute(
            select(StationEvent.station_id, StationEvent.event_id, StationEvent.type)
        )
    )


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_of_events_ends_where_events_stored_one_by_one_end(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]], seed: int
) -> None:
    ids = [i for i, _ in fleet][:6]
    _plays_and_alarm(session_factory, ids)
    events = _random_events(random.Random(seed), ids)
    with session_factory() as session:
        one_by_one = []
        for event in events:  # what Ingestor._event does for each
            play = playlog.play_for(session, event)
            if play is None and (event.item_id or event.cmd_id):
                one_by_one.append("event_unknown_item")
                continue
            if not playlog.store_event(session, event):
                one_by_one.append("event_duplicate")
                continue
            if play is not None:
                playlog.apply_event(play, event)
                playlog.reconcile_hearing(session, play)
            one_by_one.append("event")
        session.flush()
        expected_plays, expected_events = _plays(session), _events(session)
        session.rollback()
    with session_factory() as session:
        batched = playlog.record_events(session, events)
        session.flush()
        got_plays, got_events = _plays(session), _events(session)
        session.rollback()
    assert batched == one_by_one
    assert got_events == expected_events
    assert got_plays == expected_plays
    assert {"event", "event_duplicate", "event_unknown_item"} == set(batched)
    # the last event: the first station's broadcast played in full, under its alarm
    assert (ids[0], None, "b-1", PlayStatus.NOT_HEARD) in {row[:4] for row in got_plays}


def _connection_messages(rng: random.Random, sids: list[str]) -> list[Inbound]:
    """Births (a new connection, or the same one again: a retained birth delivered
    twice), reported states, telemetry, deaths (current or stale) and acks of an unknown
    command, in time order."""
    at = dt.datetime.now(dt.UTC)
    bdseq = dict.fromkeys(sids, 0)
    out: list[Inbound] = []
    for _ in range(600):
        sid = rng.choice(sids[: len(sids) // 2] if rng.random() < 0.5 else sids)
        at += dt.timedelta(milliseconds=rng.randint(1, 40))
        roll = rng.random()
        if roll < 0.1:
            out.append(_ack(sid, "unknown-command", "RECEIVED", at))
            continue
        if roll < 0.25:
            sample = Telemetry(
                seq=len(out),
                at=at,
                uptime_s=len(out),
                volume=rng.choice([40, 60, 80]),
                playing=None,
                # mains lost: the cause of the connection's end, if a death or a new
                # birth follows (before it in the same batch or not)
                on_battery=rng.choice([None, False, True]),
                rssi_dbm=-float(rng.randint(50, 90)),
            )
            out.append(
                Inbound(
                    sid=sid,
                    kind=TopicKind.TELEMETRY,
                    message=sample,
                    topic=TOPICS.telemetry(sid),
                    received_at=at,
                )
            )
            continue
        if roll < 0.7:
            bdseq[sid] += rng.random() < 0.7
            message = StationState(
                online=True,
                bdseq=bdseq[sid],
                at=at,
                firmware=f"1.{bdseq[sid]}",
                model="sim",
                capabilities=["file"] if bdseq[sid] % 2 else ["file", "relay"],
                desired_version=bdseq[sid],
            )
        elif roll < 0.85:
            report = Reported(
                desired_version=rng.choice([None, 1, 2]),
                at=at,
                missing=rng.sample(["b" * 64, "c" * 64, "a" * 64], rng.randint(0, 2)),
                cache_bytes=rng.randint(0, 10**6),
                volume=rng.choice([None, 30, 50]),  # telemetry sets it too: the last wins
            )
            out.append(
                Inbound(
                    sid=sid,
                    kind=TopicKind.REPORTED,
                    message=report,
                    topic=TOPICS.reported(sid),
                    received_at=at,
                    retained=rng.random() < 0.3,
                )
            )
            continue
        else:
            message = StationState(online=False, bdseq=bdseq[sid] - (rng.random() < 0.2), at=at)
        out.append(
            Inbound(
                sid=sid,
                kind=TopicKind.STATE,
                message=message,
                topic=TOPICS.state(sid),
                received_at=at,
                retained=rng.random() < 0.2,
            )
        )
    return out


def _connections(session: Session) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    states = session.execute(
        select(
            StateRow.station_id,
            StateRow.online,
            StateRow.bdseq,
            StateRow.online_since,
            StateRow.offline_since,
            StateRow.last_seen,
            StateRow.firmware,
            StateRow.capabilities,
            StateRow.held_version,
            StateRow.applied_version,
            StateRow.missing,
            StateRow.reported_at,
            StateRow.cache_bytes,
            StateRow.volume,
            StateRow.telemetry,
            StateRow.telemetry_at,
        ).order_by(StateRow.station_id)
    )
    intervals = session.execute(
        select(
            StationConnection.station_id,
            StationConnection.bdseq,
            StationConnection.online_at,
            StationConnection.offline_at,
            StationConnection.cause,
        ).order_by(StationConnection.station_id, StationConnection.id)
    )
    return [tuple(row) for row in states], [tuple(row) for row in intervals]


def _fresh_connections(session_factory: sessionmaker[Session], ids: list[int]) -> None:
    with db.session_scope(session_factory) as session:
        session.execute(delete(StationConnection))
        session.execute(delete(StateRow))
        for station_id in ids:
            live.state_of(session, station_id)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_storm_of_births_in_batches_ends_where_births_stored_one_by_one_end(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]], seed: int
) -> None:
    """A reconnect storm: stations whose batch holds only births, reports, telemetry
    (and acks) take the batched path (`live.last_connections`, one flush), the others the path in order;
    whatever the batch sizes, states and connection intervals end where
    `live.record_birth` / `record_reported` / `record_telemetry` / `record_death` /
    `touch` one message at a time end."""
    rng = random.Random(seed)
    ids = [i for i, _ in fleet][:40]
    sid_of = dict(fleet)
    messages = _connection_messages(rng, [sid_of[i] for i in ids])
    id_of = {sid: i for i, sid in sid_of.items()}

    _fresh_connections(session_factory, ids)
    with db.session_scope(session_factory) as session:
        for inbound in messages:
            station_id, message = id_of[inbound.sid], inbound.message
            if isinstance(message, StationState) and message.online:
                live.record_birth(
                    session,
                    station_id,
                    bdseq=message.bdseq,
                    received_at=inbound.received_at,
                    firmware=message.firmware,
                    model=message.model,
                    capabilities=list(message.capabilities or []),
                    held_version=message.desired_version,
                )
            elif isinstance(message, Telemetry):
                data = message.model_dump(mode="json", exclude_none=True)
                row = live.TelemetryRow(
                    station_id=station_id,
                    at=message.at,
                    received_at=inbound.received_at,
                    seq=message.seq,
                    data=data,
                )
                live.record_telemetry(session, [row])
            elif isinstance(message, Reported):
                live.record_reported(
                    session,
                    station_id,
                    applied_version=message.desired_version,
                    missing=message.missing,
                    received_at=inbound.received_at,
                    cache_bytes=message.cache_bytes,
                    volume=message.volume,
                )
            elif isinstance(message, StationState):
                live.record_death(
                    session, station_id, bdseq=message.bdseq, received_at=inbound.received_at
                )
            elif not inbound.retained:
                live.touch(session, station_id, inbound.received_at)
            session.flush()
    with session_factory() as session:
        expected = _connections(session)

    _fresh_connections(session_factory, ids)
    ingest = Ingestor(session_factory)
    first = 0
    while first < len(messages):
        size = rng.choice([1, 7, 50, 200])
        ingest(messages[first : first + size])
        first += size
    with session_factory() as session:
        assert _connections(session) == expected
        assert session.scalars(select(DeadLetter)).all() == []
    counters = ingest.stats()
    assert counters["birth"] == sum(
        isinstance(m.message, StationState) and m.message.online for m in messages
    )
    assert counters.get("errors", 0) == 0


def _inbound(sid: str, kind: TopicKind, message: object, at: dt.datetime) -> Inbound:
    topic = {
        TopicKind.STATE: TOPICS.state(sid),
        TopicKind.TELEMETRY: TOPICS.telemetry(sid),
        TopicKind.ACK: TOPICS.ack(sid),
        TopicKind.EVENT: TOPICS.event(sid),
    }[kind]
    return Inbound(sid=sid, kind=kind, message=message, topic=topic, received_at=at)  # type: ignore[arg-type]


@pytest.mark.parametrize("then", ["death", "reconnect"])
def test_mains_lost_just_before_a_connection_ends_in_the_same_batch_is_the_cause(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]], then: str
) -> None:
    """A power cut under load: the station's last telemetry (on battery) and its death,
    or its reconnect, reach the ingest in one batch beside other stations' births; the
    connection still ends with the mains (``power``), not the will or the link."""
    (cut, sid), *rest = fleet[:6]
    at = dt.datetime.now(dt.UTC)
    _fresh_connections(session_factory, [i for i, _ in fleet[:6]])
    ingest = Ingestor(session_factory)
    ingest(
        [
            _inbound(
                s, TopicKind.STATE, StationState(online=True, bdseq=1, at=at, capabilities=[]), at
            )
            for _, s in fleet[:6]
        ]
    )
    later = at + dt.timedelta(seconds=30)
    sample = Telemetry(seq=1, at=later, uptime_s=30, volume=60, playing=None, on_battery=True)
    ending = (
        StationState(online=False, bdseq=1, at=later)
        if then == "death"
        else StationState(online=True, bdseq=2, at=later, capabilities=[])
    )
    ingest(
        [
            _inbound(sid, TopicKind.TELEMETRY, sample, later),
            *(
                _inbound(
                    s,
                    TopicKind.STATE,
                    StationState(online=True, bdseq=2, at=later, capabilities=[]),
                    later,
                )
                for _, s in rest
            ),
            _inbound(sid, TopicKind.STATE, ending, later + dt.timedelta(milliseconds=5)),
        ]
    )
    with session_factory() as session:
        ended = session.scalars(
            select(StationConnection.cause).where(
                StationConnection.station_id == cut, StationConnection.offline_at.is_not(None)
            )
        ).all()
        others = session.scalars(
            select(StationConnection.cause).where(
                StationConnection.station_id.in_([i for i, _ in rest]),
                StationConnection.offline_at.is_not(None),
            )
        ).all()
    assert ended == [ConnectionCause.POWER]
    assert others == [ConnectionCause.LINK] * len(rest)


def _blocked_on_a_row_lock(factory: sessionmaker[Session]) -> bool:
    """PostgreSQL: a statement on the command targets waits for another transaction's row
    lock (read from another connection)."""
    with factory() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%command_targets%'"
            )
        )
    return bool(waiting)


@pytest.mark.parametrize("path", ["batched", "in order"])
def test_an_ack_never_undoes_a_stop_committed_while_it_was_being_stored(
    session_factory: sessionmaker[Session], fleet: list[tuple[int, str]], path: str
) -> None:
    """An operator stops a broadcast while a station's IN_PROGRESS is being stored: the
    target ends STOPPED, whichever transaction the database lets through first.

    PostgreSQL (read committed) once let the ack's transaction read the target before the
    stop committed and write its own status over the stop after (a lost update: a stopped
    copy left open, seen as a flaky `test_speech_follows` under load).  The ack's read now
    locks the rows it will write (``FOR UPDATE``), so it waits for the stop and reads
    STOPPED; SQLite has one writer, and a write on a snapshot older than the last commit
    is refused (the bridge offers the batch again, `RetryLater`)."""
    station_id, sid = fleet[0]
    commands = _commands(session_factory, [station_id])
    cmd_id = next(iter(commands))  # the play
    ingest = Ingestor(session_factory)
    at = dt.datetime.now(dt.UTC)
    ingest([_inbound(sid, TopicKind.ACK, Ack(cmd_id=cmd_id, status="RECEIVED", at=at), at)])
    later = at + dt.timedelta(seconds=1)
    batch = [
        _inbound(sid, TopicKind.ACK, Ack(cmd_id=cmd_id, status="IN_PROGRESS", at=later), later)
    ]
    if path == "in order":  # a fault event of the station sends its whole batch in order
        fault = Event(event_id=f"{sid}.1.1", type="fault.raised", at=later, fault="storage_low")
        batch.append(_inbound(sid, TopicKind.EVENT, fault, later))
    postgres = session_factory.kw["bind"].dialect.name == "postgresql"
    outcome: list[BaseException] = []

    def store() -> None:
        for _ in range(200):
            try:
                ingest(batch)
                return
            except RetryLater:  # what the bridge does with it
                time.sleep(0.05)
            except BaseException as exc:
                outcome.append(exc)
                return

    stopper = session_factory()
    try:
        command = stopper.scalars(select(Command).where(Command.cmd_id == cmd_id)).one()
        outbox.stop_targets(stopper, command, reason="stopped by admin", now=later)
        stopper.flush()  # the stop holds its row locks (SQLite: the write lock) ...
        storing = threading.Thread(target=store)
        storing.start()
        if postgres:  # ... until the ack's transaction waits for them
            wait_until(lambda: _blocked_on_a_row_lock(session_factory), timeout_s=30)
        else:
            time.sleep(0.3)
        stopper.commit()
    finally:
        stopper.close()
    storing.join(30)
    assert not storing.is_alive()
    assert not outcome, outcome
    with session_factory() as session:
        status = session.scalar(
            select(CommandTarget.status).where(
                CommandTarget.command_id == command.id, CommandTarget.station_id == station_id
            )
        )
    assert status is TargetStatus.STOPPED
