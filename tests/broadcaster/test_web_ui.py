"""The dashboard in a real headless Chromium against the whole service.

A real Mosquitto, the app in role "all" (API, pages and worker) served by uvicorn in a
thread, and the seven stations of Lợi Bình Nhơn simulated; Debian's ``chromium`` and
``chromium-driver`` driven by Selenium with an explicit driver path (Selenium Manager
downloads nothing).  Skipped, with the reason, when Chromium is not installed
(``scripts/system-deps.sh --with-browser``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from kernel.security import Role as UserRole
from tests.api import make_user
from tests.support.browser import (
    BROWSER_MARKS,
    PHONE,
    Site,
    check_accessibility,
    chromium,
    horizontal_overflow,
    log_in,
    screenshot,
    site_fixture,
    wait,
)

COMMUNE = "xa-loi-binh-nhon"

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _accounts(factory: Any) -> None:
    make_user(factory, "chihuy", UserRole.ADMIN, can_emergency=True)
    make_user(factory, "xem", UserRole.VIEWER, ["tan-an"])


site = site_fixture("web-ui", simulate=COMMUNE, seed=_accounts)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_login_and_overview_shows_the_stations_online(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "chihuy", "mat khau sai")
    error = wait(browser, lambda d: d.find_elements(By.ID, "login-error"), what="login error")
    assert "Sai tên đăng nhập hoặc mật khẩu" in error[0].text
    browser.get_log("browser")  # drop the expected 401 of the wrong password
    log_in(browser, site, "chihuy")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "vi"
    assert "chihuy" in browser.find_element(By.CSS_SELECTOR, "header.site").text
    assert text_of(browser, "total-online") == str(len(site.sids))
    assert text_of(browser, "total-stations") == "108"
    row = browser.find_element(
        By.XPATH, "//tbody[@id='units-body']/tr[th/a[text()='Xã Lợi Bình Nhơn']]"
    )
    assert f"{len(site.sids)}/{len(site.sids)}" in row.text
    # the page refreshes itself from JSON without reloading
    marker = browser.execute_script(
        "window.__noReload = 1; return document.getElementById('updated').textContent"
    )
    time.sleep(1.1)
    browser.execute_script("document.dispatchEvent(new Event('visibilitychange'))")
    wait(browser, lambda d: text_of(d, "updated") != marker, what="the overview refreshed")
    assert browser.execute_script("return window.__noReload") == 1
    assert text_of(browser, "total-online") == str(len(site.sids))
    assert browser.get_log("browser") == []  # no CSP violation, no script error


def test_emergency_text_broadcast_to_one_commune(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "chihuy")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    browser.get(site.base_url + "/phat-thanh")
    form = browser.find_element(By.ID, "broadcast-form")
    browser.find_element(By.ID, "tier-emergency").click()
    assert "emergency" in (form.get_attribute("class") or "")  # visually distinct
    assert text_of(browser, "send-broadcast") == "Phát khẩn cấp ngay"
    browser.find_element(By.CSS_SELECTOR, "input[name='target-mode'][value='areas']").click()
    browser.find_element(By.CSS_SELECTOR, f"input[name='areas'][value='{COMMUNE}']").click()
    browser.find_element(By.ID, "text").send_keys("Cảnh báo triều cường. Người dân chú ý an toàn.")
    browser.find_element(By.ID, "title").send_keys("Cảnh báo triều cường")
    browser.find_element(By.ID, "send-broadcast").click()
    dialog = browser.find_element(By.ID, "confirm-dialog")
    wait(browser, lambda d: dialog.get_attribute("open") is not None, what="the confirmation")
    assert "PHÁT KHẨN CẤP" in dialog.text
    assert "Xã Lợi Bình Nhơn" in dialog.text
    browser.find_element(By.ID, "confirm-ok").click()

    wait(browser, lambda d: d.find_element(By.ID, "progress").is_displayed(), what="progress")
    assert text_of(browser, "progress-title") == "Cảnh báo triều cường"
    total = str(len(site.sids))
    wait(browser, lambda d: text_of(d, "count-total") == total, what="the station count")
    wait(
        browser,
        lambda d: text_of(d, "count-SUCCEEDED") == total,
        timeout_s=60,
        what="SUCCEEDED at every station of the commune",
    )
    assert text_of(browser, "count-RECEIVED") == total
    assert text_of(browser, "count-FAILED") == "0"
    assert text_of(browser, "count-EXPIRED") == "0"

    def rows_done(d: WebDriver) -> dict[str, str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#progress-stations tbody tr")
        found = {r.get_attribute("data-sid"): r.get_attribute("data-status") for r in rows}
        return found if set(found.values()) == {"SUCCEEDED"} else {}

    per_station = wait(browser, rows_done, timeout_s=10, what="every station row SUCCEEDED")
    assert sorted(per_station) == site.sids
    wait(
        browser,
        lambda d: "Đã phát thành công trên tất cả" in text_of(d, "progress-state"),
        what="the event stream's end",
    )
    wait(
        browser,
        lambda d: not d.find_element(By.ID, "stop-broadcast").is_displayed(),
        what="no Stop button once every station finished",
    )
    # the follow-up page of the same broadcast
    browser.find_element(By.ID, "progress-link").click()
    wait(browser, lambda d: "/phat-thanh/" in d.current_url, what="the broadcast's page")
    wait(browser, lambda d: text_of(d, "count-SUCCEEDED") == total, what="its final counts")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Cảnh báo triều cường"
    assert browser.get_log("browser") == []


def test_station_page_pings_and_shows_the_clock_offset(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "chihuy")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    sid = site.sids[0]
    browser.get(site.base_url + f"/tram/{sid}")
    assert text_of(browser, "station-online") == "Trực tuyến"
    browser.find_element(By.CSS_SELECTOR, "button[data-command='ping']").click()
    dialog = browser.find_element(By.ID, "confirm-dialog")
    wait(browser, lambda d: dialog.get_attribute("open") is not None, what="the confirmation")
    browser.find_element(By.ID, "confirm-ok").click()
    result = wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "command-result").get_attribute("data-status") == "SUCCEEDED"
            and d.find_element(By.ID, "command-result")
        ),
        timeout_s=20,
        what="the ping answered",
    )
    assert "Kiểm tra kết nối: Thành công" in result.text
    assert "lệch đồng hồ" in result.text
    assert browser.get_log("browser") == []


def test_viewer_does_not_get_the_broadcast_form(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "xem")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    nav = browser.find_element(By.CSS_SELECTOR, "nav.main-nav").text
    assert "Tổng quan" in nav
    assert "Phát thanh" not in nav
    browser.get(site.base_url + "/phat-thanh")
    assert "không có quyền phát thanh" in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_elements(By.ID, "broadcast-form") == []
    browser.get(site.base_url + f"/tram/{site.sids[0]}")
    assert browser.find_elements(By.ID, "commands") == []


PAGES = {
    "tong-quan": "/",
    "tram": "/tram",
    "tram-chi-tiet": "/tram/{sid}",
    "phat-thanh": "/phat-thanh",
    "nhat-ky": "/nhat-ky",
    "canh-bao": "/canh-bao",
    "bao-cao": "/bao-cao",
}


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_is_accessible_fits_a_phone_and_is_screenshot(
    site: Site, tmp_path: Any, width: str
) -> None:
    """Each dashboard page: no critical axe-core violation, no sideways scrolling at
    390 px, a screenshot in the README's folder."""
    size = PHONE if width == "phone" else (1280, 1000)
    with chromium(tmp_path / "profile", size) as driver:
        log_in(driver, site, "chihuy")
        wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        for name, path in PAGES.items():
            driver.get(site.base_url + path.format(sid=site.sids[0]))
            wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
            assert "/dang-nhap" not in driver.current_url, name
            check_accessibility(driver)
            if width == "phone":
                assert horizontal_overflow(driver) <= 1, f"{name} scrolls sideways at 390 px"
            assert screenshot(driver, f"{name}-{width}").stat().st_size > 1000
