"""The whole operator journey of issue 11 in a real headless Chromium, at desktop width
and at 390 px, with no API call by hand (everything through the pages):

the operator of Lợi Bình Nhơn uploads an MP3 and records a clip (Chromium's fake
microphone), composes a text-to-speech bulletin and listens to it; a second account (the
commune's approver) approves the MP3 and rejects the bulletin with a reason, which the
author then sees; the operator builds a programme with the MP3 and a gap (total
duration shown) and a weekly rule for Ấp Cầu Tre, sees the conflict with the 05:00 relay
chain before saving (saving is refused until it is acknowledged), moves the rule to
a free hour and saves it; the approver sees what approving does and approves it; the operator
opens Ấp Cầu Tre's page, clicks "Ngày mai trạm phát gì?" and finds the programme in
tomorrow's playlist; finally the month's XLSX report is downloaded by the browser and
opened with openpyxl, and its minutes are checked against the play log.  A screenshot
of each step (``var/screenshots/hanh-trinh-<step>-<width>.png``) and the axe check on
each page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from broadcaster import db
from broadcaster.dispatch.models import Play, PlayStatus
from kernel.db import utcnow
from kernel.security import Role
from schedules import seed as chain_seed
from schedules.calendars import solar_to_lunar
from stations import service as stations_service
from stations.models import Station
from tests.api import make_user
from tests.broadcaster.test_web_library_ui import _attr, _media, _mp3, _review, _saved, _text
from tests.support.browser import (
    BROWSER_MARKS,
    DESKTOP,
    PHONE,
    Site,
    check_accessibility,
    chromium,
    horizontal_overflow,
    log_in,
    screenshot,
    serve_site,
    wait,
)

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
openpyxl = pytest.importorskip("openpyxl")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

VN = ZoneInfo("Asia/Ho_Chi_Minh")
WEEKDAYS_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")
COMMUNE = "xa-loi-binh-nhon"
HAMLET_STATION = "lbn-cau-tre"
#: plays of this month in the play log: (station, minutes played); the last is outside
#: the commune and must not be in the operator's report
PLAYS = (("lbn-cau-tre", 7.5), ("lbn-cau-tre", 3.0), ("lbn-ngai-loi-a", 12.25), ("p2-kp-1", 10))


def _seed(factory: Any) -> None:
    make_user(factory, "hanhtrinh", Role.OPERATOR, [COMMUNE])
    make_user(factory, "duyetlich", Role.APPROVER, [COMMUNE])
    today = utcnow().astimezone(VN).date()
    start = dt.datetime.combine(today.replace(day=1), dt.time(12), VN).astimezone(dt.UTC)
    with db.session_scope(factory) as session:
        ids = dict(session.execute(select(Station.sid, Station.id)).all())
        for n, (sid, minutes) in enumerate(PLAYS):
            played_ms = int(minutes * 60_000)
            at = start + dt.timedelta(minutes=20 * n)
            play = Play(
                station_id=ids[sid],
                source="schedule",
                kind="file",
                planned_start=at,
                planned_end=at + dt.timedelta(minutes=15),
                status=PlayStatus.PLAYED,
                played_ms=played_ms,
                updated_at=at,
            )
            play.item_id, play.title = f"hanh-trinh-{n}", f"Bản tin {n}"
            play.priority, play.expected_ms = 3, played_ms
            session.add(play)


@pytest.fixture(scope="module")
def site(_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The whole service, Lợi Bình Nhơn simulated, and the 05:00/17:00 relay chain."""
    tmp = tmp_path_factory.mktemp("web-journey")
    with serve_site(_database, tmp, simulate=COMMUNE, seed=_seed) as served:
        chain_seed.load(served.sessions(), served.app.state.media_library, tz=VN)
        yield served


def _step(driver: WebDriver, name: str, width: str) -> None:
    """Each step: a screenshot, the axe check, nothing wider than the window."""
    screenshot(driver, f"hanh-trinh-{name}-{width}")
    check_accessibility(driver)
    assert horizontal_overflow(driver) <= 1, f"{name} scrolls sideways at {width}"


def _sign_in(driver: WebDriver, site: Site, username: str) -> None:
    log_in(driver, site, username)
    wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")


def _menu(driver: WebDriver, href: str, title: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f".main-nav a[href='{href}']").click()
    wait(driver, lambda d: d.title.startswith(title), what=title)


def _click(driver: WebDriver, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _check_label(driver: WebDriver, text: str) -> None:
    label = driver.find_element(By.XPATH, f"//label[normalize-space()='{text}']")
    box = driver.find_element(By.ID, label.get_attribute("for"))
    if not box.is_selected():
        _click(driver, label)


def _decide(driver: WebDriver, title: str, decision: str, note: str = "") -> None:
    card = _review(driver, title)
    if note:
        card.find_element(By.CSS_SELECTOR, "input[name='note']").send_keys(note)
    _click(driver, card.find_element(By.CSS_SELECTOR, f"button[data-decision='{decision}']"))
    wait(
        driver,
        lambda d: "lib-decided" in (_review(d, title).get_attribute("class") or ""),
        what=f"{decision} {title}",
    )


def _library_work(driver: WebDriver, mp3: Path, titles: dict[str, str], width: str) -> None:
    """Upload, record (re-record once), compose a spoken bulletin and listen to it."""
    _menu(driver, "/thu-vien", "Thư viện âm thanh")
    driver.find_element(By.ID, "up-file").send_keys(str(mp3))
    driver.find_element(By.ID, "up-title").clear()
    driver.find_element(By.ID, "up-title").send_keys(titles["upload"])
    _click(driver, driver.find_element(By.ID, "up-submit"))
    assert "LUFS" in _saved(driver, "up-result")
    for _attempt in range(2):
        _click(driver, driver.find_element(By.ID, "rec-start"))
        wait(
            driver,
            lambda d: float(_attr(d, "rec-level", "data-peak") or 0) > 0.01,
            what="the level meter moving",
        )
        time.sleep(1.5)  # a clip long enough to keep (not an assertion)
        _click(driver, driver.find_element(By.ID, "rec-stop"))
        wait(driver, lambda d: d.find_element(By.ID, "rec-audio").is_displayed())
    driver.find_element(By.ID, "rec-title-input").send_keys(titles["record"])
    _click(driver, driver.find_element(By.ID, "rec-save"))
    _saved(driver, "rec-result")
    driver.find_element(By.ID, "tts-text").send_keys(
        "Lúc 7 giờ 30 ngày 5/12, UBND xã tổ chức tiêm chủng tại ấp Cầu Tre."
    )
    driver.find_element(By.ID, "tts-title-input").send_keys(titles["tts"])
    _click(driver, driver.find_element(By.ID, "tts-listen"))
    wait(
        driver,
        lambda d: d.find_element(By.ID, "tts-preview").is_displayed(),
        timeout_s=60,
        what="the spoken preview",
    )
    assert "Ủy ban nhân dân" in _text(driver, "tts-normalized")
    wait(driver, lambda d: _media(d, "tts-audio", "duration") > 2, what="the preview loaded")
    _click(driver, driver.find_element(By.ID, "tts-save"))
    _saved(driver, "tts-result")
    _step(driver, "1-thu-vien", width)


def _programme(driver: WebDriver, titles: dict[str, str], width: str) -> None:
    """A programme of the approved MP3 and a 30-second gap, with its total duration."""
    _menu(driver, "/lich", "Lịch phát tuần")
    _step(driver, "4-lich-tuan", width)
    driver.find_element(By.LINK_TEXT, "Chương trình").click()
    wait(driver, lambda d: d.title.startswith("Chương trình phát"))
    driver.find_element(By.ID, "new-programme").click()
    wait(driver, lambda d: d.title.startswith("Tạo chương trình"))
    driver.find_element(By.ID, "p-title").send_keys(titles["programme"])
    Select(driver.find_element(By.ID, "p-kind")).select_by_value("asset")
    asset = Select(driver.find_element(By.ID, "p-asset"))
    # only approved audio is offered: the upload, not the rejected bulletin
    offered = [o.text for o in asset.options]
    assert any(titles["upload"] in o for o in offered), offered
    assert not any(titles["tts"] in o for o in offered), offered
    asset.select_by_index(next(i for i, o in enumerate(offered) if titles["upload"] in o))
    _click(driver, driver.find_element(By.ID, "p-add"))
    Select(driver.find_element(By.ID, "p-kind")).select_by_value("gap")
    minutes = driver.find_element(By.ID, "p-minutes")
    minutes.clear()
    minutes.send_keys("0,5")
    _click(driver, driver.find_element(By.ID, "p-add"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#p-items li")) == 2
    assert _text(driver, "p-total") == "35 giây"  # the 5-second MP3 and the gap
    _click(driver, driver.find_element(By.ID, "p-save"))
    wait(driver, lambda d: "Đã lưu chương trình" in _text(d, "p-result"), timeout_s=30)
    assert "tổng 35 giây" in _text(driver, "p-result")
    _step(driver, "5-chuong-trinh", width)
    _click(driver, driver.find_element(By.ID, "p-make-rule"))
    wait(driver, lambda d: d.title.startswith("Tạo quy tắc phát"))


def _preview_says(driver: WebDriver, text: str) -> bool:
    return text in _text(driver, "pv-status")


def _rule(
    driver: WebDriver, titles: dict[str, str], tomorrow: dt.date, clear_at: str, width: str
) -> None:
    """A weekly rule on tomorrow's weekday for Ấp Cầu Tre: at 05:00 it clashes with the
    relay chain, shown before saving; saving is refused until acknowledged; at `clear_at`
    it is clear and saved (a draft)."""
    driver.find_element(By.ID, "r-title").send_keys(titles["rule"])
    Select(driver.find_element(By.ID, "w-kind")).select_by_value("weekly")
    _check_label(
        driver,
        {
            0: "Thứ Hai",
            1: "Thứ Ba",
            2: "Thứ Tư",
            3: "Thứ Năm",
            4: "Thứ Sáu",
            5: "Thứ Bảy",
            6: "Chủ Nhật",
        }[tomorrow.weekday()],
    )
    times = driver.find_element(By.ID, "w-times")
    times.clear()
    times.send_keys("05:00")
    _check_label(driver, "Ấp Cầu Tre")
    wait(driver, lambda d: _preview_says(d, "xem bên dưới"), timeout_s=30, what="the conflict")
    conflicts = _text(driver, "pv-conflicts")
    assert "Bị" in conflicts, conflicts
    assert "trạm" in conflicts, conflicts
    assert tomorrow.strftime("%d/%m") in _text(driver, "pv-occurrences")
    _step(driver, "6-quy-tac-xung-dot", width)
    _click(driver, driver.find_element(By.ID, "r-save"))
    wait(driver, lambda d: "Chưa lưu" in _text(d, "r-result"), what="saving refused")
    assert "xung đột" in _text(driver, "r-result")
    times.clear()
    times.send_keys(clear_at)
    wait(driver, lambda d: _preview_says(d, "Không có xung đột"), timeout_s=30)
    assert clear_at in _text(driver, "pv-placements")
    _click(driver, driver.find_element(By.ID, "r-save"))
    wait(driver, lambda d: "Đã lưu quy tắc" in _text(d, "r-result"), timeout_s=30)
    assert "chờ duyệt" in _text(driver, "r-result")
    _step(driver, "7-quy-tac-da-luu", width)


def _download(driver: WebDriver, link_id: str, folder: Path) -> Path:
    """Click a download link; the browser saves the file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)}
    )
    _click(driver, driver.find_element(By.ID, link_id))
    done = wait(
        driver,
        lambda d: [p for p in folder.glob("*.xlsx") if p.stat().st_size > 0],
        timeout_s=30,
        what="the downloaded workbook",
    )
    time.sleep(0.5)  # let Chromium finish renaming the file (not an assertion)
    return Path(done[0])


def _play_log_minutes(site: Site, area_code: str) -> float:
    """The month's played minutes of the stations in the area, straight from the play log."""
    today = utcnow().astimezone(VN).date()
    first = dt.datetime.combine(today.replace(day=1), dt.time(), VN).astimezone(dt.UTC)
    with site.sessions()() as session:
        area = stations_service.get_area(session, area_code)
        ids = stations_service.station_ids_in(
            session, stations_service.subtree_ids(session, [area.id])
        )
        played = session.scalars(
            select(Play.played_ms).where(
                Play.station_id.in_(ids),
                Play.planned_start >= first,
                Play.status.in_([PlayStatus.PLAYED, PlayStatus.PARTIAL]),
            )
        )
        return round(sum(ms or 0 for ms in played) / 60_000, 2)


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_operator_journey(site: Site, size: tuple[int, int], tmp_path: Path) -> None:
    width = "desktop" if size == DESKTOP else "phone"
    titles = {
        "upload": f"Thông báo họp dân Cầu Tre ({width})",
        "record": f"Ghi âm nhắc lịch ({width})",
        "tts": f"Bản tin tiêm chủng đọc tự động ({width})",
        "programme": f"Chương trình sáng Cầu Tre ({width})",
        "rule": f"Phát sáng hằng tuần Cầu Tre ({width})",
    }
    reason = "Sai ngày tiêm, đề nghị sửa lại"
    tomorrow = utcnow().astimezone(VN).date() + dt.timedelta(days=1)
    clear_at = "09:00" if width == "desktop" else "10:00"  # the two runs share the site
    with chromium(tmp_path / "profile", size) as driver:
        # 1. the operator: upload, record, spoken bulletin
        _sign_in(driver, site, "hanhtrinh")
        _library_work(driver, _mp3(tmp_path, seed=size[0] + 7), titles, width)

        # 2. the approver: approve the MP3, reject the spoken bulletin with a reason
        _sign_in(driver, site, "duyetlich")
        _menu(driver, "/duyet", "Duyệt nội dung")
        _decide(driver, titles["upload"], "approve")
        _decide(driver, titles["tts"], "reject", reason)
        _step(driver, "2-duyet", width)

        # 3. the author sees the reason
        _sign_in(driver, site, "hanhtrinh")
        _menu(driver, "/thu-vien", "Thư viện âm thanh")
        row = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{titles['tts']}']]")
        assert f"Lý do từ chối: {reason}" in row.text
        _step(driver, "3-ly-do-tu-choi", width)

        # 4-7. the programme and its weekly rule, the conflict shown before saving
        _programme(driver, titles, width)
        _rule(driver, titles, tomorrow, clear_at, width)

        # 8. the approver sees what approving does, and approves the rule
        _sign_in(driver, site, "duyetlich")
        _menu(driver, "/duyet", "Duyệt nội dung")
        card = _review(driver, titles["rule"])
        assert "không gây xung đột" in card.text
        _decide(driver, titles["rule"], "approve")
        _step(driver, "8-duyet-lich", width)

        # 9. tomorrow at Ấp Cầu Tre, one click from the station page
        _sign_in(driver, site, "hanhtrinh")
        _menu(driver, "/tram", "Danh sách trạm")
        search = driver.find_element(By.ID, "f-q")
        search.send_keys("cau tre")  # without diacritics
        search.submit()
        wait(driver, lambda d: "q=cau" in d.current_url, what="the filtered list")
        link = driver.find_element(By.CSS_SELECTOR, f"a[href='/tram/{HAMLET_STATION}']")
        _click(driver, link)
        wait(driver, lambda d: d.find_elements(By.ID, "tomorrow-link"), what="the station page")
        _click(driver, driver.find_element(By.ID, "tomorrow-link"))
        wait(driver, lambda d: d.title.startswith("Lịch phát"), what="tomorrow's playlist")
        day = _text(driver, "day-playlist")
        assert tomorrow.strftime("%d/%m/%Y") in driver.title
        assert titles["upload"] in day, day
        line = next(r for r in day.splitlines() if titles["upload"] in r)
        assert line.startswith(clear_at), line
        _step(driver, "9-ngay-mai", width)

        # 10. the month's report, downloaded as XLSX and checked against the play log
        _menu(driver, "/bao-cao", "Báo cáo")
        # the simulated stations may be playing the relay chain meanwhile: the report
        # lies between the play log read before and after the download
        before = _play_log_minutes(site, COMMUNE)
        workbook = openpyxl.load_workbook(_download(driver, "export-xlsx", tmp_path / "dl"))
        after = _play_log_minutes(site, COMMUNE)
        sheet = workbook.active
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[1][4] == "Số phút phát", rows[1]
        body = [r for r in rows[2:-1] if r[0]]
        assert {r[0] for r in body} == {COMMUNE}, body  # only the operator's commune
        assert rows[-1][0] == "Tổng"
        assert before >= 7.5 + 3.0 + 12.25  # the seeded plays of this month
        total = sum(float(r[4]) for r in body)
        assert before - 0.01 <= total <= after + 0.01, (before, total, after)
        assert float(rows[-1][4]) == pytest.approx(total, abs=0.01)
        assert sum(int(r[5]) for r in body) >= 3
        _step(driver, "10-bao-cao", width)


def _set(driver: WebDriver, element_id: str, value: str) -> None:
    """Set a field as typing would (date and time pickers differ between locales)."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));",
        element_id,
        value,
    )


def _occurs(driver: WebDriver, hhmm: str, day: dt.date) -> bool:
    lines = _text(driver, "pv-occurrences").splitlines()
    return any(line.startswith(hhmm) and day.strftime("%d/%m") in line for line in lines)


def test_editors_every_recurrence_form_relays_and_spoken_text(site: Site, tmp_path: Path) -> None:
    """The programme editor with a relay, a gap and text read aloud (total shown, the
    text's duration once spoken); the rule editor's preview for every recurrence form,
    each expected to fire tomorrow, and a skipped date that removes it."""
    tomorrow = utcnow().astimezone(VN).date() + dt.timedelta(days=1)
    lunar = solar_to_lunar(tomorrow)
    with chromium(tmp_path / "profile") as driver:
        _sign_in(driver, site, "hanhtrinh")
        driver.get(site.base_url + "/lich/chuong-trinh/moi")
        wait(driver, lambda d: d.title.startswith("Tạo chương trình"))
        driver.find_element(By.ID, "p-title").send_keys("Tiếp sóng và thông báo")
        Select(driver.find_element(By.ID, "p-kind")).select_by_value("relay")
        Select(driver.find_element(By.ID, "p-source")).select_by_index(0)
        minutes = driver.find_element(By.ID, "p-minutes")
        minutes.clear()
        minutes.send_keys("2")
        _click(driver, driver.find_element(By.ID, "p-add"))
        Select(driver.find_element(By.ID, "p-kind")).select_by_value("text")
        driver.find_element(By.ID, "p-text").send_keys("Kính mời bà con dự họp lúc 8 giờ.")
        _click(driver, driver.find_element(By.ID, "p-add"))
        assert _text(driver, "p-total").startswith("2 phút + phần văn bản đọc")
        _click(driver, driver.find_element(By.ID, "p-save"))
        wait(driver, lambda d: "Đã lưu chương trình" in _text(d, "p-result"), timeout_s=60)
        items = _text(driver, "p-items")
        assert "Tiếp sóng:" in items
        assert "Văn bản đọc tự động" in items
        assert "đọc khi lưu" not in items  # spoken now: its duration is known
        _click(driver, driver.find_element(By.ID, "p-make-rule"))
        wait(driver, lambda d: d.title.startswith("Tạo quy tắc phát"))
        driver.find_element(By.ID, "r-title").send_keys("Mọi kiểu lặp")
        _check_label(driver, "Ấp Cầu Tre")
        forms: list[tuple[str, str, dict[str, str]]] = [
            ("daily", "06:21", {}),
            ("weekly", "06:22", {}),
            ("monthly", "06:23", {"w-mdays": str(tomorrow.day)}),
            ("every_n_days", "06:24", {"w-n": "1", "w-anchor": tomorrow.isoformat()}),
            ("lunar", "06:25", {"w-lother": str(lunar.day)}),
            ("rrule", "06:26", {"w-rrule": "FREQ=DAILY"}),
            ("once", "06:27", {"w-at": f"{tomorrow.isoformat()}T06:27"}),
        ]
        for kind, hhmm, fields in forms:
            Select(driver.find_element(By.ID, "w-kind")).select_by_value(kind)
            if kind == "weekly":
                _check_label(driver, WEEKDAYS_VI[tomorrow.weekday()])
            _set(driver, "w-times", hhmm)
            for field_id, value in fields.items():
                _set(driver, field_id, value)
            wait(driver, lambda d, h=hhmm: _occurs(d, h, tomorrow), timeout_s=30, what=kind)
        Select(driver.find_element(By.ID, "w-kind")).select_by_value("daily")
        _set(driver, "w-times", "06:28")
        wait(driver, lambda d: _occurs(d, "06:28", tomorrow), timeout_s=30, what="daily again")
        _set(driver, "w-skip", tomorrow.isoformat())
        wait(
            driver,
            lambda d: not _occurs(d, "06:28", tomorrow) and "06:28" in _text(d, "pv-occurrences"),
            timeout_s=30,
            what="tomorrow skipped",
        )
        _set(driver, "w-times", "25:99")
        wait(driver, lambda d: "bad-text" in _attr(d, "pv-status", "class"), what="bad time")
        assert "không hợp lệ" in _text(driver, "pv-status")  # the API's Vietnamese message
        screenshot(driver, "quy-tac-moi-kieu-lap-desktop")
        check_accessibility(driver)
