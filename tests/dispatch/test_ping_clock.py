"""A ping measures the station's clock against the midpoint of our send and receive
times, whichever of the station's answer and our record of the publish is stored first
(a fast station answers before the publisher has written down that it sent)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox, reports
from broadcaster.dispatch.models import CommandTarget
from stations.models import Station

SENT = dt.datetime(2026, 12, 2, 8, 0, 0, tzinfo=dt.UTC)
BACK = SENT + dt.timedelta(milliseconds=400)
#: the station's clock runs 1.5 s fast: at our midpoint (SENT + 200 ms) it reads this
STATION_TIME = SENT + dt.timedelta(milliseconds=200 + 1500)


def _ping(session: Session) -> tuple[str, int]:
    station_id = session.scalars(select(Station.id).order_by(Station.sid)).first()
    assert station_id is not None
    command = outbox.create(
        session,
        type="ping",
        body={},
        station_ids=[station_id],
        not_after=SENT + dt.timedelta(seconds=30),
        created_by="kt",
        now=SENT - dt.timedelta(milliseconds=50),
    )
    return command.cmd_id, station_id


def _answer(session: Session, cmd_id: str, station_id: int) -> str:
    return outbox.apply_ack(
        session,
        station_id=station_id,
        cmd_id=cmd_id,
        status="SUCCEEDED",
        at=STATION_TIME,
        received_at=BACK,
        reason=None,
        station_time=STATION_TIME,
    )


def _offset(session: Session, cmd_id: str) -> float | None:
    command = outbox.find(session, cmd_id)
    assert command is not None
    return session.scalar(
        select(CommandTarget.clock_offset_ms).where(CommandTarget.command_id == command.id)
    )


@pytest.mark.usefixtures("tan_an")
@pytest.mark.parametrize("answer_first", [False, True], ids=["sent-first", "answer-first"])
def test_the_clock_offset_whichever_is_stored_first(
    session_factory: sessionmaker[Session], answer_first: bool
) -> None:
    with session_factory() as session:
        cmd_id, station_id = _ping(session)
        session.commit()
        command = outbox.find(session, cmd_id)
        assert command is not None
        if answer_first:
            assert _answer(session, cmd_id, station_id) == "ok"
            assert _offset(session, cmd_id) is None  # the send time is not known yet
            outbox.mark_published(session, command, SENT)
        else:
            outbox.mark_published(session, command, SENT)
            assert _answer(session, cmd_id, station_id) == "ok"
        session.commit()
        offset = _offset(session, cmd_id)
    assert offset == pytest.approx(1500.0)


@pytest.mark.usefixtures("tan_an")
def test_the_clock_offset_when_neither_transaction_saw_the_other(
    session_factory: sessionmaker[Session],
) -> None:
    """On PostgreSQL the answer and the record of the send can be stored by two
    transactions at once, each without the other's time: none is stored, and the
    command's reading works it out."""
    with session_factory() as session:
        cmd_id, station_id = _ping(session)
        session.commit()
        assert _answer(session, cmd_id, station_id) == "ok"  # the send not recorded yet
        command = outbox.find(session, cmd_id)
        assert command is not None
        command.published_at = SENT  # recorded by a transaction that missed the answer
        session.commit()
        assert _offset(session, cmd_id) is None
        target = reports.command_target(session, command)
        read = reports.command_read(command, target)
    assert read.clock_offset_ms == pytest.approx(1500.0)
