"""Ingest under hostile input and bad luck (issue 15, defects 2 and 3).

The Ingestor against the real database (SQLite and PostgreSQL), and, for the busy
database, with the real bridge and a real Mosquitto while another process holds
SQLite's write lock for longer than its busy timeout.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.dispatch import playlog
from broadcaster.dispatch.ingest import Ingestor
from broadcaster.dispatch.models import DeadLetter, StationEvent
from firmware_bridge.client import Bridge, BridgeConfig, Inbound
from firmware_bridge.errors import RetryLater
from firmware_bridge.messages import Event, dump_message, parse_message
from firmware_bridge.topics import TopicKind, Topics
from stations import tan_an
from stations.models import TelemetrySample
from tests.conftest import IS_POSTGRES
from tests.support.loa import RawPublisher, wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.process import ChildProcess, python_argv

TOPICS = Topics()
GOOD, EVIL = "p2-kp-1", "p1-kp-1"


@pytest.fixture
def stations(session_factory: sessionmaker[Session]) -> list[str]:
    with db.session_scope(session_factory) as session:
        tan_an.load(session)
    return [GOOD, EVIL]


def inbound(sid: str, kind: TopicKind, payload: bytes) -> Inbound:
    message = parse_message(kind.message_kind, payload)
    return Inbound(
        sid=sid,
        kind=kind,
        message=message,  # type: ignore[arg-type]
        topic=f"loa/v1/st/{sid}/{kind.value}",
        received_at=dt.datetime.now(dt.UTC),
    )


def fault_event(i: int) -> bytes:
    return dump_message(
        Event(
            event_id=f"e-{i}",
            type="fault.raised" if i % 2 == 0 else "fault.cleared",
            at=dt.datetime.now(dt.UTC),
            fault="storage_low",
        )
    )


def telemetry(seq: int, at: str = "2026-11-26T05:00:00+07:00") -> bytes:
    return (
        f'{{"seq": {seq}, "at": "{at}", "uptime_s": 5, "volume": 70, "playing": null}}'
    ).encode()


def count(factory: sessionmaker[Session], model: type, **where: object) -> int:
    with db.read_session(factory) as session:  # a reader: never waits for the lock
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def test_values_no_column_holds_never_roll_back_another_stations_events(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    """Defect 2: telemetry with ``seq`` >= 2^63 or a timestamp of year 10000 (in UTC)
    made the batched insert fail and the whole batch roll back, including another
    station's proof of play the broker already considered delivered."""
    ingest = Ingestor(session_factory)
    batch = [inbound(GOOD, TopicKind.EVENT, fault_event(i)) for i in range(300)]
    batch.insert(100, inbound(EVIL, TopicKind.TELEMETRY, telemetry(2**63)))
    batch.insert(200, inbound(EVIL, TopicKind.TELEMETRY, telemetry(1, "9999-12-31T23:59:59-01:00")))
    evil_event = (
        b'{"event_id": "e-evil", "type": "fault.raised", "fault": "other",'
        b' "at": "2026-11-26T05:00:00Z", "desired_version": 99999999999}'
    )
    batch.insert(250, inbound(EVIL, TopicKind.EVENT, evil_event))
    batch.append(inbound(EVIL, TopicKind.TELEMETRY, telemetry(7)))  # a good one from EVIL
    ingest(batch)
    with session_factory() as session:
        good_id = tan_an_id(session, GOOD)
    assert count(session_factory, StationEvent, station_id=good_id) == 300
    assert count(session_factory, TelemetrySample) == 1
    with session_factory() as session:
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
    assert [(d.sid, d.kind, d.category) for d in letters] == [(EVIL, "telemetry", "range")] * 2 + [
        (EVIL, "event", "range")
    ]
    assert "out of range" in letters[0].reason
    assert "outside" in letters[1].reason or "out of range" in letters[1].reason
    assert "desired_version" in letters[2].reason
    assert ingest.stats()["dead_letters"] == 3


def tan_an_id(session: Session, sid: str) -> int:
    from stations.models import Station

    station_id = session.scalar(select(Station.id).where(Station.sid == sid))
    assert station_id is not None
    return station_id


def test_a_message_that_fails_to_store_is_quarantined_alone(
    session_factory: sessionmaker[Session], stations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = playlog.store_event

    def flaky(session: Session, event: playlog.EventIn) -> bool:
        if event.event_id == "e-13":
            raise ValueError("simulated storage bug")
        return store(session, event)

    monkeypatch.setattr(playlog, "store_event", flaky)
    ingest = Ingestor(session_factory)
    ingest([inbound(GOOD, TopicKind.EVENT, fault_event(i)) for i in range(20)])
    assert count(session_factory, StationEvent) == 19
    assert count(session_factory, DeadLetter, category="store") == 1


def test_dead_letters_are_throttled_per_station(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    from broadcaster.dispatch.deadletters import Throttle

    ingest = Ingestor(session_factory, throttle=Throttle(per_minute=5))
    ingest([inbound(EVIL, TopicKind.TELEMETRY, telemetry(2**63 + i)) for i in range(12)])
    assert count(session_factory, DeadLetter) == 5
    assert ingest.stats()["dead_letters_suppressed"] == 7


HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
    connection.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()  # held until the test says so (or 120 s: the test's timeout)
    connection.execute("ROLLBACK")
    """
)


@requires_mosquitto()
@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's write lock (PostgreSQL waits on row locks)")
@pytest.mark.slow
def test_a_database_locked_for_longer_than_its_busy_timeout_loses_no_event(
    session_factory: sessionmaker[Session],
    stations: list[str],
    settings: object,
    tmp_path: Path,
) -> None:
    """Defect 3: with SQLite held by another process for 40 s an event was dropped
    ("could not store event ... database is locked").  Now the batch is retried with
    backoff, unacknowledged meanwhile, and every event is stored once the lock goes
    (held here until the test has seen the retries: past the 30 s busy timeout)."""
    database = str(session_factory.kw["bind"].url.database)
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    ingest = Ingestor(session_factory)
    bridge = Bridge(
        BridgeConfig(url=broker.url, retry_max_s=2.0), ingest, on_rejected=ingest.rejected
    )
    raw = None
    holder = ChildProcess(
        python_argv("-c", HOLD_LOCK, database), log_path=tmp_path / "holder.log", stdin=True
    ).start()
    try:
        bridge.start()
        wait_until(lambda: bridge.connected, what="bridge connected")
        holder.wait_for_output("locked")
        raw = RawPublisher(broker, client_id="station")
        for i in range(40):
            raw.publish(TOPICS.event(GOOD), fault_event(i), qos=1)
        # the first attempt waits out SQLite's 30 s busy timeout, then it is retried
        wait_until(lambda: bridge.stats().retries >= 2, timeout_s=120, what="retries")
        assert count(session_factory, StationEvent) == 0  # still locked
        assert bridge.stats().acked == 0  # nothing acknowledged that is not stored
        holder.tell("release")
        holder.wait(60)
        wait_until(
            lambda: count(session_factory, StationEvent) == 40, timeout_s=60, what="all stored"
        )
        wait_until(lambda: bridge.stats().acked >= 40, what="acknowledged once stored")
        assert ingest.stats().get("errors", 0) == 0
    finally:
        holder.kill()
        if raw is not None:
            raw.stop()
        bridge.stop()
        broker.stop()


def test_retry_later_is_raised_for_a_busy_database(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    """The handler turns a database that does not answer into RetryLater (never a
    dropped batch)."""
    from sqlalchemy.exc import OperationalError

    class Broken:
        kw = session_factory.kw

        def __call__(self) -> Session:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    ingest = Ingestor(Broken())  # type: ignore[arg-type]
    with pytest.raises(RetryLater):
        ingest([inbound(GOOD, TopicKind.EVENT, fault_event(1))])


def test_text_no_column_holds_is_quarantined_not_stored(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    """A NUL in a station's text (PostgreSQL refuses it in any string) is quarantined by
    validation, on both databases alike, and never reaches an insert."""
    ingest = Ingestor(session_factory)
    evil_event = (
        b'{"event_id": "e-nul", "type": "fault.raised", "reason": "a\\u0000b",'
        b' "fault": "other", "at": "2026-11-26T05:00:00Z"}'
    )
    ingest(
        [inbound(EVIL, TopicKind.EVENT, evil_event), inbound(GOOD, TopicKind.EVENT, fault_event(1))]
    )
    assert count(session_factory, StationEvent) == 1
    with session_factory() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert (letter.sid, letter.kind, letter.category) == (EVIL, "event", "range")
    assert "U+0000" in letter.reason


def test_a_burst_reads_a_stations_state_once_per_batch(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    """A burst of proof of play from one station selected the station's state row again
    for every event (the session's identity map holds clean objects weakly, and each
    event's savepoint left it clean): 1 ms of CPU per event, the API starved meanwhile."""
    from sqlalchemy import event as sa_event

    statements: list[str] = []
    engine = session_factory.kw["bind"]

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    Ingestor(session_factory)([inbound(GOOD, TopicKind.EVENT, fault_event(0))])  # warm
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        Ingestor(session_factory)(
            [inbound(GOOD, TopicKind.EVENT, fault_event(i)) for i in range(1, 201)]
        )
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    state_reads = [
        s
        for s in statements
        if s.lstrip().upper().startswith("SELECT") and "FROM station_states" in s
    ]
    assert len(state_reads) <= 1, len(state_reads)
    assert count(session_factory, StationEvent) == 201


def test_what_a_batch_stored_is_counted_once_it_has_committed(
    session_factory: sessionmaker[Session], stations: list[str]
) -> None:
    """The ingest's counts (``/dispatch/status``) follow the commit: a reader who sees a
    message counted sees it stored (CI once read a death's count and then the station
    still online), and a batch rolled back and offered again is counted once."""
    from sqlalchemy.exc import OperationalError

    first = [True]
    seen_in_transaction: list[dict[str, int]] = []

    class FailsFirstCommit:
        kw = session_factory.kw

        def __call__(self) -> Session:
            session = session_factory()
            if first[0]:
                first[0] = False

                def commit() -> None:
                    raise OperationalError("COMMIT", {}, Exception("database is locked"))

                session.commit = commit  # type: ignore[method-assign]
            return session

    ingest = Ingestor(
        FailsFirstCommit(),  # type: ignore[arg-type]
        after_batch=lambda session, touched: seen_in_transaction.append(ingest.stats()),
    )
    batch = [inbound(GOOD, TopicKind.EVENT, fault_event(i)) for i in range(3)]
    with pytest.raises(RetryLater):
        ingest(batch)
    assert ingest.stats() == {}
    assert count(session_factory, StationEvent) == 0

    ingest(batch)  # the bridge offers it again
    assert count(session_factory, StationEvent) == 3
    assert seen_in_transaction == [{}, {}]  # nothing counted before a commit
    stats = ingest.stats()
    assert sum(stats.values()) == 3, stats
    assert stats.get("errors", 0) == 0
