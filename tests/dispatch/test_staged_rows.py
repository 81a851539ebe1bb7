"""A broadcast sent through the API leaves once its command is stored; its per-station
rows (targets, play-log plans) follow it (`broadcaster.dispatch.staged`).  Whoever needs
them first writes them, once: the request right after the hand-over, the publisher
recording the publish, the ingest before an ack or play event, a stop, the expiry pass,
the worker starting.  Until then they count as PENDING and the publisher sends the
direct copies from the staged list.  On both databases (the suite's two passes)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox, staged
from broadcaster.dispatch.ingest import Ingestor
from broadcaster.dispatch.models import (
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
from firmware_bridge.client import Inbound
from firmware_bridge.messages import Ack, Event
from firmware_bridge.topics import TopicKind, Topics
from kernel.db import utcnow
from stations.models import Station
from tests.api import ok

pytestmark = pytest.mark.usefixtures("tan_an")

TOPICS = Topics()


def _targets() -> dict[str, Any]:
    """A commune and a station outside it (a copy of its own, whatever the route)."""
    return {"groups": ["xa-loi-binh-nhon"], "stations": ["htp-1"]}


def _send(client: TestClient, headers: dict[str, str], bulletin: int) -> dict[str, Any]:
    return ok(
        client.post(
            "/api/v1/broadcasts",
            json={"targets": _targets(), "content": {"asset_id": bulletin}, "tier": "emergency"},
            headers=headers,
        ),
        201,
    )


@pytest.fixture
def send_unwritten(
    client: TestClient, admin: dict[str, str], bulletin: int, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], dict[str, Any]]:
    """Send an emergency whose request fails to write its rows after its commit (as if
    it died there): they stay staged.  The answer comes all the same."""

    def fail(session: Session, command_ids: object) -> int:
        raise RuntimeError("the request died here")

    def send() -> dict[str, Any]:
        with monkeypatch.context() as patched:
            patched.setattr(staged, "write", fail)
            return _send(client, admin, bulletin)

    return send


def _counts(session: Session, command_id: int) -> tuple[int, int, int]:
    """(staged rows, targets, plays) of a command."""
    cmd_id = session.scalar(select(Command.cmd_id).where(Command.id == command_id))
    return (
        session.scalar(
            select(func.count()).select_from(StagedRows).where(StagedRows.command_id == command_id)
        )
        or 0,
        session.scalar(
            select(func.count())
            .select_from(CommandTarget)
            .where(CommandTarget.command_id == command_id)
        )
        or 0,
        session.scalar(select(func.count()).select_from(Play).where(Play.cmd_id == cmd_id)) or 0,
    )


def _command(session: Session, cmd_id: str) -> Command:
    command = session.scalar(select(Command).where(Command.cmd_id == cmd_id))
    assert command is not None
    return command


def test_the_request_writes_the_rows_right_after_the_command(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session], bulletin: int
) -> None:
    made = _send(client, admin, bulletin)
    n = made["progress"]["total"]
    assert n > 1
    with session_factory() as session:
        command = _command(session, made["cmd_id"])
        assert _counts(session, command.id) == (0, n, n)
        direct = session.scalars(
            select(Station.sid)
            .join(CommandTarget, CommandTarget.station_id == Station.id)
            .where(CommandTarget.command_id == command.id, CommandTarget.direct.is_(True))
        ).all()
        assert "htp-1" in direct  # not in the commune's group: a copy of its own
        plays = session.scalars(select(Play).where(Play.cmd_id == command.cmd_id)).all()
        assert {p.status for p in plays} == {PlayStatus.PLANNED}
        assert {p.broadcast_id for p in plays} == {made["id"]}
        assert {p.priority for p in plays} == {command.priority}
    # the answer was read once the rows were in
    assert made["progress"]["by_status"]["PENDING"] == n


def test_staged_rows_count_as_pending_and_the_direct_copy_still_goes(
    send_unwritten: Callable[[], dict[str, Any]], session_factory: sessionmaker[Session]
) -> None:
    made = send_unwritten()
    n = made["progress"]["total"]
    assert made["progress"]["by_status"]["PENDING"] == n > 1
    with session_factory() as session:
        command = _command(session, made["cmd_id"])
        assert _counts(session, command.id) == (1, 0, 0)
        assert outbox.progress(session, [command.id])["PENDING"] == n
        groups, sids, stations = outbox.recipients(session, command)
        assert "htp-1" in sids
        assert stations == n  # all of them, through their groups or directly
        # the publisher records the publish: the rows first, then all SENT
        outbox.mark_published(session, command, utcnow())
        session.commit()
    with session_factory() as session:
        assert _counts(session, command.id) == (0, n, n)
        statuses = session.scalars(
            select(CommandTarget.status).where(CommandTarget.command_id == command.id)
        ).all()
        assert set(statuses) == {TargetStatus.SENT}
        direct = session.scalars(
            select(Station.sid)
            .join(CommandTarget, CommandTarget.station_id == Station.id)
            .where(CommandTarget.command_id == command.id, CommandTarget.direct.is_(True))
            .order_by(Station.sid)
        ).all()
        assert direct == sids  # the copies sent are the targets' own
        # the same from the rows, and every station still counted (SENT is open)
        assert outbox.recipients(session, command) == (groups, sids, n)


def test_staged_stations_are_listed_pending_in_the_broadcast_and_its_report(
    send_unwritten: Callable[[], dict[str, Any]],
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    """Someone who opens the broadcast (or its report) before its rows are written sees
    every station it went to, PENDING, not an empty list."""
    made = send_unwritten()
    n = made["progress"]["total"]
    with session_factory() as session:
        command_id = _command(session, made["cmd_id"]).id
        assert _counts(session, command_id) == (1, 0, 0)
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=admin))
    sids = [s["sid"] for s in read["stations"]]
    assert len(sids) == n > 1
    assert "htp-1" in sids
    assert sids == sorted(sids)
    assert {s["status"] for s in read["stations"]} == {"PENDING"}
    assert all(s["area"] for s in read["stations"])
    report = ok(client.get(f"/api/v1/broadcasts/{made['id']}/report", headers=admin))
    assert report["total"] == n
    assert [s["sid"] for s in report["stations"]] == sids
    assert {s["status"] for s in report["stations"]} == {"PENDING"}
    assert report["missed"] == []
    assert report["reached"] == 0
    # once written, the rows are what is listed: the same stations, once each
    with session_factory() as session:
        assert staged.write(session, [command_id]) == 1
        session.commit()
        assert _counts(session, command_id) == (0, n, n)
        written = sorted(
            session.scalars(
                select(Station.sid)
                .join(CommandTarget, CommandTarget.station_id == Station.id)
                .where(CommandTarget.command_id == command_id)
            )
        )
    assert written == sids
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=admin))
    assert [s["sid"] for s in read["stations"]] == sids
    report = ok(client.get(f"/api/v1/broadcasts/{made['id']}/report", headers=admin))
    assert [s["sid"] for s in report["stations"]] == sids


def test_an_ack_or_play_event_first_writes_the_rows_and_is_stored(
    send_unwritten: Callable[[], dict[str, Any]], session_factory: sessionmaker[Session]
) -> None:
    made = send_unwritten()
    cmd_id = made["cmd_id"]
    with session_factory() as session:
        command = _command(session, cmd_id)
        sids = session.scalars(select(Station.sid).order_by(Station.sid)).all()
    now = utcnow()
    acked, played = "htp-1", next(s for s in sids if s.startswith("lbn-"))  # both targets
    ingest = Ingestor(session_factory)
    ingest(
        [
            Inbound(
                sid=acked,
                kind=TopicKind.ACK,
                message=Ack(cmd_id=cmd_id, status="RECEIVED", at=now),
                topic=TOPICS.ack(acked),
                received_at=now,
            ),
            Inbound(
                sid=played,
                kind=TopicKind.EVENT,
                message=Event(event_id=f"{played}.1.1", type="play.started", at=now, cmd_id=cmd_id),
                topic=TOPICS.event(played),
                received_at=now,
            ),
        ]
    )
    stats = ingest.stats()
    assert stats["ack"] == 1
    assert "ack_not_target" not in stats
    assert "event_unknown_item" not in stats
    with session_factory() as session:
        n = made["progress"]["total"]
        assert _counts(session, command.id) == (0, n, n)
        by_sid = dict(
            session.execute(
                select(Station.sid, CommandTarget.status)
                .join(CommandTarget, CommandTarget.station_id == Station.id)
                .where(CommandTarget.command_id == command.id)
            ).all()
        )
        assert by_sid[acked] is TargetStatus.RECEIVED
        play = session.scalar(
            select(Play)
            .join(Station, Station.id == Play.station_id)
            .where(Play.cmd_id == cmd_id, Station.sid == played)
        )
        assert play is not None
        assert play.status is PlayStatus.PLAYING


def test_the_expiry_pass_does_not_end_a_broadcast_whose_rows_are_staged(
    send_unwritten: Callable[[], dict[str, Any]], session_factory: sessionmaker[Session]
) -> None:
    """A command with no target rows would look settled.  While its request may still
    write them (after the fan-out), the pass leaves it alone, rows and all: it does not
    write them in the middle of the fan-out.  Once they are stale (the request died),
    the pass writes them, and the command goes on."""
    made = send_unwritten()
    n = made["progress"]["total"]
    with session_factory() as session:
        command = _command(session, made["cmd_id"])
        staged_at = session.scalar(
            select(StagedRows.staged_at).where(StagedRows.command_id == command.id)
        )
        assert staged_at is not None
        assert outbox.expire_due(session, staged_at + staged.STALE_AFTER / 2) == 0
        session.commit()
    with session_factory() as session:
        command = _command(session, made["cmd_id"])
        assert not command.done
        assert _counts(session, command.id) == (1, 0, 0)  # still staged
        assert outbox.expire_due(session, staged_at + staged.STALE_AFTER)
        session.commit()
    with session_factory() as session:
        command = _command(session, made["cmd_id"])
        assert not command.done
        assert session.get(Broadcast, made["id"]).status is BroadcastStatus.ACTIVE  # type: ignore[union-attr]
        assert _counts(session, command.id) == (0, n, n)


def test_a_stop_before_the_rows_are_written_stops_every_station(
    send_unwritten: Callable[[], dict[str, Any]],
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    made = send_unwritten()
    stopped = ok(client.post(f"/api/v1/broadcasts/{made['id']}/stop", headers=admin))
    assert stopped["status"] == "stopped"
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=admin))
    n = made["progress"]["total"]
    assert len(read["stations"]) == n
    assert {s["status"] for s in read["stations"]} == {"STOPPED"}
    with session_factory() as session:
        stop = session.scalar(
            select(Command).where(Command.broadcast_id == made["id"], Command.type == "stop")
        )
        assert stop is not None
        # the stop goes to every station of the play, and every plan is cancelled
        assert _counts(session, stop.id)[1] == n
        plays = session.scalars(select(Play.status).where(Play.cmd_id == made["cmd_id"])).all()
        assert len(plays) == n
        assert set(plays) == {PlayStatus.CANCELLED}


def test_two_writers_write_the_rows_once(
    send_unwritten: Callable[[], dict[str, Any]], session_factory: sessionmaker[Session]
) -> None:
    """The second writer waits for the first (the staged row's lock on PostgreSQL, the
    write lock on SQLite) and then finds nothing staged."""
    made = send_unwritten()
    with session_factory() as session:
        command_id = _command(session, made["cmd_id"]).id
    second: list[int | BaseException] = []

    def write_too() -> None:
        try:
            with session_factory() as other:
                second.append(staged.write(other, [command_id]))
                other.commit()
        except BaseException as exc:  # reported below
            second.append(exc)

    with session_factory() as first:
        assert staged.write(first, [command_id]) == 1
        thread = threading.Thread(target=write_too)
        thread.start()  # waits on the first writer's transaction
        first.commit()
    thread.join(30)
    assert second == [0]
    with session_factory() as session:
        n = made["progress"]["total"]
        assert _counts(session, command_id) == (0, n, n)


def test_the_worker_writes_what_a_dead_request_left_staged(
    send_unwritten: Callable[[], dict[str, Any]], session_factory: sessionmaker[Session]
) -> None:
    made, made_too = send_unwritten(), send_unwritten()
    with session_factory() as session:
        assert staged.write_all(session) == 2
        session.commit()
    with session_factory() as session:
        for each in (made, made_too):
            n = each["progress"]["total"]
            assert _counts(session, _command(session, each["cmd_id"]).id) == (0, n, n)
        assert staged.write_all(session) == 0


def test_the_direct_copies_staged_in_a_transaction_are_not_read_back_in_it(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    """What a request staged is handed to the publisher without reading it back; a
    transaction that did not stage it (or once it is written) reads the rows."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    now = utcnow()

    def staged_ping(session: Session, ids: list[int], **route: Any) -> Command:
        return outbox.create(
            session,
            type="ping",
            body={},
            station_ids=ids,
            not_after=now + dt.timedelta(minutes=5),
            created_by="test",
            now=now,
            rows_after_publish=True,
            **route,
        )

    with session_factory() as session:
        ids = list(session.scalars(select(Station.id).order_by(Station.id).limit(3)))
        command = staged_ping(session, ids, route=Route.GROUPS, groups=["all"], direct_ids=ids[:1])
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert staged.fanout_of(session, command.id) == (ids[:1], 3)
            assert statements == []
            session.commit()
            # a new transaction: read (staged, not written yet)
            assert staged.fanout_of(session, command.id) == (ids[:1], 3)
            assert statements
            staged.write(session, [command.id])
            assert staged.fanout_of(session, command.id) is None  # written
            session.rollback()
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    with session_factory() as session:
        nested = session.begin_nested()
        other = staged_ping(session, ids)  # every station direct (the stations route)
        nested.rollback()  # the savepoint that staged it is gone: so are its rows
        assert staged.fanout_of(session, other.id) is None


def test_a_broadcast_is_stored_with_its_command_and_staged_row(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    """On PostgreSQL a broadcast, its command and the command's staged row are one
    statement (each statement is a round trip on an emergency's way out); on SQLite the
    unit of work inserts them.  Either way the objects hold what was inserted (nothing
    is read back) and the rows are what a flush would have stored."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    now = utcnow()
    with session_factory() as session:
        ids = list(session.scalars(select(Station.id).order_by(Station.id).limit(4)))
        broadcast = Broadcast(
            title="Bão số 3",
            tier="emergency",
            priority=3,
            content={"text": "Bão"},
            targets={"areas": ["tan-an"]},
            station_count=len(ids),
            start_at=now,
            not_after=now + dt.timedelta(minutes=5),
            status=BroadcastStatus.ACTIVE,
            created_by="test",
        )
        event.listen(engine, "before_cursor_execute", seen)
        try:
            command = outbox.create(
                session,
                type="ping",
                body={},
                station_ids=ids,
                route=Route.GROUPS,
                groups=["all"],
                direct_ids=ids[:1],
                not_after=now + dt.timedelta(minutes=5),
                created_by="test",
                broadcast=broadcast,
                now=now,
                play=staged.PlayPlan(0, "Bão số 3", "file", now, 5000),
                rows_after_publish=True,
            )
            stored = list(statements)
            kept = {
                "broadcast": {c.key: getattr(broadcast, c.key) for c in Broadcast.__mapper__.column_attrs},
                "command": {c.key: getattr(command, c.key) for c in Command.__mapper__.column_attrs},
            }  # fmt: skip
            assert staged.fanout_of(session, command.id) == (ids[:1], 4)
            assert statements == stored  # nothing read back
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        session.commit()
        assert staged.taken(session) == [command.id]
    inserts = [s for s in stored if "INSERT INTO" in s]
    if engine.dialect.name == "postgresql":
        assert len(stored) == 1
        assert all(
            f"INSERT INTO {t} " in stored[0] for t in ("broadcasts", "commands", "staged_rows")
        )
    else:
        assert [s.split()[2] for s in inserts] == ["broadcasts", "commands"]  # the row at commit
    assert kept["command"]["broadcast_id"] == kept["broadcast"]["id"] is not None
    assert kept["command"]["publish_count"] == 0
    assert kept["command"]["done"] is False
    assert kept["broadcast"]["created_at"] is not None
    with session_factory() as session:
        for model, key in ((Broadcast, "broadcast"), (Command, "command")):
            row = session.get(model, kept[key]["id"])
            assert row is not None
            assert {c.key: getattr(row, c.key) for c in model.__mapper__.column_attrs} == kept[key]
        staged_row = session.get(StagedRows, command.id)
        assert staged_row is not None
        assert (staged_row.station_ids, staged_row.direct_ids) == (ids, ids[:1])
        assert (staged_row.play_title, staged_row.play_expected_ms) == ("Bão số 3", 5000)
