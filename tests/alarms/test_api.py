"""Issue 12, the alarms API: list with filters and acknowledge, thresholds (422 with a
Vietnamese message when out of range), subscriptions scoped to the caller's areas, and
``/metrics`` (token-protected) parsed with prometheus-client's parser."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.app import create_app
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from stations import live
from stations.models import Station
from tests.alarms.helpers import birth, report
from tests.api import make_user, ok

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

pytestmark = pytest.mark.usefixtures("tan_an")
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def test_alarms_list_filter_acknowledge(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    report(session_factory, ["p2-kp-1"], speaker_ok=False, amp_temp_c=70.0)
    report(session_factory, ["lbn-cau-tre"], storage_free_mb=20.0)
    listed = ok(client.get("/api/v1/alarms?state=open", headers=admin))
    assert listed["total"] == 3
    assert listed["items"][0]["severity"] == "critical"  # critical first
    assert listed["items"][0]["title_vi"] == "Lỗi đường dây loa"
    page = ok(
        client.get("/api/v1/alarms?limit=1&offset=1&from=2026-01-01T00:00:00Z", headers=admin)
    )
    assert (page["total"], len(page["items"])) == (3, 1)
    only = ok(client.get("/api/v1/alarms?area=phuong-2&severity=warning", headers=admin))
    assert [a["condition"] for a in only["items"]] == ["amp_temperature"]

    tech = make_user(session_factory, "kt2", Role.TECHNICIAN, ["phuong-2"])
    mine = ok(client.get("/api/v1/alarms", headers=tech))
    assert {a["station"]["sid"] for a in mine["items"]} == {"p2-kp-1"}
    other = ok(client.get("/api/v1/alarms?sid=lbn-cau-tre", headers=admin))["items"][0]
    assert client.get(f"/api/v1/alarms/{other['id']}", headers=tech).status_code == 404

    alarm = mine["items"][0]
    done = ok(
        client.post(
            f"/api/v1/alarms/{alarm['id']}/acknowledge", json={"note": "đã cử thợ"}, headers=tech
        )
    )
    assert (done["status"], done["acknowledged_by"], done["ack_note"]) == (
        "acknowledged",
        "kt2",
        "đã cử thợ",
    )
    viewer = make_user(session_factory, "xem", Role.VIEWER, ["tan-an"])
    denied = client.post(f"/api/v1/alarms/{alarm['id']}/acknowledge", json={}, headers=viewer)
    assert denied.status_code == 403
    assert ok(client.get(f"/api/v1/alarms/{alarm['id']}/deliveries", headers=admin)) == []
    audit = ok(client.get("/api/v1/audit?limit=5", headers=admin))["items"]
    assert audit[0]["action"] == "alarm.acknowledge"


def test_thresholds_ranges_and_overrides(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    bad = client.put(
        "/api/v1/alarms/thresholds/kinds/hamlet",
        json={"thresholds": {"amp_temp_warning_c": 500}},
        headers=admin,
    )
    assert bad.status_code == 422
    assert bad.json()["message_vi"] == "Nhiệt độ cảnh báo phải nằm trong khoảng 30–120 °C"
    unknown = client.put(
        "/api/v1/alarms/thresholds/kinds/hamlet", json={"thresholds": {"x": 1}}, headers=admin
    )
    assert unknown.status_code == 422
    done = ok(
        client.put(
            "/api/v1/alarms/thresholds/kinds/hamlet",
            json={"thresholds": {"amp_temp_warning_c": 60}},
            headers=admin,
        )
    )
    assert done["kinds"]["hamlet"]["effective"]["amp_temp_warning_c"] == 60
    station = ok(
        client.put(
            "/api/v1/alarms/thresholds/stations/p2-kp-1",
            json={"thresholds": {"offline_after_s": 30}},
            headers=admin,
        )
    )
    assert station["effective"]["offline_after_s"] == 30
    assert station["effective"]["amp_temp_warning_c"] == 60
    tech = make_user(session_factory, "kt2", Role.TECHNICIAN, ["phuong-2"])
    kind = client.put(
        "/api/v1/alarms/thresholds/kinds/smart", json={"thresholds": {}}, headers=tech
    )
    assert kind.status_code == 403
    assert (
        client.get("/api/v1/alarms/thresholds/stations/lbn-cau-tre", headers=tech).status_code
        == 404
    )


def test_subscriptions_are_scoped(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    tech = make_user(session_factory, "kt2", Role.TECHNICIAN, ["phuong-2"])
    mail = {"name": "KT", "channel": "email", "target": "kt2@example.vn", "area_code": "phuong-2"}
    made = ok(client.post("/api/v1/alarms/subscriptions", json=mail, headers=tech), 201)
    assert made["secret"] is None
    assert made["area"]["code"] == "phuong-2"
    elsewhere = mail | {"area_code": "xa-loi-binh-nhon"}
    assert (
        client.post("/api/v1/alarms/subscriptions", json=elsewhere, headers=tech).status_code == 404
    )
    city = mail | {"area_code": None}
    assert client.post("/api/v1/alarms/subscriptions", json=city, headers=tech).status_code == 403
    nul = client.post("/api/v1/alarms/subscriptions", json=mail | {"name": "a\x00b"}, headers=tech)
    assert nul.status_code == 422
    bad = mail | {"target": "not-an-address"}
    refused = client.post("/api/v1/alarms/subscriptions", json=bad, headers=tech)
    assert refused.status_code == 422
    assert refused.json()["message_vi"] == "Địa chỉ e-mail không hợp lệ"
    hook = {"name": "Zalo", "channel": "webhook", "target": "https://example.vn/hook"}
    created = ok(client.post("/api/v1/alarms/subscriptions", json=hook, headers=admin), 201)
    assert len(created["secret"]) >= 32
    assert [s["id"] for s in ok(client.get("/api/v1/alarms/subscriptions", headers=tech))] == [
        made["id"]
    ]
    assert (
        client.delete(f"/api/v1/alarms/subscriptions/{created['id']}", headers=tech).status_code
        == 404
    )
    assert (
        client.delete(f"/api/v1/alarms/subscriptions/{made['id']}", headers=tech).status_code == 204
    )

    # a city-level technician (not an administrator) sees, and may remove, the city-wide
    # subscriptions it can make; a ward's technician still sees none of them
    city_tech = make_user(session_factory, "kt-tp", Role.TECHNICIAN, ["tan-an"])
    mine = ok(client.post("/api/v1/alarms/subscriptions", json=city, headers=city_tech), 201)
    seen = {s["id"] for s in ok(client.get("/api/v1/alarms/subscriptions", headers=city_tech))}
    assert {mine["id"], created["id"]} <= seen
    assert not ok(client.get("/api/v1/alarms/subscriptions", headers=tech))
    assert (
        client.delete(f"/api/v1/alarms/subscriptions/{mine['id']}", headers=city_tech).status_code
        == 204
    )


@pytest.fixture
def metrics_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}),
        role=ProcessRole.API,
    )
    with TestClient(app) as client:
        yield client


def test_metrics_are_token_protected_and_parse(
    client: TestClient, metrics_client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    assert client.get("/metrics").status_code == 404  # no token configured
    assert metrics_client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert metrics_client.get("/metrics", headers=wrong).status_code == 401
    report(session_factory, ["p2-kp-1"], speaker_ok=False)
    response = metrics_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("broadcaster_stations_online", ())] == 1
    assert samples[("broadcaster_stations_enabled", ())] == 108
    assert samples[("broadcaster_alarms_active", (("severity", "critical"),))] == 1
    assert samples[("broadcaster_alarms_active", (("severity", "warning"),))] == 0
    assert samples[("broadcaster_worker_active", ())] == 0
    assert samples[("broadcaster_outbox_lag_seconds", ())] == 0
    assert samples[("broadcaster_broadcast_latency_seconds_count", ())] == 0


def test_availability_per_station_and_commune(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    t0 = dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC)
    with session_factory() as session:
        ids = dict(session.execute(select(Station.sid, Station.id)).all())
        for sid, hours in (("lbn-cau-tre", 6), ("lbn-ngai-loi-a", 12)):
            birth(session, ids[sid], t0)
            live.record_death(
                session, ids[sid], bdseq=1, received_at=t0 + dt.timedelta(hours=hours)
            )
        session.commit()
    period = {"from": t0.isoformat(), "to": (t0 + dt.timedelta(days=1)).isoformat()}
    rows = ok(client.get("/api/v1/alarms/availability", params=period, headers=admin))
    assert [(r["key"], r["availability"]) for r in rows] == [
        ("lbn-cau-tre", 0.25),
        ("lbn-ngai-loi-a", 0.5),
    ]
    by_area = ok(
        client.get("/api/v1/alarms/availability", params=period | {"by": "area"}, headers=admin)
    )
    assert [(r["key"], r["stations"], r["availability"]) for r in by_area] == [
        ("xa-loi-binh-nhon", 2, 0.375)
    ]
    csv_text = client.get(
        "/api/v1/alarms/availability", params=period | {"format": "csv"}, headers=admin
    )
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert csv_text.text.splitlines() == [
        "\ufeffMã trạm;Trạm;Số trạm;Thời gian kết nối (giờ);Thời gian của kỳ (giờ);"
        "Tỷ lệ sẵn sàng (%)",
        "lbn-cau-tre;Trạm truyền thanh Ấp Cầu Tre (Xã Lợi Bình Nhơn);1;6,00;24,00;25,00",
        "lbn-ngai-loi-a;Trạm truyền thanh Ấp Ngãi Lợi A (Xã Lợi Bình Nhơn);1;12,00;24,00;50,00",
    ]
    for by, expected in (
        ("station", [("lbn-cau-tre", 6.0, 25.0), ("lbn-ngai-loi-a", 12.0, 50.0)]),
        ("area", [("xa-loi-binh-nhon", 18.0, 37.5)]),
    ):
        got = client.get(
            "/api/v1/alarms/availability",
            params=period | {"format": "xlsx", "by": by},
            headers=admin,
        )
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == XLSX
        assert got.headers["content-disposition"].endswith('.xlsx"')
        sheet = load_workbook(io.BytesIO(got.content)).active
        assert sheet is not None
        lines = list(sheet.iter_rows(values_only=True))
        assert str(lines[0][0]).startswith("Tỷ lệ sẵn sàng từ 30/11/2026")
        unit = "phường/xã" if by == "area" else "trạm"
        assert lines[1] == (
            f"Mã {unit}",
            unit.capitalize() if by == "station" else "Phường/xã",
            "Số trạm",
            "Thời gian kết nối (giờ)",
            "Thời gian của kỳ (giờ)",
            "Tỷ lệ sẵn sàng (%)",
        )
        assert [(r[0], r[3], r[5]) for r in lines[2:]] == expected
        assert sheet.cell(row=3, column=6).number_format == "0.00"
    tech = make_user(session_factory, "kt2", Role.TECHNICIAN, ["phuong-2"])
    assert ok(client.get("/api/v1/alarms/availability", params=period, headers=tech)) == []
