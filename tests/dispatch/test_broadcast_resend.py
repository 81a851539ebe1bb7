""" "Send again to those who missed it" and the broadcast report, in process (no broker):
the acknowledgements are applied as the ingest applies them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import outbox
from broadcaster.dispatch.models import Command, CommandTarget
from kernel.db import utcnow
from kernel.security import Role
from tests.api import make_user, ok
from tests.broadcaster.test_web_pages import login

pytestmark = pytest.mark.usefixtures("tan_an")

TARGETS = ["lbn-cau-tre", "lbn-ngai-loi-a", "lbn-ngai-loi-b"]


def _targets(session: Session, cmd_id: str) -> dict[int, CommandTarget]:
    command = session.scalar(select(Command).where(Command.cmd_id == cmd_id))
    assert command is not None
    rows = session.scalars(select(CommandTarget).where(CommandTarget.command_id == command.id))
    return {t.station_id: t for t in rows}


def _ack(session: Session, station_id: int, cmd_id: str, *statuses: str) -> None:
    now = utcnow()
    ack = partial(outbox.apply_ack, at=now, received_at=now, reason=None, station_time=None)
    for status in statuses:
        ack(session, station_id=station_id, cmd_id=cmd_id, status=status)


def _send(client: TestClient, headers: dict[str, str], bulletin: int) -> dict[str, Any]:
    return ok(
        client.post(
            "/api/v1/broadcasts",
            json={
                "targets": {"stations": TARGETS},
                "content": {"asset_id": bulletin},
                "tier": "emergency",
                "title": "Cảnh báo triều cường",
            },
            headers=headers,
        ),
        201,
    )


def test_send_again_goes_to_the_missed_stations_and_the_report_follows(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session], bulletin: int
) -> None:
    made = _send(client, admin, bulletin)
    broadcast_id, first = made["id"], str(made["cmd_id"])
    assert made["progress"]["total"] == 3
    with session_factory() as session:
        ids = sorted(_targets(session, first))
        played, failed, gone = ids
        _ack(session, played, first, "RECEIVED", "IN_PROGRESS", "SUCCEEDED")
        _ack(session, failed, first, "RECEIVED", "FAILED")
        # past the window: the third was never reached
        outbox.expire_due(session, utcnow() + dt.timedelta(hours=2))
        session.commit()
    read = ok(client.get(f"/api/v1/broadcasts/{broadcast_id}", headers=admin))
    assert read["status"] == "finished"
    assert read["progress"]["by_status"]["EXPIRED"] == 1
    assert read["progress"]["by_status"]["FAILED"] == 1

    # the report: who, approved by (the emergency permission), per station, the missed
    report = ok(client.get(f"/api/v1/broadcasts/{broadcast_id}/report", headers=admin))
    assert report["sent_by"] == "admin"
    assert report["approved_by"] == "admin"
    assert report["total"] == 3
    assert report["played"] == 0  # acknowledged, but no play event reported yet
    assert len(report["missed"]) == 2
    by_sid = {s["sid"]: s for s in report["stations"]}
    missed = [by_sid[s] for s in report["missed"]]
    assert {m["status"] for m in missed} == {"FAILED", "EXPIRED"}
    expired = next(m for m in missed if m["status"] == "EXPIRED")
    assert expired["reason"] == "not received before not_after"
    assert expired["received_at"] is None
    assert all(s["attempts"] == 1 for s in report["stations"])

    # send again: only the two that missed it, a new command of the same broadcast
    operator = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    refused = client.post(f"/api/v1/broadcasts/{broadcast_id}/resend", headers=operator)
    assert refused.status_code == 403, refused.text  # an emergency needs that permission
    again = ok(client.post(f"/api/v1/broadcasts/{broadcast_id}/resend", headers=admin))
    assert again["status"] == "active"
    [second] = again["resends"]
    assert again["cmd_id"] == first
    assert again["progress"]["total"] == 3  # still three stations, each by its latest copy
    assert again["progress"]["succeeded"] == 1
    assert again["progress"]["by_status"]["PENDING"] == 2
    with session_factory() as session:
        copies = _targets(session, second)
        assert sorted(copies) == [failed, gone]
        command = session.scalar(select(Command).where(Command.cmd_id == second))
        assert command is not None
        assert command.broadcast_id == broadcast_id
        assert command.body["volume"] == 100
        assert command.body["priority"] == 9
        # the original is done; the broadcast stays active while the copy is open
        outbox.expire_due(session, utcnow())
        session.commit()
    assert ok(client.get(f"/api/v1/broadcasts/{broadcast_id}", headers=admin))["status"] == (
        "active"
    )
    with session_factory() as session:
        outbox.mark_published(
            session,
            session.scalars(select(Command).where(Command.cmd_id == second)).one(),
            utcnow(),
        )
        _ack(session, failed, second, "RECEIVED", "IN_PROGRESS", "SUCCEEDED")
        _ack(session, gone, second, "RECEIVED", "IN_PROGRESS", "SUCCEEDED")
        # settled early: the copy ends, and so does the broadcast; the worker commits
        # only when the pass changed something, so ending a command counts as a change
        assert outbox.expire_due(session, utcnow()) >= 1
        session.commit()
    read = ok(client.get(f"/api/v1/broadcasts/{broadcast_id}", headers=admin))
    assert read["status"] == "finished"
    assert read["progress"]["succeeded"] == read["progress"]["total"] == 3
    assert {s["status"] for s in read["stations"]} == {"SUCCEEDED"}
    report = ok(client.get(f"/api/v1/broadcasts/{broadcast_id}/report", headers=admin))
    assert report["resends"] == 1
    assert report["missed"] == []
    attempts = {s["sid"]: s["attempts"] for s in report["stations"]}
    assert sorted(attempts.values()) == [1, 2, 2]
    # nobody left to reach
    nothing = client.post(f"/api/v1/broadcasts/{broadcast_id}/resend", headers=admin)
    assert nothing.status_code == 409
    assert nothing.json()["message_vi"] == "Không có trạm nào bị lỡ lượt phát này"


def test_the_report_exports_with_vietnamese_headers_and_the_page_shows_it(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session], bulletin: int
) -> None:
    made = _send(client, admin, bulletin)
    broadcast_id, first = made["id"], str(made["cmd_id"])
    with session_factory() as session:
        ids = sorted(_targets(session, first))
        _ack(session, ids[0], first, "RECEIVED", "IN_PROGRESS", "SUCCEEDED")
        outbox.expire_due(session, utcnow() + dt.timedelta(hours=2))
        session.commit()
    response = client.get(
        f"/api/v1/broadcasts/{broadcast_id}/report", params={"format": "csv"}, headers=admin
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][:5] == ["Mã trạm", "Tên trạm", "Ấp/khu phố", "Trạng thái lệnh", "Kết quả phát"]
    assert "Lý do" in rows[0]
    assert len(rows) == 4
    lines = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    missed = [line for line in lines.values() if line["Lỡ phát"] == "Có"]
    assert len(missed) == 2
    assert {m["Trạng thái lệnh"] for m in missed} == {"Hết hạn, không đến được"}
    assert {m["Lý do"] for m in missed} == {"trạm không nhận lệnh trước khi hết hạn"}

    xlsx = client.get(
        f"/api/v1/broadcasts/{broadcast_id}/report", params={"format": "xlsx"}, headers=admin
    )
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][0] == f"Báo cáo lượt phát số {broadcast_id}: Cảnh báo triều cường"
    lead = {row[0]: row[1] for row in values[1:16] if row[0]}
    assert lead["Người gửi"] == "admin"
    assert lead["Người duyệt"] == "admin"
    assert lead["Cấp độ"] == "Khẩn cấp"
    assert lead["Lỡ phát"] == 2
    assert lead["Đối tượng phát"] == "trạm: " + ", ".join(TARGETS)
    header = next(i for i, row in enumerate(values) if row[0] == "Mã trạm")
    assert len(values) - header - 1 == 3

    login(client, "admin")
    page = client.get(f"/phat-thanh/{broadcast_id}")
    assert page.status_code == 200
    assert "Báo cáo lượt phát khẩn cấp" in page.text
    assert "Trạm bị lỡ (2)" in page.text
    assert 'id="resend-broadcast"' in page.text
    assert 'id="resend-broadcast" hidden' not in page.text
    assert "trạm không nhận lệnh trước khi hết hạn" in page.text
    assert f"/api/v1/broadcasts/{broadcast_id}/report?format=xlsx" in page.text
