"""The monthly report: airtime minutes by ward/commune or station, tier and category, as
JSON, CSV (Vietnamese Excel) and XLSX, and the ``/bao-cao`` page, checked against the
play log."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.dispatch.models import Play, PlayStatus
from kernel.security import Role
from stations.models import Station
from tests.api import make_user
from tests.broadcaster.test_web_pages import login

pytestmark = pytest.mark.usefixtures("tan_an")

VN = ZoneInfo("Asia/Ho_Chi_Minh")
#: (station, priority, played ms, local day in November 2026)
PLAYS = (
    ("lbn-cau-tre", 3, 120_000, 15),
    ("lbn-cau-tre", 9, 30_000, 30),
    ("lbn-cau-tre", 3, 60_000, 31),  # 1 December: outside the month
    ("p2-kp-1", 3, 600_000, 15),  # Phường 2: outside the operator's commune
)


def _seed(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for n, (sid, priority, played_ms, day) in enumerate(PLAYS):
            local = dt.datetime(2026, 11, 1, 12, tzinfo=VN) + dt.timedelta(days=day - 1)
            start = local.astimezone(dt.UTC)
            planned = {"planned_start": start, "planned_end": start + dt.timedelta(minutes=10)}
            proof = {"status": PlayStatus.PLAYED, "played_ms": played_ms, "updated_at": start}
            play = Play(station_id=ids[sid], source="schedule", kind="file", **planned, **proof)
            play.item_id, play.title = f"report-{n}", f"Bản tin {n}"
            play.priority, play.expected_ms = priority, played_ms
            session.add(play)


def test_report_api_page_and_exports_match_the_play_log(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _seed(session_factory)
    make_user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    # plain dates (``to`` inclusive) and timestamps give the same rows
    plain = client.get("/api/v1/reports/minutes?from=2026-11-01&to=2026-11-30")
    assert plain.status_code == 200, plain.text
    stamped = client.get(
        "/api/v1/reports/minutes",
        params={"from": "2026-11-01T00:00:00+07:00", "to": "2026-12-01T00:00:00+07:00"},
    )
    assert stamped.json() == plain.json()
    rows = {(r["name"], r["tier_name"]): r for r in plain.json()}
    assert set(rows) == {("Xã Lợi Bình Nhơn", "Thông thường"), ("Xã Lợi Bình Nhơn", "Khẩn cấp")}
    assert rows["Xã Lợi Bình Nhơn", "Thông thường"]["minutes"] == 2.0
    assert rows["Xã Lợi Bình Nhơn", "Khẩn cấp"]["minutes"] == 0.5
    assert rows["Xã Lợi Bình Nhơn", "Khẩn cấp"]["category_name"] == "Chưa phân loại"
    bad = client.get("/api/v1/reports/minutes?from=hom-qua")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["message_vi"]

    page = client.get("/bao-cao?thang=2026-11")
    assert page.status_code == 200
    assert "Xã Lợi Bình Nhơn" in page.text
    assert "Phường 2" not in page.text.split('id="f-area"')[1].split("</select>")[1]
    assert '<span id="total-minutes">2,5</span>' in page.text  # the decimal comma
    assert "report-chart" in page.text
    link = re.search(r'href="([^"]+)" id="export-xlsx"', page.text)
    assert link is not None
    xlsx = client.get(link.group(1).replace("&amp;", "&"))
    assert xlsx.status_code == 200, xlsx.text
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    table = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert table[0] == [
        "Mã phường/xã",
        "Phường/xã",
        "Cấp ưu tiên",
        "Thể loại",
        "Số phút phát",
        "Số lượt phát",
    ]
    # what the play log says: the operator's plays in November, minutes = played ms
    expected = {
        ("Khẩn cấp", 0.5, 1),
        ("Thông thường", 2.0, 1),
    }
    assert {(r[2], r[4], r[5]) for r in table[1:-1]} == expected
    assert table[-1][0] == "Tổng"
    assert table[-1][4] == 2.5
    assert table[-1][5] == 2

    link = re.search(r'href="([^"]+)" id="export-csv"', page.text)
    assert link is not None
    exported = client.get(link.group(1).replace("&amp;", "&"))
    assert exported.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    lines = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";"))
    assert lines[0][1] == "Phường/xã"
    assert {line[4] for line in lines[1:]} == {"2,00", "0,50"}  # the decimal comma

    by_station = client.get("/bao-cao?thang=2026-11&theo=station")
    assert "lbn-cau-tre" in by_station.text
    assert "p2-kp-1" not in by_station.text
