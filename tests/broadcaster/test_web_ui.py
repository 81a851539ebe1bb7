"""The dashboard in a real headless Chromium against the whole service.

A real Mosquitto, the app in role "all" (API, pages and worker) served by uvicorn in a
thread, and the seven stations of Lợi Bình Nhơn simulated; Debian's ``chromium`` and
``chromium-driver`` driven by Selenium with an explicit driver path (Selenium Manager
downloads nothing).  Skipped, with the reason, when Chromium is not installed
(``scripts/system-deps.sh --with-browser``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Environment, Settings
from firmware_bridge.simulator.fleet import FleetConfig, FleetThread
from firmware_bridge.simulator.station import SimSettings, StationSpec
from kernel.security import Role as UserRole
from kernel.signals import plan_changed
from stations import service as stations_service
from stations import tan_an
from stations.models import Station, StationState
from tests.api import PASSWORD, make_user
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto, find_mosquitto, free_port

CHROMIUM = os.environ.get("BROADCASTER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BROADCASTER_CHROMEDRIVER", "/usr/bin/chromedriver")
COMMUNE = "xa-loi-binh-nhon"
SECRET = "test-secret-key-0123456789abcdef-0123456789"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason=f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
        "run scripts/system-deps.sh --with-browser",
    ),
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class Site:
    base_url: str
    app: Any
    sids: list[str]


@pytest.fixture(scope="module")
def site(_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web-ui")
    _database.reset()
    broker = Mosquitto(tmp / "broker").start()
    port = free_port()
    settings = Settings(
        environment=Environment.TEST,
        database_url=_database.url_for_test(tmp),
        media_dir=tmp / "media",
        secret_key=SECRET,
        mqtt_url=broker.url,
        mqtt_dynsec=False,
        public_base_url=f"http://127.0.0.1:{port}",
    )
    app = create_app(settings, role=Role.ALL)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    fleet: FleetThread | None = None
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=30, what="server")
        assert thread.is_alive(), "the service did not start"
        factory = app.state.sessionmaker
        with db.session_scope(factory) as session:
            tan_an.load(session)
            plan_changed(session, "web ui test seed")
            commune = stations_service.get_area(session, COMMUNE)
            ids = stations_service.subtree_ids(session, [commune.id])
            sids = list(session.scalars(select(Station.sid).where(Station.area_id.in_(ids))))
        make_user(factory, "chihuy", UserRole.ADMIN, can_emergency=True)
        make_user(factory, "xem", UserRole.VIEWER, ["tan-an"])
        fleet = FleetThread(
            FleetConfig(mqtt_url=broker.url, state_dir=tmp / "sim", settings=SimSettings()),
            [StationSpec(sid) for sid in sids],
        )
        fleet.start(timeout_s=30)

        def all_online() -> bool:
            with factory() as session:
                online = session.scalars(
                    select(Station.sid)
                    .join(StationState, StationState.station_id == Station.id)
                    .where(StationState.online.is_(True))
                ).all()
            return set(online) == set(sids)

        wait_until(all_online, timeout_s=30, what="the commune's stations online")
        yield Site(base_url=f"http://127.0.0.1:{port}", app=app, sids=sorted(sids))
    finally:
        if fleet is not None:
            fleet.stop()
        server.should_exit = True
        thread.join(20)
        broker.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
        "--lang=vi-VN",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, predicate: Any, timeout_s: float = 15, what: str = "") -> Any:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(
        lambda d: predicate(d), message=what
    )


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def log_in(driver: WebDriver, site: Site, username: str, password: str = PASSWORD) -> None:
    driver.delete_all_cookies()
    driver.get(site.base_url + "/")
    wait(driver, lambda d: "/dang-nhap" in d.current_url, what="redirect to the login page")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()


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
