"""A broadcast's request hands its committed command to the outbox publisher, which sends
it without reading the outbox again (issue 14: "the emergency publish must not wait
behind anything that is not needed to make it durable"), and never twice.

The whole service (``live``: app + worker over HTTP, a real Mosquitto whose every
message is recorded and schema-checked) with Tân An in the registry.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.db import read_session
from broadcaster.dispatch import outbox, staged, wake, worker
from broadcaster.dispatch.models import Command, Route
from broadcaster.dispatch.wake import ready_to_send
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from stations.models import Station
from tests.support.live import Live, send_broadcast
from tests.support.loa import RawPublisher, ack_payload, wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = requires_mosquitto()


def _copies(live: Live, cmd_id: str) -> Counter[str]:
    """How many copies of the command crossed the broker, per topic (its group's and,
    for a station not yet known to hold the current plan, its own)."""
    found = live.recorder.select("command", where=lambda d: d.get("cmd_id") == cmd_id)
    return Counter(r.topic for r in found)


def _published_at(live: Live, cmd_id: str) -> dt.datetime | None:
    with read_session(live.factory) as reader:
        command = outbox.find(reader, cmd_id)
        return command.published_at if command is not None else None


def _emergency(live: Live, title: str) -> dict[str, object]:
    bulletin = live.approved_tts("Cảnh báo khẩn: triều cường.")
    with live.http() as http:
        return send_broadcast(
            http,
            {
                "targets": {"areas": ["tan-an"]},
                "content": {"asset_id": bulletin},
                "tier": "emergency",
                "title": title,
            },
        )


def test_the_handed_over_command_is_sent_without_reading_the_outbox(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.seed()
    live.worker()
    # the publisher's own read of the outbox finds nothing: only the hand-over can send it
    monkeypatch.setattr(outbox, "to_publish", lambda session, now: [])
    made = _emergency(live, "Khẩn cấp giao thẳng")
    cmd_id = str(made["cmd_id"])
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == cmd_id, timeout_s=10)
    # recorded as sent, as the outbox does (after the broker took it)
    wait_until(lambda: _published_at(live, cmd_id), what="the send recorded")
    time.sleep(1.0)  # several publisher passes
    copies = _copies(live, cmd_id)
    assert copies
    assert set(copies.values()) == {1}, copies


def test_a_hand_over_of_a_command_already_sent_sends_nothing(live: Live) -> None:
    live.seed()
    worker = live.worker()
    made = _emergency(live, "Khẩn cấp một lần")
    cmd_id = str(made["cmd_id"])
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == cmd_id, timeout_s=10)
    # the outbox's read sent it first; its hand-over comes after (a request that committed
    # just before the publisher's read): it must not go out again
    wait_until(lambda: _published_at(live, cmd_id), what="the send recorded")
    with read_session(live.factory) as reader:
        command = outbox.find(reader, cmd_id)
        assert command is not None
        again = outbox.outgoing(reader, command)
    worker.wake([again])
    time.sleep(1.0)  # several publisher passes
    copies = _copies(live, cmd_id)
    assert copies
    assert set(copies.values()) == {1}, copies


def test_a_stale_hand_over_is_left_to_the_outbox_read(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-over that waited (the broker was away) may have expired or been stopped
    since: only the outbox's read, which checks, sends it."""
    live.seed()
    live.worker()
    monkeypatch.setattr(worker, "READY_FRESH_S", -1.0)  # every hand-over is stale
    monkeypatch.setattr(outbox, "to_publish", lambda session, now: [])
    made = _emergency(live, "Khẩn cấp giao muộn")
    time.sleep(1.5)  # several publisher passes
    assert not _copies(live, str(made["cmd_id"]))
    monkeypatch.undo()  # the outbox's read finds it
    live.recorder.wait_for(
        "command", where=lambda d: d.get("cmd_id") == made["cmd_id"], timeout_s=10
    )


def test_only_the_process_that_publishes_reads_the_command_for_its_publisher(live: Live) -> None:
    """An API replica (``--role api``) has no publisher: its request reads nothing more
    for one (the active worker's own read of the outbox sends the command)."""
    live.seed()
    live.worker()
    made = _emergency(live, "Khẩn cấp ở bản sao")
    replica = create_app(live.settings, role=Role.API)
    with TestClient(replica), read_session(live.factory) as reader:
        command = outbox.find(reader, str(made["cmd_id"]))
        assert command is not None
        assert ready_to_send(replica, reader, command) == []
        handed = ready_to_send(live.app, reader, command)
    assert [out.command_id for out in handed] == [command.id]


def test_the_request_writes_the_rows_once_the_publisher_is_through(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command leaves with only its station list stored; the request writes its
    per-station rows after the publisher is through with it (`Worker.wait_sent`), so
    the write neither delays the publish nor is left to the publisher."""
    # the request's wait for the publisher has a bound (half a second): on a loaded
    # test machine the publish may take longer, and the request then writes first, as
    # it should; this test checks the order, so the bound is out of its way
    monkeypatch.setattr(wake, "SENT_WAIT_S", 30.0)
    live.seed()
    publisher = live.worker()
    calls: list[tuple[str, list[int], bool]] = []
    write = staged.write

    def recorded(session: Session, command_ids: Iterable[int]) -> int:
        ids = list(command_ids)
        through = all(publisher.handed_over(i) is None for i in ids)
        calls.append((threading.current_thread().name, ids, through))
        return write(session, ids)

    monkeypatch.setattr(staged, "write", recorded)
    made = _emergency(live, "Khẩn cấp rồi mới ghi")
    with read_session(live.factory) as reader:
        command = outbox.find(reader, str(made["cmd_id"]))
        assert command is not None
        assert staged.fanout_of(reader, command.id) is None  # written: nothing staged
        progress = outbox.progress(reader, [command.id])
    total = made["progress"]["total"]  # type: ignore[index]
    assert sum(progress.values()) == total == 108  # every Tân An station, in rows
    # the request's own write (its thread is the server's thread pool's); the worker's
    # expiry job, each second, also writes what is still staged, whenever it runs
    by_request = [c for c in calls if c[0] == "AnyIO worker thread" and command.id in c[1]]
    assert by_request, calls
    assert by_request[0][2], "the request wrote the rows before the publisher was through"
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == made["cmd_id"])


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the publisher read the outbox (`outbox.to_publish`), from now on."""
    reads: list[float] = []
    to_publish = outbox.to_publish

    def counted(session: Session, now: dt.datetime) -> list[Command]:
        reads.append(time.monotonic())
        return to_publish(session, now)

    monkeypatch.setattr(outbox, "to_publish", counted)
    return reads


def _quiet(publisher: worker.Worker, reads: list[float]) -> None:
    """A read of the outbox asked for and over, and the publisher idle since."""
    publisher.wake()
    wait_until(lambda: reads, what="the publisher's read")
    wait_until(lambda: time.monotonic() - reads[-1] > 0.5, what="the publisher idle")


def test_a_hand_over_alone_is_sent_without_a_read_of_the_outbox(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass that sends an emergency handed over reads nothing more (the outbox, the
    late copies): during its fan-out the reads would take a core from the broker and the
    stations; the next poll reads."""
    monkeypatch.setattr(worker, "PUBLISH_POLL_S", 30.0)  # only wake-ups make passes
    live.seed()
    publisher = live.worker()
    reads = _count_reads(monkeypatch)
    _quiet(publisher, reads)
    before = len(reads)
    made = _emergency(live, "Khẩn cấp không đọc lại")
    cmd_id = str(made["cmd_id"])
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == cmd_id, timeout_s=10)
    wait_until(lambda: _published_at(live, cmd_id), what="the send recorded")
    time.sleep(0.5)
    assert len(reads) == before


def _ping_one_station(live: Live) -> str:
    """A ping for the first station, committed without a hand-over; its cmd_id."""
    now = dt.datetime.now(dt.UTC)
    with db.session_scope(live.factory) as session:
        station = session.scalars(select(Station).order_by(Station.id)).first()
        assert station is not None
        command = outbox.create(
            session,
            type="ping",
            body={},
            station_ids=[station.id],
            not_after=now + dt.timedelta(minutes=5),
            created_by="test",
            now=now,
        )
        return command.cmd_id


def test_a_wake_up_without_a_hand_over_reads_the_outbox(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command committed in this process without a hand-over (the wake-up alone says
    there is something) is read and sent at once, not at the next poll."""
    monkeypatch.setattr(worker, "PUBLISH_POLL_S", 30.0)
    live.seed()
    publisher = live.worker()
    reads = _count_reads(monkeypatch)
    _quiet(publisher, reads)
    before = len(reads)
    cmd_id = _ping_one_station(live)
    publisher.wake()
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == cmd_id, timeout_s=10)
    assert len(reads) > before


def test_the_quiet_moment_grows_with_the_stations_reached_up_to_its_longest() -> None:
    settings = Settings(
        fanout_quiet_s=0.05, fanout_quiet_per_station_ms=0.2, fanout_quiet_max_s=2.0
    )
    assert settings.fanout_quiet_for(0) == pytest.approx(0.05)
    assert settings.fanout_quiet_for(108) == pytest.approx(0.0716)
    assert settings.fanout_quiet_for(1000) == pytest.approx(0.25)
    assert settings.fanout_quiet_for(10_000) == pytest.approx(2.0)  # 2.05, at most 2
    assert settings.fanout_quiet_for(100_000) == pytest.approx(2.0)
    off = settings.model_copy(update={"fanout_quiet_s": 0.0})
    assert off.fanout_quiet_for(10_000) == 0.0  # 0 turns the moment off, however many
    short = settings.model_copy(update={"fanout_quiet_max_s": 0.01})
    assert short.fanout_quiet_for(10_000) == pytest.approx(0.05)  # never below its least
    flat = settings.model_copy(update={"fanout_quiet_per_station_ms": 0.0})
    assert flat.fanout_quiet_for(10_000) == pytest.approx(0.05)


def test_a_fan_out_opens_a_quiet_moment_and_a_command_for_one_station_does_not(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the broker has an emergency for the city, the service leaves the acks in the
    broker and its records of the publish for a moment (`firmware_bridge.quiet`), as long
    as its fan-out to so many stations takes (`Settings.fanout_quiet_for`), so the
    broker beside it copies the command to every station first; a ping to one station
    opens none (its round trip sets the station's clock offset)."""
    live.seed()
    publisher = live.worker()
    quiet = publisher.bridge.quiet
    lengths: list[float] = []
    open_for = quiet.open
    monkeypatch.setattr(quiet, "open", lambda seconds: (lengths.append(seconds), open_for(seconds)))
    opened = quiet.opened
    made = _emergency(live, "Khẩn cấp, phát trước")
    cmd_id = str(made["cmd_id"])
    wait_until(lambda: _published_at(live, cmd_id), what="the send recorded")
    assert quiet.opened > opened
    stations = int(str(made["station_count"]))
    assert stations == 108
    assert lengths[-1] == pytest.approx(publisher.settings.fanout_quiet_for(stations))
    assert lengths[-1] > publisher.settings.fanout_quiet_s  # grown by the 108 stations
    # the rows are written once the moment is over, as before it

    def staged_left() -> int:
        with read_session(live.factory) as reader:
            return staged.pending_of_broadcast(reader, int(str(made["id"])))

    wait_until(lambda: staged_left() == 0, what="the staged rows written")

    opened = quiet.opened
    ping = _ping_one_station(live)
    publisher.wake()
    wait_until(lambda: _published_at(live, ping), what="the ping sent")
    assert quiet.opened == opened


def test_a_command_handed_over_in_a_quiet_moment_goes_out_at_once(live: Live) -> None:
    """The moment holds the bridge's network thread, which is also what writes a publish
    and reads the broker's acknowledgement of it: a hand-over (`Worker.wake`) ends it,
    so the next emergency never waits on the last one's quiet."""
    live.seed()
    publisher = live.worker()
    publisher.bridge.quiet.open(600)  # far longer than the test
    station = RawPublisher(live.broker, client_id="st-quiet")
    try:  # a station's message comes: the network thread waits in the moment
        station.publish(publisher.bridge.topics.ack("st-quiet"), ack_payload("c-none"))
    finally:
        station.stop()
    made = _emergency(live, "Khẩn cấp trong lúc im lặng")
    cmd_id = str(made["cmd_id"])
    live.recorder.wait_for("command", where=lambda d: d.get("cmd_id") == cmd_id, timeout_s=10)
    wait_until(lambda: _published_at(live, cmd_id), what="the send recorded", timeout_s=10)


def test_the_commands_of_one_pass_all_go_out_before_the_quiet_moment(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that reads several fan-outs from the outbox (a morning's relays to every
    commune) publishes them one after the other and waits out the quiet moment once,
    before it records them: no command waits on the one before it."""
    publisher = live.worker()
    # the seed's plan change would republish desired states, and a publish ends the
    # moment this test holds open
    monkeypatch.setattr(publisher, "rebuild_desired", lambda station_ids=None: None)
    live.seed()
    quiet = publisher.bridge.quiet
    open_for = quiet.open
    lengths: list[float] = []
    # far past the test
    monkeypatch.setattr(quiet, "open", lambda seconds: (lengths.append(seconds), open_for(600)))
    opened = quiet.opened
    now = dt.datetime.now(dt.UTC)
    with db.session_scope(live.factory) as session:
        ids = list(session.scalars(select(Station.id)))
        cmd_ids = [
            outbox.create(
                session,
                type="ping",
                body={},
                station_ids=ids,
                route=Route.GROUPS,
                groups=["all"],
                not_after=now + dt.timedelta(minutes=5),
                created_by="test",
                now=now,
            ).cmd_id
            for _ in range(3)
        ]
    # no wake-up (it would end the moment): the publisher's poll reads them, in one pass
    for cmd_id in cmd_ids:
        live.recorder.wait_for("command", where=lambda d, c=cmd_id: d.get("cmd_id") == c)
    # the last one's moment (opened once the broker acknowledged it): the records wait
    wait_until(lambda: quiet.opened == opened + 3, what="a moment after each publish")
    assert quiet.remaining() > 0
    assert not any(_published_at(live, c) for c in cmd_ids)
    # each as long as a fan-out to every station takes (their rows written, not staged)
    assert lengths == [publisher.settings.fanout_quiet_for(len(ids))] * 3
    quiet.end()
    for cmd_id in cmd_ids:
        wait_until(lambda c=cmd_id: _published_at(live, c), what="the send recorded")
