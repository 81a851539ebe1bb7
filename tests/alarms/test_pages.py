"""The alarms pages without a browser: the list in the account's areas with lenient
filters, the navigation badge, the station page's alarm history and telemetry charts,
the map's station states; the availability view (period, units, figures, downloads)."""

from __future__ import annotations

import datetime as dt
import html as html_text
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from shapely import Point, Polygon
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.app import create_app
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from stations import live
from stations.models import Station
from tests.alarms.helpers import birth, report
from tests.api import PASSWORD, make_user

WARD_2, COMMUNE = "phuong-2", "xa-loi-binh-nhon"
HOT, FAR = "p2-kp-1", "lbn-cau-tre"


def listed(sid: str) -> str:
    """A station's sid as the alarm table shows it (area codes may equal sids)."""
    return f'<code class="small">{sid}</code>'


def map_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    response = client.post(
        "/dang-nhap",
        data={"username": username, "password": PASSWORD, "next": "/"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def test_alarms_page_badge_station_history_and_map(
    client: TestClient, tan_an: None, session_factory: sessionmaker[Session]
) -> None:
    make_user(session_factory, "kt2", Role.TECHNICIAN, [WARD_2])
    make_user(session_factory, "ktxa", Role.TECHNICIAN, [COMMUNE])
    report(session_factory, [HOT], speaker_ok=False, amp_temp_c=41.5, supply_v=12.6, rssi_dbm=-71)
    report(session_factory, [FAR], storage_free_mb=10.0)

    sign_in(client, "kt2")
    page = client.get("/canh-bao")
    assert page.status_code == 200
    assert "Lỗi đường dây loa" in page.text
    assert listed(HOT) in page.text
    assert listed(FAR) not in page.text  # another commune's alarm
    assert re.search(r'id="nav-alarms"[^>]*>1<', page.text)
    assert "không nghe được" in page.text
    stations = json.loads(
        re.search(
            r'<script type="application/json" id="map-data">(.*?)</script>', page.text, re.S
        ).group(1)  # type: ignore[union-attr]
    )["stations"]
    states = {s["sid"]: s["state"] for s in stations}
    assert states[HOT] == "critical"
    assert FAR not in states
    # the ward's outline (the hull of its stations: no boundary data offline) holds them
    outlines = map_data(page.text)["outlines"]
    assert [o["code"] for o in outlines] == [WARD_2]
    ward = Polygon([(lon, lat) for lat, lon in outlines[0]["ring"]])
    assert outlines[0]["stations"] == len(stations)
    assert all(ward.contains(Point(s["lon"], s["lat"])) for s in stations)
    assert "không có dữ liệu ranh giới" in page.text
    assert "nền trơn" in page.text  # no tile server configured: the plain fallback
    assert "img-src 'self' data:;" in page.headers["content-security-policy"]
    # the availability view, from the alarms area's own navigation
    assert 'href="/canh-bao/ty-le-san-sang" id="tab-availability"' in page.text
    assert 'id="availability-link"' in page.text
    # filters that do not fit are left out, never an error
    for query in ("muc_do=x", "trang_thai=xyz", "area=khong-co", "trang=-1", "muc_do=info"):
        assert client.get(f"/canh-bao?{query}").status_code == 200
    assert listed(HOT) not in client.get("/canh-bao?trang_thai=cleared").text
    assert listed(HOT) in client.get("/canh-bao?muc_do=critical&trang_thai=open").text

    station = client.get(f"/tram/{HOT}")
    assert station.status_code == 200
    assert "Lịch sử cảnh báo" in station.text
    assert 'id="station-alarms"' in station.text
    chart = json.loads(
        re.search(r'id="chart-data">(.*?)</script>', station.text, re.S).group(1)  # type: ignore[union-attr]
    )
    assert chart["series"]["amp_temp_c"][-1] == 41.5
    assert chart["series"]["rssi_dbm"][-1] == -71.0
    assert client.get(f"/tram/{FAR}").status_code == 404  # outside the ward

    sign_in(client, "ktxa")
    page = client.get("/canh-bao")
    assert listed(FAR) in page.text
    assert listed(HOT) not in page.text


def test_the_map_tile_server_is_allowed_by_the_pages_csp(settings: Settings) -> None:
    """A configured tile server's origin (Leaflet's ``{s}`` subdomains as a wildcard) is
    allowed in the pages' ``img-src``; a tile URL that is not an http(s) template is
    refused at start."""
    tiles = "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    app = create_app(settings.model_copy(update={"map_tile_url": tiles}), role=ProcessRole.API)
    with TestClient(app) as client:
        page = client.get("/dang-nhap")
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' data: https://*.tile.example.org;" in csp
    for bad in ("ftp://tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org/x.png"):
        with pytest.raises(ValidationError, match="BROADCASTER_MAP_TILE_URL"):
            Settings.model_validate(settings.model_dump() | {"map_tile_url": bad})


AVAILABILITY = "/canh-bao/ty-le-san-sang"
CAU_TRE, NGAI_LOI_A = "lbn-cau-tre", "lbn-ngai-loi-a"


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The text of each cell of a table's body rows (tags dropped, spaces squeezed)."""
    found = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert found is not None, table_id
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        text = (html_text.unescape(re.sub(r"<[^>]+>", " ", c)) for c in cells)
        rows.append([" ".join(t.split()) for t in text])
    return rows


def link(html: str, element_id: str) -> str:
    found = re.search(rf'href="([^"]+)" id="{element_id}"', html)
    assert found is not None, element_id
    return html_text.unescape(found.group(1))


def test_availability_view_by_commune_and_station_over_a_chosen_period(
    client: TestClient, tan_an: None, session_factory: sessionmaker[Session]
) -> None:
    """Yesterday Ấp Cầu Tre was connected 6 h, Ấp Ngãi Lợi A 12 h (each lost once): the
    view of that day shows 25 % and 50 %, the commune 37,5 % with 30 h offline and 2
    disconnections, the same figures as its downloads; the default is the last 7 days;
    another ward's technician sees none of it."""
    tz = ZoneInfo(client.app.state.settings.timezone)  # type: ignore[attr-defined]
    yesterday = dt.datetime.now(tz).date() - dt.timedelta(days=1)
    t0 = dt.datetime.combine(yesterday, dt.time(), tzinfo=tz)
    with session_factory() as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for sid, hours in ((CAU_TRE, 6), (NGAI_LOI_A, 12)):
            birth(session, ids[sid], t0)
            live.record_death(
                session, ids[sid], bdseq=1, received_at=t0 + dt.timedelta(hours=hours)
            )
        session.commit()
    make_user(session_factory, "ktxa", Role.TECHNICIAN, [COMMUNE])
    make_user(session_factory, "kt2", Role.TECHNICIAN, [WARD_2])
    sign_in(client, "ktxa")

    day = yesterday.isoformat()
    page = client.get(AVAILABILITY, params={"tu": day, "den": day})
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Tỷ lệ sẵn sàng của trạm' in page.text
    assert f'name="tu" type="date" value="{day}"' in page.text
    assert f"hết ngày {yesterday:%d/%m/%Y}" in page.text
    assert table_rows(page.text, "availability-areas") == [
        ["Xã Lợi Bình Nhơn xa-loi-binh-nhon", "2", "37,5 %", "30 giờ 00 phút", "2"]
    ]
    stations = table_rows(page.text, "availability-stations")
    assert [(r[0].split()[-1], r[1], r[2], r[3]) for r in stations] == [
        (CAU_TRE, "25,0 %", "18 giờ 00 phút", "1"),  # the least available first
        (NGAI_LOI_A, "50,0 %", "12 giờ 00 phút", "1"),
    ]
    assert 'id="overall-percent">37,5 %' in page.text
    assert 'id="overall-disconnections">2<' in page.text

    # the downloads: the same period and units, the same figures
    csv_url = link(page.text, "availability-station-csv")
    query = parse_qs(urlsplit(csv_url).query)
    assert query["units"] == ["today"]
    assert dt.datetime.fromisoformat(query["from"][0]) == t0
    assert dt.datetime.fromisoformat(query["to"][0]) == t0 + dt.timedelta(days=1)
    sheet = client.get(csv_url)
    assert sheet.status_code == 200
    assert sheet.text.splitlines()[1:] == [
        f"{CAU_TRE};Trạm truyền thanh Ấp Cầu Tre (Xã Lợi Bình Nhơn);1;6,00;24,00;25,00",
        f"{NGAI_LOI_A};Trạm truyền thanh Ấp Ngãi Lợi A (Xã Lợi Bình Nhơn);1;12,00;24,00;50,00",
    ]
    for element_id in ("availability-area-xlsx", "availability-station-xlsx"):
        got = client.get(link(page.text, element_id))
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert client.get(link(page.text, "availability-area-csv")).text.splitlines()[1] == (
        "xa-loi-binh-nhon;Xã Lợi Bình Nhơn;2;18,00;24,00;37,50"
    )

    # by the units of the time: no reorganisation here, the same figures; in the links
    then = client.get(AVAILABILITY, params={"tu": day, "den": day, "don_vi": "then"})
    assert then.status_code == 200
    assert '<option value="then" selected>' in then.text
    assert "units=then" in link(then.text, "availability-area-xlsx")
    assert table_rows(then.text, "availability-areas") == table_rows(
        page.text, "availability-areas"
    )
    assert '<option value="today" selected>' in client.get(AVAILABILITY + "?don_vi=x").text

    # the default: the last 7 days, today up to now
    default = client.get(AVAILABILITY)
    assert default.status_code == 200
    first = yesterday - dt.timedelta(days=5)
    assert f'name="tu" type="date" value="{first.isoformat()}"' in default.text
    assert "đến hiện tại" in default.text
    assert [r[0].split()[-1] for r in table_rows(default.text, "availability-stations")] == [
        CAU_TRE,
        NGAI_LOI_A,
    ]

    # another ward's technician: nothing of the commune
    sign_in(client, "kt2")
    theirs = client.get(AVAILABILITY, params={"tu": day, "den": day})
    assert theirs.status_code == 200
    assert CAU_TRE not in theirs.text
    assert "xa-loi-binh-nhon" not in theirs.text
    assert 'id="overall-percent">—' in theirs.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tu": "2026-11-20", "den": "2026-11-10"}, "“Từ ngày” phải trước hoặc bằng “Đến ngày”"),
        ({"tu": "2026-13-40"}, "Ngày không hợp lệ"),
        ({"den": "hôm qua"}, "Ngày không hợp lệ"),
        ({"den": "0001-01-03"}, "Ngày không hợp lệ"),
        ({"tu": "2026-11-01", "den": "9999-12-31"}, "tối đa 366 ngày"),
        ({"tu": "2024-01-01", "den": "2026-01-01"}, "tối đa 366 ngày"),
        ({"tu": "2999-01-01"}, "“Từ ngày” chưa đến"),
    ],
)
def test_availability_view_refuses_a_bad_period_in_vietnamese(
    client: TestClient, tan_an: None, params: dict[str, str], message: str
) -> None:
    """Days that make no period: the reason beside the form (what was typed kept), and
    the last 7 days' figures meanwhile."""
    make_user(client.app.state.sessionmaker, "ktxa", Role.TECHNICIAN, [COMMUNE])  # type: ignore[attr-defined]
    sign_in(client, "ktxa")
    page = client.get(AVAILABILITY, params=params)
    assert page.status_code == 200
    assert re.search(
        r'<p class="error" role="alert" id="availability-error">[^<]*' + message, page.text
    )
    assert "Đang hiển thị 7 ngày gần nhất" in page.text
    assert 'aria-invalid="true"' in page.text
    if "tu" in params:
        assert f'name="tu" type="date" value="{html_text.escape(params["tu"])}"' in page.text
    assert 'id="availability-stations"' in page.text


def test_availability_view_asks_to_sign_in(client: TestClient) -> None:
    got = client.get(AVAILABILITY + "?tu=2026-11-01", follow_redirects=False)
    assert got.status_code == 303
    assert got.headers["location"].startswith("/dang-nhap?next=")


# --- the alarm settings (``/canh-bao/thiet-lap``) and a station's own thresholds ----------

SETTINGS = "/canh-bao/thiet-lap"


def _subscription(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    made = client.post("/api/v1/alarms/subscriptions", json=body, headers=headers)
    assert made.status_code == 201, made.text
    data: dict[str, Any] = made.json()
    return data


def test_alarm_settings_show_the_areas_subscriptions_and_the_thresholds(
    client: TestClient, tan_an: None, session_factory: sessionmaker[Session]
) -> None:
    """A ward's technician sees the subscriptions of the ward (not another commune's),
    in Vietnamese, may add one for the ward only (not the whole city), and sees the
    thresholds per station kind read-only; the city administrator sees every
    subscription and edits the thresholds; both see the station's own thresholds, which
    the ward's operator (no stations-write) may not change."""
    admin = make_user(session_factory, "quantri", Role.ADMIN)
    make_user(session_factory, "kt2", Role.TECHNICIAN, [WARD_2])
    make_user(session_factory, "vh2", Role.OPERATOR, [WARD_2])
    _subscription(
        client,
        admin,
        name="Tổ kỹ thuật phường 2",
        channel="email",
        target="kythuat.p2@tanan.gov.vn",
        area_code=WARD_2,
        min_severity="critical",
    )
    _subscription(
        client,
        admin,
        name="Webhook xã Lợi Bình Nhơn",
        channel="webhook",
        target="https://xa.example.vn/hook",
        area_code=COMMUNE,
    )
    _subscription(
        client, admin, name="Trực ban thành phố", channel="email", target="tb@tanan.gov.vn"
    )
    put = client.put(
        "/api/v1/alarms/thresholds/kinds/hamlet",
        json={"thresholds": {"offline_after_s": 900}},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    put = client.put(
        f"/api/v1/alarms/thresholds/stations/{HOT}",
        json={"thresholds": {"storage_low_mb": 750}},
        headers=admin,
    )
    assert put.status_code == 200, put.text

    sign_in(client, "kt2")
    page = client.get(SETTINGS)
    assert page.status_code == 200
    text = page.text
    assert "<title>Thiết lập cảnh báo" in text
    assert 'id="tab-settings" aria-current="page"' in text
    assert 'id="tab-alarms" aria-current' not in text
    rows = table_rows(text, "subscriptions-table")
    assert len(rows) == 1, rows  # not the commune's, not the city's
    name, channel, target, area, severity, state, action = rows[0]
    assert name.startswith("Tổ kỹ thuật phường 2 tạo lúc ")
    assert (channel, target, area, severity, state, action) == (
        "Thư điện tử (e-mail)",
        "kythuat.p2@tanan.gov.vn",
        "Phường 2",
        "Nghiêm trọng",
        "Đang bật",
        "Xóa",
    )
    assert "Webhook xã Lợi Bình Nhơn" not in text
    # a ward account adds subscriptions of its ward only
    assert 'id="subscription-form"' in text
    assert f'<option value="{WARD_2}">' in text
    assert '<option value="">' not in text
    assert f'<option value="{COMMUNE}">' not in text
    # thresholds: read-only for a ward account, with labels, units, ranges, values
    assert 'id="thresholds-read-only"' in text
    assert 'id="th-hamlet-offline_after_s"' not in text
    hamlet = table_rows(text, "thresholds-table-hamlet")
    assert hamlet[0] == ["Mất kết nối quá (s) từ 10 đến 86400 s", "600", "900", "900"]
    smart = table_rows(text, "thresholds-table-smart")
    assert smart[0] == ["Mất kết nối quá (s) từ 10 đến 86400 s", "300", "—", "300"]
    assert ["Điện áp ắc quy yếu dưới (V) từ 9 đến 14 V", "11.8", "—", "11.8"] in smart

    # the station page: its own thresholds, editable by the ward's technician
    station = client.get(f"/tram/{HOT}")
    assert station.status_code == 200
    assert "Ngưỡng cảnh báo riêng của trạm" in station.text
    assert f'data-threshold-station="{HOT}"' in station.text
    assert 'id="sth-storage_low_mb"' in station.text
    own = {r[0].split(" (")[0]: r[1:] for r in table_rows(station.text, "station-thresholds-table")}
    assert own["Mất kết nối quá"] == ["", "900"]  # the hamlet kind's override
    assert own["Bộ nhớ trống dưới"] == ["", "750"]  # its own (in the input's value)
    assert 'id="sth-storage_low_mb" name="storage_low_mb" type="number"' in station.text
    assert 'value="750"' in station.text

    sign_in(client, "vh2")  # an operator: may read, not change
    station = client.get(f"/tram/{HOT}")
    assert "Ngưỡng cảnh báo riêng của trạm" in station.text
    assert "data-threshold-station" not in station.text
    own = {r[0].split(" (")[0]: r[1:] for r in table_rows(station.text, "station-thresholds-table")}
    assert own["Bộ nhớ trống dưới"] == ["750", "750"]
    page = client.get(SETTINGS)
    assert 'id="subscription-form"' not in page.text
    assert 'id="subscriptions-read-only"' in page.text
    assert "data-delete-subscription" not in page.text

    sign_in(client, "quantri")  # the city administrator: everything, editable
    page = client.get(SETTINGS)
    rows = table_rows(page.text, "subscriptions-table")
    assert [r[3] for r in rows] == ["Phường 2", "Xã Lợi Bình Nhơn", "Toàn thành phố"]
    assert [r[1] for r in rows][1] == "Webhook (gọi URL)"
    assert '<option value="">Toàn thành phố</option>' in page.text
    assert 'id="thresholds-read-only"' not in page.text
    assert 'data-threshold-kind="hamlet"' in page.text
    assert (
        'id="th-hamlet-offline_after_s" name="offline_after_s" type="number" step="any" '
        'min="10" max="86400" inputmode="decimal" value="900"'
    ) in page.text
    assert 'id="th-smart-offline_after_s" name="offline_after_s"' in page.text


def test_alarm_settings_ask_to_sign_in(client: TestClient) -> None:
    got = client.get(SETTINGS, follow_redirects=False)
    assert got.status_code == 303
    assert got.headers["location"] == "/dang-nhap?next=%2Fcanh-bao%2Fthiet-lap"
