"""The dashboard pages (server-rendered HTML): sessions, scope, Vietnamese text, headers."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.dispatch.models import Broadcast, BroadcastStatus, Play, PlayStatus
from kernel.db import utcnow
from kernel.security import Role
from stations import live
from stations.models import Station
from tests.api import PASSWORD, make_user

PAGES = ["/", "/tram", "/tram/lbn-cau-tre", "/phat-thanh", "/phat-thanh/1", "/nhat-ky", "/canh-bao"]
ORIGIN = {"Origin": "http://testserver"}

pytestmark = pytest.mark.usefixtures("tan_an")

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def login(client: TestClient, username: str, password: str = PASSWORD, next_: str = "/") -> None:
    response = client.post(
        "/dang-nhap",
        data={"username": username, "password": password, "next": next_},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_


def user(
    factory: sessionmaker[Session],
    name: str,
    role: Role,
    areas: list[str],
    *,
    can_emergency: bool = False,
) -> str:
    make_user(factory, name, role, areas, can_emergency=can_emergency)
    return name


def test_every_page_redirects_to_login_without_a_session(client: TestClient) -> None:
    for path in [*PAGES, "/dang-xuat", "/tram?q=cau+tre"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        location = response.headers["location"]
        assert location.startswith("/dang-nhap"), (path, location)
        if path != "/":
            assert "next=" in location, location
    client.cookies.set("broadcaster_session", "bct_not-a-real-token")
    response = client.get("/tram", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dang-nhap?next=%2Ftram"
    refresh = client.get("/tong-quan.json")
    assert refresh.status_code == 401
    assert refresh.json()["message_vi"] == "Cần đăng nhập"


def test_login_form_in_vietnamese_with_errors_and_lockout(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "canbo", Role.OPERATOR, ["xa-loi-binh-nhon"])
    page = client.get("/dang-nhap?next=/tram")
    assert page.status_code == 200
    assert '<html lang="vi">' in page.text
    assert "Tên đăng nhập" in page.text
    assert "Mật khẩu" in page.text
    assert 'name="next" value="/tram"' in page.text

    empty = client.post("/dang-nhap", data={"username": "", "password": ""}, headers=ORIGIN)
    assert empty.status_code == 422
    assert "Vui lòng nhập tên đăng nhập và mật khẩu" in empty.text

    for _ in range(5):
        wrong = client.post(
            "/dang-nhap", data={"username": "canbo", "password": "sai mat khau"}, headers=ORIGIN
        )
        assert wrong.status_code == 401
        assert "Sai tên đăng nhập hoặc mật khẩu" in wrong.text
        assert 'value="canbo"' in wrong.text  # the username is kept
    locked = client.post(
        "/dang-nhap", data={"username": "canbo", "password": PASSWORD}, headers=ORIGIN
    )
    assert locked.status_code == 429
    assert "Đăng nhập sai quá nhiều lần, thử lại sau" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert "broadcaster_session" not in locked.cookies


def test_login_refuses_other_sites_and_open_redirects(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "admin", Role.ADMIN, [])
    forged = client.post(
        "/dang-nhap",
        data={"username": "admin", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert "broadcaster_session" not in forged.cookies
    for target in (
        "//evil.example/x",
        "https://evil.example/",
        "/dang-nhap",
        "\\\\evil",
        "/\t/evil.example",
    ):
        response = client.post(
            "/dang-nhap",
            data={"username": "admin", "password": PASSWORD, "next": target},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/", target
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    # signed in: the login page sends the account on
    again = client.get("/dang-nhap?next=/nhat-ky", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/nhat-ky"


def test_pages_render_for_an_administrator(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "admin", Role.ADMIN, [], can_emergency=True)
    login(client, "admin", next_="/tram")
    expected = {
        "/": ["Tổng quan", "Trạm trực tuyến theo phường, xã", "Xã Lợi Bình Nhơn", "Phường 2"],
        "/tram": ["Danh sách trạm", "108 trạm", "lbn-cau-tre", "p2-kp-1"],
        "/tram/lbn-cau-tre": ["Ấp Cầu Tre", "Lịch phát hôm nay", "Kiểm tra kết nối"],
        "/phat-thanh": ["Phát thanh ngay", "Khẩn cấp", "Tất cả các trạm (108 trạm)"],
        "/nhat-ky": ["Nhật ký phát", "Tổng hợp theo ngày", "theo phường, xã"],
        "/dang-xuat": ["Bạn muốn kết thúc phiên làm việc"],
    }
    for path, texts in expected.items():
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert page.headers["content-type"].startswith("text/html")
        for text in texts:
            assert text in page.text, (path, text)
        assert "Quản trị thành phố" in page.text  # the header: role
        assert "Toàn thành phố" in page.text  # the header: areas
        assert 'action="/dang-xuat"' in page.text
    # search without diacritics
    found = client.get("/tram?q=cau+tre")
    assert set(re.findall(r'data-sid="([^"]+)"', found.text)) == {"lbn-cau-tre", "lbn-smart-1"}
    smart_offline = client.get("/tram?kind=smart&online=0&area=xa-loi-binh-nhon")
    rows = set(re.findall(r'data-sid="([^"]+)"', smart_offline.text))
    assert rows == {"lbn-smart-1", "lbn-smart-2"}
    assert client.get("/tram?online=1").text.count("data-sid=") == 0
    missing = client.get("/phat-thanh/999")
    assert missing.status_code == 404
    assert "Không tìm thấy lượt phát này" in missing.text
    assert client.get("/tram/khong-co").status_code == 404
    assert client.get("/tram/BAD!").status_code == 404


def test_operator_sees_only_their_commune(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"], can_emergency=True)
    login(client, "lbn")
    stations = client.get("/tram")
    sids = set(re.findall(r'data-sid="([^"]+)"', stations.text))
    assert sids
    assert all(s.startswith("lbn-") for s in sids), sids
    assert "p2-kp-1" not in stations.text
    assert "Xã Lợi Bình Nhơn" in stations.text  # the header names the account's area
    assert "Cán bộ vận hành" in stations.text

    elsewhere = client.get("/tram/p2-kp-1")
    assert elsewhere.status_code == 404
    assert "Không tìm thấy trạm p2-kp-1 trong địa bàn của bạn" in elsewhere.text
    assert "Phường 2" not in elsewhere.text

    filtered = client.get("/tram?area=phuong-2")
    assert "không thuộc phạm vi" in filtered.text
    assert "p2-kp-1" not in filtered.text
    assert set(re.findall(r'data-sid="([^"]+)"', filtered.text)) == sids

    overview = client.get("/tong-quan.json").json()
    assert [u["name"] for u in overview["units"]] == ["Xã Lợi Bình Nhơn"]
    assert overview["totals"]["stations"] == len(sids)
    assert "Phường 2" not in client.get("/").text

    form = client.get("/phat-thanh")
    assert form.status_code == 200
    assert 'value="xa-loi-binh-nhon"' in form.text
    assert 'value="phuong-2"' not in form.text
    assert "Tất cả các trạm" not in form.text  # not city-wide
    assert "p2-kp-1" not in form.text

    log = client.get("/nhat-ky?tram=p2-kp-1")
    assert "Không tìm thấy trạm p2-kp-1" in log.text
    assert client.get("/tram/lbn-cau-tre").status_code == 200


def test_viewer_gets_no_broadcast_form_nor_commands(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "xem", Role.VIEWER, ["tan-an"])
    login(client, "xem")
    overview = client.get("/")
    assert 'href="/phat-thanh"' not in overview.text
    page = client.get("/phat-thanh")
    assert page.status_code == 403
    assert "không có quyền phát thanh" in page.text
    assert "broadcast-form" not in page.text
    station = client.get("/tram/lbn-cau-tre")
    assert station.status_code == 200
    assert 'data-command="reboot"' not in station.text
    tech = user(session_factory, "kythuat", Role.TECHNICIAN, ["xa-loi-binh-nhon"])
    client.cookies.clear()
    login(client, tech)
    assert 'data-command="reboot"' in client.get("/tram/lbn-cau-tre").text


def test_overview_counts_attention_and_refresh_json(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    now = utcnow()
    with db.session_scope(session_factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for sid in ("lbn-cau-tre", "lbn-smart-1", "p2-kp-1"):
            live.record_birth(
                session,
                ids[sid],
                bdseq=1,
                received_at=now,
                firmware="sim",
                model="sim",
                capabilities=["file"],
                held_version=None,
            )
        live.record_fault(session, ids["lbn-smart-1"], "amp_overheat", raised=True)
    login(client, "lbn")
    data = client.get("/tong-quan.json").json()
    lbn = data["units"][0]
    assert (lbn["online"], lbn["total"]) == (2, lbn["total"])
    assert data["totals"]["online"] == 2
    assert data["totals"]["offline"] == lbn["total"] - 2
    reasons = {a["sid"]: a["reasons"] for a in data["attention"]}
    assert reasons["lbn-smart-1"] == ["Lỗi: Bộ khuếch đại quá nhiệt"]
    assert "lbn-cau-tre" not in reasons
    assert reasons["lbn-ngai-loi-a"] == ["Chưa từng kết nối"]
    page = client.get("/")
    assert "Bộ khuếch đại quá nhiệt" in page.text
    assert 'data-refresh-url="/tong-quan.json"' in page.text
    station = client.get("/tram/lbn-smart-1")
    assert "Trực tuyến" in station.text
    assert "Bộ khuếch đại quá nhiệt" in station.text


@pytest.mark.calendar
def test_play_log_page_and_totals(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    # noon yesterday in Tân An: in the past and on one local day whatever the time now
    yesterday = utcnow().astimezone(VN).date() - dt.timedelta(days=1)
    start = dt.datetime.combine(yesterday, dt.time(12), VN).astimezone(dt.UTC)
    day = f"tu={yesterday.isoformat()}&den={yesterday.isoformat()}"
    with db.session_scope(session_factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for sid, status in (("lbn-cau-tre", PlayStatus.PLAYED), ("p2-kp-1", PlayStatus.MISSED)):
            session.add(
                Play(
                    station_id=ids[sid],
                    source="schedule",
                    item_id=f"test-{sid}",
                    title=f"Bản tin thử {sid}",
                    kind="file",
                    priority=3,
                    planned_start=start,
                    planned_end=start + dt.timedelta(minutes=2),
                    expected_ms=120_000,
                    status=status,
                    played_ms=120_000 if status is PlayStatus.PLAYED else None,
                    updated_at=start,
                )
            )
    login(client, "lbn")
    page = client.get(f"/nhat-ky?{day}")
    assert page.status_code == 200
    assert "Bản tin thử lbn-cau-tre" in page.text
    assert "p2-kp-1" not in page.text  # outside the commune
    assert "Đã phát" in page.text
    assert "2,0" in page.text  # minutes in the daily totals (decimal comma)
    capped = client.get("/nhat-ky?tu=2026-01-01&den=2026-06-30")
    assert "tối đa 31 ngày" in capped.text
    assert 'value="2026-01-31"' in capped.text
    missed = client.get(f"/nhat-ky?{day}&trang_thai=missed")
    assert "Bản tin thử" not in missed.text
    href = re.search(r'href="(/api/v1/playlog/totals\?[^"]*)" id="csv-area"', page.text)
    assert href is not None
    csv = client.get(href.group(1).replace("&amp;", "&"))
    assert csv.status_code == 200, csv.text
    assert csv.headers["content-type"].startswith("text/csv")
    assert "Xã Lợi Bình Nhơn" in csv.text
    assert "Phường 2" not in csv.text
    # for Vietnamese Excel: BOM, ";" and the decimal comma
    assert csv.text.splitlines()[0] == (
        "\ufeffNgày;Mã địa bàn;Tên;Số phút phát;Số lượt;Đã phát;Phát một phần;Không phát;"
        "Không nghe được;Phút không nghe được"
    )
    assert f"{yesterday.isoformat()};xa-loi-binh-nhon;Xã Lợi Bình Nhơn;2,00;1;" in csv.text


def test_logout_revokes_the_session(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "admin", Role.ADMIN, [])
    login(client, "admin")
    assert client.get("/api/v1/auth/me").status_code == 200  # the cookie works on the API
    forged = client.post("/dang-xuat", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200
    out = client.post("/dang-xuat", headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/dang-nhap?da_dang_xuat=1"
    assert "Bạn đã đăng xuất" in client.get("/dang-nhap?da_dang_xuat=1").text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_html_carries_the_security_headers(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "admin", Role.ADMIN, [])
    responses = [client.get("/dang-nhap")]
    login(client, "admin")
    responses += [client.get(path) for path in [*PAGES, "/tram/khong-co"]]
    for response in responses:
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
        # nothing loaded from elsewhere: every script and stylesheet is ours
        for url in re.findall(r'(?:src|href)="([^"]+\.(?:js|css)[^"]*)"', response.text):
            assert url.startswith("/static/app/"), url
    script = client.get("/static/app/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert client.get("/static/app/app.css").headers["content-type"].startswith("text/css")


def test_broadcast_page_follows_the_api_scope(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    user(session_factory, "canbo-p2", Role.OPERATOR, ["phuong-2"])
    now = utcnow()
    with db.session_scope(session_factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        broadcast = Broadcast(
            title="Thông báo của Phường 2",
            tier="normal",
            priority=3,
            content={},
            targets={"areas": ["phuong-2"]},
            station_count=1,
            start_at=now,
            not_after=now + dt.timedelta(seconds=30),
            status=BroadcastStatus.ACTIVE,
            created_by="canbo-p2",
        )
        session.add(broadcast)
        session.flush()
        session.add(
            Play(
                station_id=ids["p2-kp-1"],
                source="broadcast",
                cmd_id="c-test",
                broadcast_id=broadcast.id,
                title=broadcast.title,
                kind="file",
                priority=3,
                planned_start=now,
                planned_end=now + dt.timedelta(seconds=10),
                expected_ms=10_000,
                status=PlayStatus.PLANNED,
                updated_at=now,
            )
        )
        broadcast_id = broadcast.id
    login(client, "canbo-p2")
    own = client.get(f"/phat-thanh/{broadcast_id}")
    assert own.status_code == 200
    assert "Thông báo của Phường 2" in own.text
    assert f'data-broadcast-id="{broadcast_id}"' in own.text
    assert "Thông báo của Phường 2" in client.get("/").text  # the last broadcasts
    client.cookies.clear()
    login(client, "lbn")
    other = client.get(f"/phat-thanh/{broadcast_id}")
    assert other.status_code == 404
    assert "Thông báo của Phường 2" not in other.text
    assert "Thông báo của Phường 2" not in client.get("/phat-thanh").text
    assert client.get("/tong-quan.json").json()["broadcasts"] == []


def test_unknown_url_keeps_the_navigation_for_a_signed_in_user(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    anonymous = client.get("/khong-co-trang-nay")
    assert anonymous.status_code == 404
    assert "Không có trang này" in anonymous.text
    assert 'class="main-nav"' not in anonymous.text
    user(session_factory, "admin", Role.ADMIN, [])
    login(client, "admin")
    page = client.get("/khong-co-trang-nay")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'class="main-nav"' in page.text
    assert 'data-testid="username"' in page.text
    api = client.get("/api/v1/khong-co")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"
