"""The monthly report: airtime minutes by ward/commune or station, tier and category, as
JSON, CSV (Vietnamese Excel) and XLSX, and the ``/bao-cao`` page, checked against the
play log; minutes not heard (a speaker or amplifier fault) apart; read by the old units
or the new ones after a reorganisation."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.dispatch import reports
from broadcaster.dispatch.models import Play, PlayStatus
from broadcaster.reorg import tan_an as tan_an_2025
from kernel.security import Role
from stations.models import Area, Station
from tests.api import make_user
from tests.broadcaster.test_reorg import apply_plan
from tests.broadcaster.test_web_pages import login

pytestmark = pytest.mark.usefixtures("tan_an")

VN = ZoneInfo("Asia/Ho_Chi_Minh")
#: (station, priority, played ms, local day in November 2026, status)
PLAYS = (
    ("lbn-cau-tre", 3, 120_000, 15, PlayStatus.PLAYED),
    ("lbn-cau-tre", 9, 30_000, 30, PlayStatus.PLAYED),
    ("lbn-cau-tre", 3, 60_000, 31, PlayStatus.PLAYED),  # 1 December: outside the month
    ("p2-kp-1", 3, 600_000, 15, PlayStatus.PLAYED),  # Phường 2: outside the commune
    # played during a speaker-line fault: not airtime, its 1.5 minutes shown apart
    ("lbn-cau-tre", 3, 90_000, 16, PlayStatus.NOT_HEARD),
)


def _seed(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for n, (sid, priority, played_ms, day, status) in enumerate(PLAYS):
            local = dt.datetime(2026, 11, 1, 12, tzinfo=VN) + dt.timedelta(days=day - 1)
            start = local.astimezone(dt.UTC)
            planned = {"planned_start": start, "planned_end": start + dt.timedelta(minutes=10)}
            proof = {"status": status, "played_ms": played_ms, "updated_at": start}
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
    # airtime counts what was heard; the not-heard play's minutes are apart
    assert rows["Xã Lợi Bình Nhơn", "Thông thường"]["minutes"] == 2.0
    assert rows["Xã Lợi Bình Nhơn", "Thông thường"]["not_heard_minutes"] == 1.5
    assert rows["Xã Lợi Bình Nhơn", "Thông thường"]["plays"] == 2
    assert rows["Xã Lợi Bình Nhơn", "Khẩn cấp"]["minutes"] == 0.5
    assert rows["Xã Lợi Bình Nhơn", "Khẩn cấp"]["not_heard_minutes"] == 0
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
    assert '<span id="total-not-heard">1,5</span> phút không nghe được' in page.text
    assert "không được tính vào số phút phát" in page.text  # what a total means
    assert "Phút không nghe được" in page.text.split('id="report-units"')[1]
    chart = json.loads(page.text.split('id="report-data">')[1].split("</script>")[0])
    assert chart["datasets"][-1]["label"] == "Phút không nghe được"
    assert chart["datasets"][-1]["data"] == [1.5]
    assert "report-chart" in page.text
    # the month is chosen in Vietnamese, not by the browser's own (English) month input
    assert '<option value="2026-11" selected>Tháng 11/2026</option>' in page.text
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
        "Phút không nghe được",
    ]
    # what the play log says: the operator's plays in November, minutes = played ms
    expected = {
        ("Khẩn cấp", 0.5, 1, 0),
        ("Thông thường", 2.0, 2, 1.5),
    }
    assert {(r[2], r[4], r[5], r[6]) for r in table[1:-1]} == expected
    assert table[-1][0] == "Tổng"
    assert table[-1][4] == 2.5
    assert table[-1][5] == 3
    assert table[-1][6] == 1.5

    link = re.search(r'href="([^"]+)" id="export-csv"', page.text)
    assert link is not None
    exported = client.get(link.group(1).replace("&amp;", "&"))
    assert exported.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    lines = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";"))
    assert lines[0][1] == "Phường/xã"
    assert {line[4] for line in lines[1:]} == {"2,00", "0,50"}  # the decimal comma
    assert lines[0][6] == "Phút không nghe được"
    assert {line[6] for line in lines[1:]} == {"1,50", "0,00"}

    by_station = client.get("/bao-cao?thang=2026-11&theo=station")
    assert "lbn-cau-tre" in by_station.text
    assert "p2-kp-1" not in by_station.text


def test_play_log_totals_count_heard_minutes_and_open_in_vietnamese_excel(
    client: TestClient, session_factory: sessionmaker[Session], admin: dict[str, str]
) -> None:
    _seed(session_factory)
    window = {"from": "2026-11-15", "to": "2026-11-16", "by": "station"}
    rows = client.get("/api/v1/playlog/totals", params=window, headers=admin).json()
    by_day = {(r["date"], r["key"]): r for r in rows}
    heard = by_day["2026-11-15", "lbn-cau-tre"]
    assert (heard["minutes"], heard["not_heard"], heard["not_heard_minutes"]) == (2.0, 0, 0)
    silent = by_day["2026-11-16", "lbn-cau-tre"]
    # reported played during a fault: no airtime, its minutes apart
    assert (silent["minutes"], silent["plays"], silent["not_heard"]) == (0, 1, 1)
    assert silent["not_heard_minutes"] == 1.5
    # the JSON keeps its fields (one more: not_heard_minutes)
    assert set(heard) == {
        "date",
        "key",
        "name",
        "minutes",
        "plays",
        "played",
        "partial",
        "missed",
        "not_heard",
        "not_heard_minutes",
    }

    exported = client.get(
        "/api/v1/playlog/totals", params={**window, "format": "csv"}, headers=admin
    )
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    assert "\r\n" in exported.text
    lines = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";"))
    assert lines[0] == [
        "Ngày",
        "Mã trạm",
        "Tên",
        "Số phút phát",
        "Số lượt",
        "Đã phát",
        "Phát một phần",
        "Không phát",
        "Không nghe được",
        "Phút không nghe được",
    ]
    table = {(line[0], line[1]): line for line in lines[1:]}
    assert table["2026-11-15", "lbn-cau-tre"][3] == "2,00"  # the decimal comma
    assert table["2026-11-16", "lbn-cau-tre"][3:] == ["0,00", "1", "0", "0", "0", "1", "1,50"]
    assert table["2026-11-15", "p2-kp-1"][3] == "10,00"

    # the page: the column, and what the minutes mean
    login(client, "admin")
    page = client.get("/nhat-ky?tu=2026-11-16&den=2026-11-16")
    totals = page.text.split('id="totals"')[1].split("</table>")[0]
    assert "Phút không nghe được" in totals
    assert "1,5" in totals
    assert "chỉ tính thời gian nghe được" in page.text


def test_the_minutes_report_reads_by_old_or_new_units(
    client: TestClient, session_factory: sessionmaker[Session], admin: dict[str, str]
) -> None:
    """A June–July 2025 report over the Tân An reorganisation of 1 July: by today's
    wards, by the units of each play's time, or of one day, with the same totals."""
    with session_factory() as session:
        stations = list(session.scalars(select(Station).order_by(Station.sid)))
        for day in (dt.date(2025, 6, 30), dt.date(2025, 7, 1)):
            for n, station in enumerate(stations):
                start = dt.datetime.combine(day, dt.time(5), VN)
                heard = n % 4 != 0
                session.add(
                    Play(
                        station_id=station.id,
                        source="schedule",
                        title="VOV1",
                        kind="relay",
                        priority=5,
                        planned_start=start,
                        planned_end=start + dt.timedelta(minutes=15),
                        expected_ms=900_000,
                        played_ms=900_000,
                        status=PlayStatus.PLAYED if heard else PlayStatus.NOT_HEARD,
                    )
                )
        session.commit()
        apply_plan(session, tan_an_2025.plan())
    count = len(stations)
    silent = len(range(0, count, 4))
    old_units = {old for _, olds in tan_an_2025.WARDS.values() for old in olds}
    new_units = set(tan_an_2025.WARDS)
    window = {"from": "2025-06-01", "to": "2025-07-31"}
    read: dict[str, list[dict[str, object]]] = {}
    for units in ("today", "then", "2025-06-30"):
        answer = client.get(
            "/api/v1/reports/minutes", params={**window, "units": units}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        read[units] = answer.json()
    assert {r["key"] for r in read["today"]} == new_units
    assert {r["key"] for r in read["2025-06-30"]} == old_units
    assert {r["key"] for r in read["then"]} == old_units | new_units
    for rows in read.values():
        assert sum(int(str(r["plays"])) for r in rows) == 2 * count
        assert sum(float(str(r["minutes"])) for r in rows) == 2 * (count - silent) * 15
        assert sum(float(str(r["not_heard_minutes"])) for r in rows) == 2 * silent * 15
    # by the units of the time: June's plays under the old units, July's under the new
    with session_factory() as session:
        query = reports.play_query(
            session,
            None,
            since=dt.datetime(2025, 6, 1, tzinfo=VN),
            until=dt.datetime(2025, 7, 1, tzinfo=VN),
        )
        june = reports.broadcast_minutes(session, query, units="then", tz=VN)
    assert {r.key for r in june} == old_units
    bad = client.get(
        "/api/v1/reports/minutes", params={**window, "units": "hom-qua"}, headers=admin
    )
    assert bad.status_code == 422

    # the exports and the page follow the choice
    exported = client.get(
        "/api/v1/reports/minutes",
        params={**window, "units": "then", "format": "csv"},
        headers=admin,
    )
    lines = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";"))
    assert {line[0] for line in lines[1:]} == old_units | new_units
    workbook = client.get(
        "/api/v1/reports/minutes",
        params={**window, "units": "then", "format": "xlsx"},
        headers=admin,
    )
    sheet = load_workbook(io.BytesIO(workbook.content)).active
    assert sheet is not None
    table = [list(r) for r in sheet.iter_rows(min_row=3, values_only=True)]
    assert {r[0] for r in table[:-1]} == old_units | new_units
    assert table[-1][5] == 2 * count
    login(client, "admin")
    page = client.get("/bao-cao?thang=2025-06&don_vi=then")
    assert '<option value="then" selected>Đơn vị tại thời điểm đó</option>' in page.text
    units_table = page.text.split('id="report-units"')[1].split("</table>")[0]
    with session_factory() as session:
        old_name = session.scalar(select(Area.name).where(Area.code == sorted(old_units)[0]))
    assert old_name is not None
    assert old_name in units_table
    link = re.search(r'href="([^"]+)" id="export-csv"', page.text)
    assert link is not None
    assert "units=then" in link.group(1)
    today_page = client.get("/bao-cao?thang=2025-06")
    assert old_name not in today_page.text.split('id="report-units"')[1].split("</table>")[0]

    # the play log's daily totals follow the same choice, and so does its CSV link
    log = client.get("/nhat-ky?tu=2025-06-30&den=2025-06-30&don_vi=then")
    assert '<option value="then" selected>Đơn vị tại thời điểm đó</option>' in log.text
    assert old_name in log.text.split('id="totals"')[1].split("</table>")[0]
    csv_link = re.search(r'href="([^"]+)" id="csv-area"', log.text)
    assert csv_link is not None
    assert "units=then" in csv_link.group(1)
    log_today = client.get("/nhat-ky?tu=2025-06-30&den=2025-06-30")
    assert old_name not in log_today.text.split('id="totals"')[1].split("</table>")[0]
    today_link = re.search(r'href="([^"]+)" id="csv-area"', log_today.text)
    assert today_link is not None
    assert "units=" not in today_link.group(1)
