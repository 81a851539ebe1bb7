"""How a broadcast settles: stopped is not failed, it ends when every target is settled,
and the API and the page say the same (in process, no broker)."""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import partial

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox
from broadcaster.dispatch.models import Command, CommandTarget
from broadcaster.web.pages.labels import reason_label as labels_reason_label
from kernel.db import utcnow
from kernel.security import Role
from tests.api import make_user, ok
from tests.broadcaster.test_web_pages import login

pytestmark = pytest.mark.usefixtures("tan_an")


def _send(client: TestClient, headers: dict[str, str], bulletin: int) -> dict[str, object]:
    return ok(
        client.post(
            "/api/v1/broadcasts",
            json={"targets": {"groups": ["xa-loi-binh-nhon"]}, "content": {"asset_id": bulletin}},
            headers=headers,
        ),
        201,
    )


def test_a_stopped_broadcast_shows_stopped_never_failed(
    client: TestClient, session_factory: sessionmaker[Session], bulletin: int
) -> None:
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    made = _send(client, operator, bulletin)
    stopped = ok(client.post(f"/api/v1/broadcasts/{made['id']}/stop", headers=operator))
    assert stopped["status"] == "stopped"
    # the worker's expiry pass long after: stopped targets stay stopped
    with session_factory() as session:
        outbox.expire_due(session, utcnow() + dt.timedelta(days=1))
        session.commit()
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=operator))
    assert read["status"] == "stopped"
    assert read["stations"]
    assert {s["status"] for s in read["stations"]} == {"STOPPED"}
    assert all(s["reason"] == "stopped by op-lbn" for s in read["stations"])
    progress = read["progress"]
    assert progress["by_status"]["FAILED"] == 0
    assert progress["by_status"]["STOPPED"] == progress["total"] == progress["finished"]
    assert progress["succeeded"] == 0  # the bar counts only successes
    assert progress["received"] == 0
    login(client, "op-lbn")
    page = client.get(f"/phat-thanh/{made['id']}")
    assert page.status_code == 200
    assert "Đã dừng" in page.text  # the broadcast's status, as the API says
    labels = re.search(r'<script type="application/json" id="labels">(.*?)</script>', page.text)
    assert labels is not None
    assert json.loads(labels.group(1))["target"]["STOPPED"] == "Đã dừng (theo lệnh)"
    assert 'id="count-STOPPED"' in page.text
    assert "Đã phát xong" not in page.text
    # the reason is said in Vietnamese wherever a person reads it (the API keeps it)
    assert labels_reason_label("stopped by op-lbn") == "dừng bởi op-lbn"
    assert json.loads(labels.group(1))["reason_prefix"]["stopped by "] == "dừng bởi "
    assert labels_reason_label("busy: b-1 at priority 9").startswith("trạm đang phát")
    assert labels_reason_label("a station's own words") == "a station's own words"


def test_a_broadcast_ends_when_every_target_is_settled(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session], bulletin: int
) -> None:
    made = _send(client, admin, bulletin)
    now = utcnow()
    ack = partial(outbox.apply_ack, at=now, received_at=now, reason=None, station_time=None)
    with session_factory() as session:
        command = session.scalar(select(Command).where(Command.cmd_id == made["cmd_id"]))
        assert command is not None
        targets = list(
            session.scalars(select(CommandTarget).where(CommandTarget.command_id == command.id))
        )
        for target in targets[1:]:
            for status in ("RECEIVED", "IN_PROGRESS", "SUCCEEDED"):
                ack(session, station_id=target.station_id, cmd_id=command.cmd_id, status=status)
        outbox.expire_due(session, now)
        session.commit()
    # one station still open: the broadcast is still active, and the page agrees
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=admin))
    assert read["status"] == "active"
    assert read["progress"]["succeeded"] == read["progress"]["total"] - 1
    with session_factory() as session:
        sid = targets[0].station_id
        ack(session, station_id=sid, cmd_id=str(made["cmd_id"]), status="FAILED", reason="amp")
        outbox.expire_due(session, now)  # before not_after: settled, so it ends
        session.commit()
    read = ok(client.get(f"/api/v1/broadcasts/{made['id']}", headers=admin))
    assert read["status"] == "finished"
    assert read["progress"]["finished"] == read["progress"]["total"]
    assert read["progress"]["succeeded"] == read["progress"]["total"] - 1


def test_a_station_back_online_gets_a_valid_broadcast_again_with_a_fresh_start(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session], bulletin: int
) -> None:
    made = _send(client, admin, bulletin)
    with session_factory() as session:
        command = session.scalar(select(Command).where(Command.cmd_id == made["cmd_id"]))
        assert command is not None
        outbox.mark_published(session, command, command.issued_at)
        first, second, *_ = session.scalars(
            select(CommandTarget.station_id).where(CommandTarget.command_id == command.id)
        )
        later = command.issued_at + dt.timedelta(seconds=20)
        # past the window: nothing to send
        gone = command.not_after + dt.timedelta(seconds=5)
        assert outbox.redeliver_on_births(session, {first: gone}) == set()
        # a batch of births: each judged at its own time (the one past the window takes
        # nothing); a station that is no target has nothing to take
        born = {first: later, second: gone, 10_000_000: later}
        assert outbox.redeliver_on_births(session, born) == {first}
        [(late, sids)] = outbox.late_deliveries(session, later)
        assert late.id == command.id
        assert len(sids) == 1
        body = outbox.late_body(command, later)
        lead = dt.datetime.fromisoformat(command.body["start_at"]) - command.issued_at
        assert dt.datetime.fromisoformat(body["start_at"]) == later + lead
        assert body["media"] == command.body["media"]
        session.rollback()
