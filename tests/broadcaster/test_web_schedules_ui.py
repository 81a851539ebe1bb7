"""The programme and rule editors' follow-ups, in a real headless Chromium.

An operator of Lợi Bình Nhơn builds a programme of two approved clips and a gap, drags
the gap to the top with the mouse (SortableJS), moves it back down with the keyboard's
↓ button, names an item, and saves: the saved order and title are the ones on screen.
Then a rule for it picks one hamlet's station through the searchable station list
(typing without diacritics), the live preview counts that single station, and the saved
rule has exactly that station as its target.  At desktop width and at 390 px, with
screenshots and the axe-core check of each page.

The three schedule pages that only list (the programmes, the rules with the day's
conflicts, and one station's week) are opened too, at both widths: their Vietnamese
headings and a seeded programme, rule and slot are shown, axe-core finds nothing
critical, nothing scrolls sideways at 390 px, and each is screenshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.security import Role as UserRole
from schedules.models import ScheduleRule
from schedules.service import programmes, targets
from tests.api import make_user
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    daily,
    gap_item,
    make_asset,
    rule_body,
)
from tests.support import browser as web

pytestmark = web.BROWSER_MARKS

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

LBN = "xa-loi-binh-nhon"
STATION = "lbn-cau-tre"
LISTED = {"programme": "Chương trình sáng của xã", "rule": "Phát sáng hằng ngày"}


def _seed(factory: Any) -> None:
    make_user(factory, "keotha", UserRole.OPERATOR, [LBN])
    make_asset(factory, "Bản tin một", minutes=1, owner_area=LBN)
    make_asset(factory, "Bản tin hai", minutes=2, owner_area=LBN)


site = web.site_fixture("web-schedules-more", simulate=None, seed=_seed)


def _check_page(driver: WebDriver, name: str) -> None:
    web.screenshot(driver, name)
    web.check_accessibility(driver)
    assert web.horizontal_overflow(driver) <= 0, name


def _click(driver: WebDriver, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _items(driver: WebDriver) -> list[str]:
    return [
        li.find_element(By.CSS_SELECTOR, ".sch-desc").text
        for li in driver.find_elements(By.CSS_SELECTOR, "#p-items > li")
    ]


def _add(
    driver: WebDriver, kind: str, asset: str | None = None, minutes: str | None = None
) -> None:
    Select(driver.find_element(By.ID, "p-kind")).select_by_value(kind)
    if asset is not None:
        Select(driver.find_element(By.ID, "p-asset")).select_by_visible_text(asset)
    if minutes is not None:
        field = driver.find_element(By.ID, "p-minutes")
        field.clear()
        field.send_keys(minutes)
    _click(driver, driver.find_element(By.ID, "p-add"))


@pytest.mark.parametrize(("size", "suffix"), [(web.DESKTOP, "desktop"), (web.PHONE, "phone")])
def test_drag_to_reorder_title_items_and_pick_a_station(
    site: web.Site, tmp_path: Path, size: tuple[int, int], suffix: str
) -> None:
    title = f"Chương trình kéo thả {suffix}"
    with web.chromium(tmp_path / "profile", size) as driver:
        web.log_in(driver, site, "keotha")
        driver.get(site.base_url + "/lich/chuong-trinh/moi")
        web.wait(driver, lambda d: d.title.startswith("Tạo chương trình"), what="the editor")
        driver.find_element(By.ID, "p-title").send_keys(title)
        _add(driver, "asset", "Bản tin một (1 phút)")
        _add(driver, "asset", "Bản tin hai (2 phút)")
        _add(driver, "gap", minutes="0,5")
        items = _items(driver)
        assert len(items) == 3, items
        assert items[2].startswith("Khoảng lặng"), items

        # drag the gap's handle above the first item, with the mouse
        handles = driver.find_elements(By.CSS_SELECTOR, "#p-items .sch-handle")
        first = driver.find_elements(By.CSS_SELECTOR, "#p-items > li")[0]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
        chain = ActionChains(driver)
        chain.click_and_hold(handles[2])
        chain.move_by_offset(0, -5)
        rise = handles[2].location["y"] - first.location["y"] + 10
        for _ in range(10):
            chain.move_by_offset(0, -rise // 10)
        chain.pause(0.3).release().perform()
        web.wait(
            driver, lambda d: _items(d)[0].startswith("Khoảng lặng"), what="the gap dragged first"
        )
        assert "Bản tin một" in _items(driver)[1]
        assert "Bản tin hai" in _items(driver)[2]
        _check_page(driver, f"chuong-trinh-keo-tha-{suffix}")

        # the keyboard way still works: ↓ moves the gap under the first clip
        _click(driver, driver.find_element(By.CSS_SELECTOR, "button[aria-label='Xuống: mục 1']"))
        assert "Bản tin một" in _items(driver)[0]
        assert _items(driver)[1].startswith("Khoảng lặng")

        # name the second clip, then save
        name = driver.find_elements(By.CSS_SELECTOR, "#p-items > li")[2].find_element(
            By.CSS_SELECTOR, "input.sch-item-title"
        )
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", name)
        name.send_keys("Tin chiều đã đặt tên")
        _click(driver, driver.find_element(By.ID, "p-save"))
        web.wait(
            driver,
            lambda d: "Đã lưu chương trình" in d.find_element(By.ID, "p-result").text,
            what="saved",
        )
        with site.sessions()() as session:
            found, _ = programmes.list_programmes(session, scope=None, q=title, limit=5)
            assert len(found) == 1
            saved = found[0]
            kinds = [(i.kind, i.title) for i in sorted(saved.items, key=lambda i: i.position)]
        assert [k for k, _ in kinds] == ["asset", "gap", "asset"]
        assert kinds[2][1] == "Tin chiều đã đặt tên"
        assert (
            driver.find_elements(By.CSS_SELECTOR, "#p-items input.sch-item-title")[1].get_attribute(
                "value"
            )
            == "Tin chiều đã đặt tên"
        )

        # a rule for one hamlet's station, found by typing without diacritics
        _click(driver, driver.find_element(By.ID, "p-make-rule"))
        web.wait(driver, lambda d: d.title.startswith("Tạo quy tắc"), what="the rule editor")
        driver.find_element(By.ID, "r-title").send_keys(f"Quy tắc một trạm {suffix}")
        Select(driver.find_element(By.ID, "w-kind")).select_by_value("daily")
        times = driver.find_element(By.ID, "w-times")
        times.clear()
        times.send_keys("10:10" if suffix == "desktop" else "10:40")
        search = driver.find_element(By.ID, "t-station-q")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", search)
        search.send_keys("cau tre")
        shown = [
            node.get_attribute("data-search")
            for node in driver.find_elements(By.CSS_SELECTOR, "#t-station-list [data-search]")
            if node.is_displayed()
        ]
        assert shown, "no station matches 'cau tre'"
        assert all("cau tre" in s for s in shown), shown
        assert "Hiện " in driver.find_element(By.ID, "t-station-count").text
        _click(driver, driver.find_element(By.CSS_SELECTOR, "label[for='t-st-lbn-cau-tre']"))
        web.wait(
            driver,
            lambda d: d.find_element(By.ID, "pv-summary").text.startswith("1 trạm"),
            what="the preview on one station",
        )
        assert "đã chọn 1" in driver.find_element(By.ID, "t-station-count").text
        _check_page(driver, f"quy-tac-chon-tram-{suffix}")
        _click(driver, driver.find_element(By.ID, "r-save"))
        web.wait(
            driver,
            lambda d: "Đã lưu quy tắc" in d.find_element(By.ID, "r-result").text,
            what="rule saved",
        )
        with site.sessions()() as session:
            rule = session.query(ScheduleRule).filter_by(title=f"Quy tắc một trạm {suffix}").one()
            chosen = targets.current_targets(session, rule)
        assert (chosen.stations, chosen.areas, chosen.groups) == (["lbn-cau-tre"], [], [])


@pytest.fixture(scope="module")
def listed(site: web.Site) -> dict[str, Any]:
    """A programme (a 2-minute clip and a 30-second gap) and a daily rule of it on the
    commune at 06:30, made by the operator and approved by a second account."""
    factory = site.sessions()
    approver = make_user(factory, "duyetds", UserRole.APPROVER, [LBN])
    operator = make_user(factory, "lapds", UserRole.OPERATOR, [LBN])
    clip = make_asset(factory, "Bản tin sáng xã", minutes=2, owner_area=LBN)
    with httpx.Client(base_url=site.base_url, timeout=30) as http:
        programme = create_programme(
            http,  # type: ignore[arg-type]  (the same calls as the test client's)
            operator,
            asset_item(clip),
            gap_item(30),
            title=LISTED["programme"],
        )
        body = rule_body(programme["id"], daily("06:30"), groups=[LBN], title=LISTED["rule"])
        rule = create_rule(http, operator, body, approver=approver)  # type: ignore[arg-type]
    return {"programme": programme, "rule": rule}


def _heading(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


@pytest.mark.parametrize(("size", "suffix"), [(web.DESKTOP, "desktop"), (web.PHONE, "phone")])
def test_programme_rule_and_station_week_pages(
    site: web.Site,
    listed: dict[str, Any],
    tmp_path: Path,
    size: tuple[int, int],
    suffix: str,
) -> None:
    with web.chromium(tmp_path / "profile", size) as driver:
        web.log_in(driver, site, "keotha")
        web.wait(driver, lambda d: "/dang-nhap" not in d.current_url, what="signed in")

        driver.get(site.base_url + "/lich/chuong-trinh")
        web.wait(driver, lambda d: d.title.startswith("Chương trình phát"), what="programmes")
        assert _heading(driver) == "Chương trình phát"
        row = driver.find_element(
            By.XPATH, f"//table//tr[td/a[normalize-space()='{LISTED['programme']}']]"
        )
        assert "2 phút 30 giây" in row.text, row.text  # the total duration
        link = row.find_element(By.TAG_NAME, "a").get_attribute("href") or ""
        assert link.endswith(f"/lich/chuong-trinh/{listed['programme']['id']}"), link
        tabs = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "nav.sch-tabs a")]
        assert tabs == ["Lịch tuần", "Chương trình", "Quy tắc phát và xung đột"], tabs
        _check_page(driver, f"lich-chuong-trinh-{suffix}")

        driver.get(site.base_url + "/lich/quy-tac")
        web.wait(driver, lambda d: d.title.startswith("Quy tắc phát"), what="rules")
        assert _heading(driver) == "Quy tắc phát và xung đột"
        row = driver.find_element(
            By.XPATH, f"//table[@id='rules-table']//tr[td/a[normalize-space()='{LISTED['rule']}']]"
        )
        assert LISTED["programme"] in row.text, row.text
        assert "Đã duyệt" in row.text, row.text
        assert "approved" not in row.text
        assert driver.find_element(By.ID, "h-conflicts").text.startswith("Xung đột ngày")
        _check_page(driver, f"lich-quy-tac-{suffix}")

        driver.get(site.base_url + f"/lich?tram={STATION}")
        web.wait(driver, lambda d: d.title.startswith("Lịch phát tuần"), what="the week")
        heading = _heading(driver)
        assert heading.startswith("Lịch phát tuần: Trạm truyền thanh Ấp Cầu Tre"), heading
        assert heading.endswith(f"({STATION})"), heading
        days = driver.find_elements(By.CSS_SELECTOR, "#week section.sch-day")
        assert len(days) == 7
        slots = driver.find_elements(
            By.CSS_SELECTOR, f"#week .sch-block[data-rule='{listed['rule']['id']}']"
        )
        assert len(slots) == 7, [s.text for s in slots]  # every day of the week
        first = slots[0].text
        assert first.startswith("06:30–"), first
        assert LISTED["rule"] in first, first
        _check_page(driver, f"lich-tram-tuan-{suffix}")
