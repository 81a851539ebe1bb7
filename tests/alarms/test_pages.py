"""The alarms pages without a browser: the list in the account's areas with lenient
filters, the navigation badge, the station page's alarm history and telemetry charts,
the map's station states."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.alarms.helpers import report
from tests.api import PASSWORD, make_user

WARD_2, COMMUNE = "phuong-2", "xa-loi-binh-nhon"
HOT, FAR = "p2-kp-1", "lbn-cau-tre"


def listed(sid: str) -> str:
    """A station's sid as the alarm table shows it (area codes may equal sids)."""
    return f'<code class="small">{sid}</code>'


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
