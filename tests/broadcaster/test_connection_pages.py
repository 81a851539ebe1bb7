"""The station page's connection history and the overview's "Trạm cần chú ý" with the
stations' open alarms."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.alarms import service as alarms
from kernel.db import utcnow
from kernel.security import Role
from stations import live
from stations.models import Station
from tests.alarms.helpers import birth, report
from tests.api import make_user
from tests.broadcaster.test_web_pages import login

pytestmark = pytest.mark.usefixtures("tan_an")

HAMLET = "lbn-cau-tre"
SMART = "lbn-smart-1"
QUIET = "lbn-ngai-loi-a"
MINUTE = dt.timedelta(minutes=1)


def ids(session: Session) -> dict[str, int]:
    return {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}


def test_station_page_lists_the_connection_history_in_vietnamese(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "lbn", Role.TECHNICIAN, ["xa-loi-binh-nhon"])
    start = utcnow() - dt.timedelta(hours=2)
    with db.session_scope(session_factory) as session:
        sid_id = ids(session)[HAMLET]
        birth(session, sid_id, start, bdseq=1)
        live.record_death(session, sid_id, bdseq=1, received_at=start + 10 * MINUTE)
        birth(session, sid_id, start + 20 * MINUTE, bdseq=2)
        birth(session, sid_id, start + 50 * MINUTE, bdseq=3)  # no death: the link dropped
        base = {"seq": 0, "uptime_s": 1, "volume": 70, "playing": None, "on_battery": True}
        at = start + 51 * MINUTE
        live.record_telemetry(
            session, [live.TelemetryRow(sid_id, at, at, 0, base | {"at": at.isoformat()})]
        )
        live.record_death(session, sid_id, bdseq=3, received_at=start + 65 * MINUTE)
        birth(session, sid_id, start + 90 * MINUTE, bdseq=4)
    login(client, "lbn")
    page = client.get(f"/tram/{HAMLET}")
    assert page.status_code == 200
    assert "Lịch sử kết nối" in page.text
    table = page.text.split('id="station-connections"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]  # after the header row
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in rows]
    assert [c[3] for c in cells] == [
        "Đang kết nối",
        "Mất điện lưới",
        "Đường truyền gián đoạn, trạm tự kết nối lại",
        "Trạm ngắt kết nối (mất mạng, tắt hoặc khởi động lại)",
    ]
    assert [c[2] for c in cells[1:]] == ["15 phút", "30 phút", "10 phút"]
    assert "hiện tại" in cells[0][1]
    # a station that never connected says so
    assert "Chưa có lịch sử kết nối." in client.get(f"/tram/{QUIET}").text


def test_overview_lists_stations_with_open_alarms_by_their_titles(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    make_user(session_factory, "phuong2", Role.OPERATOR, ["phuong-2"])
    # a smart station low on storage, its clock off, its speaker line broken (a fault
    # event the alarm also says: said once, by the alarm)
    report(
        session_factory,
        [SMART],
        faults=["speaker_line"],
        storage_free_mb=20,
        clock_offset_ms=90_000,
    )
    report(session_factory, ["p2-kp-1"], storage_free_mb=20)
    # a hamlet station whose link flaps: 8 connections in the last hour
    now = utcnow()
    with db.session_scope(session_factory) as session:
        sid_id = ids(session)[HAMLET]
        for n in range(1, 9):
            birth(session, sid_id, now - (40 - 5 * n) * MINUTE, bdseq=n)
        alarms.evaluate(session, now, {sid_id})
    login(client, "lbn")
    data = client.get("/tong-quan.json").json()
    reasons = {a["sid"]: a["reasons"] for a in data["attention"]}
    assert reasons[HAMLET] == ["Cảnh báo: Kết nối chập chờn (kết nối lại 8 lần trong 1 giờ)"]
    smart = reasons[SMART]
    assert smart[0].startswith("Nghiêm trọng: Lỗi đường dây loa"), smart
    assert {r.split(" (")[0] for r in smart[1:]} == {
        "Cảnh báo: Bộ nhớ trạm sắp đầy",
        "Cảnh báo: Đồng hồ trạm lệch",
    }
    assert not any(r.startswith("Lỗi:") for r in smart)  # the fault is said by its alarm
    assert "p2-kp-1" not in reasons  # another ward's station
    # online stations with alarms come after the offline ones, the most serious first
    online = [a["sid"] for a in data["attention"] if a["online"]]
    assert online == [SMART, HAMLET]
    assert data["totals"]["attention"] == len(data["attention"])
    page = client.get("/")
    assert "Kết nối chập chờn" in page.text
    assert "Bộ nhớ trạm sắp đầy" in page.text
    # the station page says the same
    assert "Kết nối chập chờn (kết nối lại 8 lần trong 1 giờ)" in client.get(f"/tram/{HAMLET}").text


def test_open_alarms_by_station_is_one_query_scoped(
    session_factory: sessionmaker[Session],
) -> None:
    report(session_factory, [SMART, "p2-kp-1"], storage_free_mb=20, amp_temp_c=90)
    with session_factory() as session:
        known = ids(session)
        every = alarms.open_alarms_by_station(session, None)
        assert set(every) == {known[SMART], known["p2-kp-1"]}
        first = every[known[SMART]]
        assert [a.severity.value for a in first] == ["critical", "warning"]
        assert [a.title_vi for a in first] == [
            "Nhiệt độ bộ khuếch đại cao",
            "Bộ nhớ trạm sắp đầy",
        ]
        area = session.scalar(select(Station.area_id).where(Station.sid == "p2-kp-1"))
        assert area is not None
        scoped = alarms.open_alarms_by_station(session, {area})
        assert set(scoped) == {known["p2-kp-1"]}
        assert alarms.open_alarms_by_station(session, None, [known[HAMLET]]) == {}
