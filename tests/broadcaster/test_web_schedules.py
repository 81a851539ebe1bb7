"""The programme and schedule pages (server side): the week calendar of a commune and of
a station, programmes and rules with their editors, the day's conflicts, conflicts in the
approval queue before approving, a station's playlist of any day, and the 404 page for
anything outside the account's areas."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.db import utcnow
from kernel.security import Role
from tests.api import make_user, ok
from tests.broadcaster.test_web_pages import login
from tests.schedules.api_helpers import (
    VN,
    asset_item,
    create_programme,
    create_rule,
    daily,
    gap_item,
    make_asset,
    rule_body,
)

pytestmark = pytest.mark.usefixtures("tan_an")

LBN = "xa-loi-binh-nhon"


def _visible(html: str) -> str:
    """The page's text without attribute values (codes live there, not in the text)."""
    return re.sub(r'(class|value|data-[a-z-]+|id|href|for|name)="[^"]*"', "", html)


@pytest.mark.calendar
def test_pages_show_programmes_rules_calendar_and_tomorrow(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "lichlbn", Role.OPERATOR, [LBN])
    approver = make_user(session_factory, "duyetlbn", Role.APPROVER, [LBN])
    news = make_asset(session_factory, "Bản tin sáng xã", minutes=2, owner_area=LBN)
    programme = create_programme(
        client, operator, asset_item(news), gap_item(30), title="Chương trình sáng của xã"
    )
    body = rule_body(programme["id"], daily("06:30"), groups=[LBN], title="Phát sáng hằng ngày")
    rule = create_rule(client, operator, body, approver=approver)

    login(client, "lichlbn")
    listing = client.get("/lich/chuong-trinh")
    assert listing.status_code == 200
    assert "Chương trình sáng của xã" in listing.text
    assert "2 phút 30 giây" in listing.text  # the total duration
    editor = client.get(f"/lich/chuong-trinh/{programme['id']}")
    assert editor.status_code == 200
    assert "Bản tin sáng xã" in editor.text  # offered (approved) and in the items
    assert client.get("/lich/chuong-trinh/moi").status_code == 200

    rules = client.get("/lich/quy-tac")
    assert "Phát sáng hằng ngày" in rules.text
    assert "Đã duyệt" in rules.text
    assert "approved" not in _visible(rules.text)
    rule_page = client.get(f"/lich/quy-tac/{rule['id']}")
    assert rule_page.status_code == 200
    for form in ("Hằng tuần", "Hằng tháng", "Cách N ngày", "Mùng 1", "Rằm (15)", "ngày lễ, Tết"):
        assert form in rule_page.text, form
    assert "Ấp Cầu Tre" in rule_page.text  # targets from the area tree
    assert client.get("/lich/quy-tac/moi").status_code == 200

    week = client.get("/lich")  # the account's commune by default
    assert week.status_code == 200
    assert "Xã Lợi Bình Nhơn" in week.text
    assert week.text.count("Phát sáng hằng ngày") == 7  # every day of the week
    station_week = client.get("/lich?tram=lbn-cau-tre")
    assert station_week.text.count("Phát sáng hằng ngày") == 7
    # the schedule tabs say which page is open
    for page, current in (
        (week, '<a href="/lich" aria-current="page">'),
        (listing, '<a href="/lich/chuong-trinh" aria-current="page">'),
        (editor, '<a href="/lich/chuong-trinh" aria-current="page">'),
        (rules, '<a href="/lich/quy-tac" aria-current="page">'),
        (rule_page, '<a href="/lich/quy-tac" aria-current="page">'),
    ):
        assert current in page.text, current
        assert page.text.count('aria-current="page"') == 2, current  # the main nav and the tab

    station = client.get("/tram/lbn-cau-tre")
    assert 'href="/tram/lbn-cau-tre/lich-phat"' in station.text  # one click to tomorrow
    today = utcnow().astimezone(VN).date()
    tomorrow = client.get("/tram/lbn-cau-tre/lich-phat")
    assert tomorrow.status_code == 200
    assert (today + dt.timedelta(days=1)).strftime("%d/%m/%Y") in tomorrow.text
    assert "06:30–06:32" in tomorrow.text
    assert "Bản tin sáng xã" in tomorrow.text
    later = today + dt.timedelta(days=40)
    other_day = client.get(f"/tram/lbn-cau-tre/lich-phat?ngay={later.isoformat()}")
    assert later.strftime("%d/%m/%Y") in other_day.text
    assert "Bản tin sáng xã" in other_day.text
    far = client.get("/tram/lbn-cau-tre/lich-phat?ngay=2099-12-31")
    assert "Bản tin sáng xã" in far.text  # a daily rule without end
    odd = client.get("/tram/lbn-cau-tre/lich-phat?ngay=not-a-date")
    assert odd.status_code == 200  # read leniently: tomorrow


@pytest.mark.calendar
def test_conflicts_shown_on_the_day_and_before_approving(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "xungdot", Role.OPERATOR, [LBN])
    make_user(session_factory, "duyetxd", Role.APPROVER, [LBN])
    approver = make_user(session_factory, "duyetxd2", Role.APPROVER, [LBN])
    first = make_asset(session_factory, "Tin khẩn xã", minutes=10, owner_area=LBN)
    second = make_asset(session_factory, "Nhạc sáng", minutes=10, owner_area=LBN)
    urgent = create_programme(client, operator, asset_item(first), title="Tin khẩn")
    music = create_programme(client, operator, asset_item(second), title="Nhạc buổi sáng")
    high = rule_body(urgent["id"], daily("07:00"), groups=[LBN], title="Tin khẩn 7 giờ")
    high["tier"] = "priority"
    create_rule(client, operator, high, approver=approver)
    low = rule_body(music["id"], daily("07:05"), groups=[LBN], title="Nhạc 7 giờ 05")
    waiting = create_rule(client, operator, low)  # a draft: not yet in the plan

    login(client, "duyetxd")
    queue = client.get("/duyet").text
    block = queue.split(f'data-kind="rule" data-id="{waiting["id"]}"', 1)[1].split("</article>")[0]
    assert "Xung đột nếu duyệt" in block
    assert "Nhạc 7 giờ 05" in block
    assert "Tin khẩn 7 giờ" in block  # the winner it would lose to
    assert "Bị bỏ" in block or "Bị dời giờ" in block

    create_rule(client, operator, {**low, "title": "Nhạc sáng đã duyệt"}, approver=approver)
    login(client, "xungdot")
    day = (utcnow().astimezone(VN).date() + dt.timedelta(days=1)).isoformat()
    page = client.get(f"/lich/quy-tac?ngay={day}")
    conflicts = page.text.split('id="day-conflicts"', 1)[1]
    assert "Nhạc sáng đã duyệt" in conflicts
    assert "Bị bỏ" in conflicts or "Bị dời giờ" in conflicts
    week = client.get(f"/lich?tuan={day}").text  # every day of the week says so
    assert week.count("xung đột (lượt bị dời hoặc bỏ)") == 7
    assert f'href="/lich/quy-tac?ngay={day}#day-conflicts"' in week


def test_objects_outside_the_accounts_areas_answer_404(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    other = make_user(session_factory, "phuong2lich", Role.OPERATOR, ["phuong-2"])
    make_user(session_factory, "lbnlich", Role.OPERATOR, [LBN])
    news = make_asset(session_factory, "Tin phường 2", minutes=1, owner_area="phuong-2")
    programme = create_programme(client, other, asset_item(news), title="Chương trình phường 2")
    rule = create_rule(
        client,
        other,
        rule_body(programme["id"], daily("08:00"), groups=["phuong-2"], title="Lịch phường 2"),
    )
    login(client, "lbnlich")
    for path in (
        f"/lich/chuong-trinh/{programme['id']}",
        f"/lich/quy-tac/{rule['id']}",
        "/lich?khu_vuc=phuong-2",
        "/lich?tram=p2-kp-1",
        "/tram/p2-kp-1/lich-phat",
        "/lich/chuong-trinh/999999",
        "/lich/quy-tac/abc",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "Không tìm thấy" in answer.text
        assert "phường 2" not in answer.text.lower().replace("không tìm thấy", ""), path
    assert "Chương trình phường 2" not in client.get("/lich/chuong-trinh").text
    assert "Lịch phường 2" not in client.get("/lich/quy-tac").text


def test_schedule_pages_ask_for_a_session(client: TestClient) -> None:
    for path in ("/lich", "/lich/chuong-trinh", "/lich/quy-tac/moi", "/tram/lbn-cau-tre/lich-phat"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/dang-nhap")


@pytest.mark.calendar
def test_calendar_waiting_rules_ical_link_and_editor_fields(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "lichcho", Role.OPERATOR, [LBN])
    news = make_asset(session_factory, "Tin chờ duyệt", minutes=1, owner_area=LBN)
    programme = create_programme(client, operator, asset_item(news), title="Chương trình chờ")
    body = rule_body(
        programme["id"], daily("09:15"), stations=["lbn-cau-tre"], title="Quy tắc còn chờ"
    )
    waiting = create_rule(client, operator, body)  # a draft: not in the plan yet
    assert waiting["approval"] == "draft"

    login(client, "lichcho")
    week = client.get("/lich?tram=lbn-cau-tre").text
    pending = re.findall(r'<div class="sch-block[^"]*sch-pending"[^>]*data-pending="1"', week)
    assert len(pending) == 7  # where it would play every day of the week, drawn apart
    assert week.count("<strong>chờ duyệt</strong>") == 7
    assert "Có 1 quy tắc chờ duyệt" in week
    assert 'id="toggle-pending"' in week
    assert "Ẩn quy tắc chờ duyệt" in week
    hidden = client.get("/lich?tram=lbn-cau-tre&cho_duyet=0").text
    assert "Quy tắc còn chờ" not in hidden
    assert "data-pending" not in hidden
    assert "Hiện quy tắc chờ duyệt" in hidden
    commune = client.get("/lich").text  # the commune's week shows it too, on 1 station
    assert commune.count("<strong>chờ duyệt</strong>") == 7

    # "Đăng ký lịch (iCalendar)": a signed feed of that station a calendar program can poll
    link = re.search(r'<a href="([^"]+)" id="ical-link"', week)
    assert link is not None
    assert "Đăng ký lịch (iCalendar)" in week
    url = link.group(1).replace("&amp;", "&")
    assert "/api/v1/stations/lbn-cau-tre/calendar.ics?" in url
    assert "sig=" in url
    path = url[url.index("/api/v1/") :]
    client.cookies.clear()  # the feed needs no session
    feed = client.get(path)
    assert feed.status_code == 200, feed.text
    assert feed.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VCALENDAR" in feed.text
    tampered = client.get(path.replace("lbn-cau-tre", "lbn-ben-do"))
    assert tampered.status_code in (401, 403)
    login(client, "lichcho")
    area_week = client.get(f"/lich?khu_vuc={LBN}").text
    assert f"/api/v1/areas/{LBN}/calendar.ics?" in area_week

    # the rule editor: owner area, single stations (only the account's), order, slot
    editor = client.get("/lich/quy-tac/moi").text
    assert 'id="r-owner"' in editor
    assert f'<option value="{LBN}">' in editor
    assert 'id="t-st-lbn-cau-tre"' in editor
    assert 'id="t-station-q"' in editor
    assert "p2-kp-1" not in editor  # another ward's station is never offered
    assert 'id="r-order"' in editor
    assert "quy tắc có số nhỏ hơn được phát trước" in editor
    assert 'id="r-slot"' in editor
    assert "Khung giờ tối đa" in editor
    existing = client.get(f"/lich/quy-tac/{waiting['id']}").text
    assert 'id="r-owner"' not in existing  # the owner is chosen when creating
    assert '"stations": ["lbn-cau-tre"]' in existing  # its station is ticked by the page
    # the programme editor: owner, drag and drop (vendored SortableJS), per-item titles
    new_programme = client.get("/lich/chuong-trinh/moi").text
    assert 'id="p-owner"' in new_programme
    assert "/vendor/sortable/Sortable.min.js" in new_programme
    assert "Kéo biểu tượng ⠿" in new_programme
    assert 'id="p-owner"' not in client.get(f"/lich/chuong-trinh/{programme['id']}").text
    assert client.get("/static/app/vendor/sortable/Sortable.min.js").status_code == 200


def test_preview_names_the_unsaved_rule_and_editor_values_reach_the_api(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = make_user(session_factory, "soanthao", Role.OPERATOR, [LBN])
    approver = make_user(session_factory, "duyetsoan", Role.APPROVER, [LBN])
    first = make_asset(session_factory, "Tin ưu tiên", minutes=10, owner_area=LBN)
    second = make_asset(session_factory, "Nhạc chiều", minutes=10, owner_area=LBN)
    urgent = create_programme(client, operator, asset_item(first), title="Ưu tiên")
    music = create_programme(client, operator, asset_item(second), title="Nhạc")
    high = rule_body(urgent["id"], daily("15:00"), stations=["lbn-cau-tre"], title="Ưu tiên 15h")
    high["tier"] = "priority"
    create_rule(client, operator, high, approver=approver)

    draft = rule_body(music["id"], daily("15:05"), stations=["lbn-cau-tre"], title="Nhạc 15h05")
    preview = ok(client.post("/api/v1/schedules/preview", json=draft, headers=operator))
    reasons = [c["reason_vi"] for c in preview["suffered"]]
    assert reasons, preview
    for reason in reasons:
        assert reason.startswith("Quy tắc đang soạn (Nhạc 15h05) lúc"), reason
        assert "Lịch 0" not in reason
        assert "lịch " in reason
        assert "(Ưu tiên 15h)" in reason

    # what the editor sends: owner area, order, slot length, single stations
    body = {**draft, "owner_area": "lbn-cau-tre", "order": -5, "slot_s": 900}
    saved = ok(client.post("/api/v1/schedules/rules", json=body, headers=operator), 201)
    assert saved["owner_area_code"] == "lbn-cau-tre"
    assert (saved["order"], saved["slot_s"]) == (-5, 900)
    login(client, "soanthao")
    page = client.get(f"/lich/quy-tac/{saved['id']}").text
    assert 'id="r-order" type="number" min="-1000" max="1000" step="1" value="-5"' in page
    slot = re.search(r'id="r-slot"[^>]*value="([^"]*)"', page)
    assert slot is not None
    assert slot.group(1) == "15"
    too_short = {**draft, "slot_s": 60}
    refused = client.post("/api/v1/schedules/rules", json=too_short, headers=operator)
    assert refused.status_code == 422
    assert refused.json()["message_vi"]
