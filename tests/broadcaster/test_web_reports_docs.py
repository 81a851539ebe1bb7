"""The reports page, `/docs` and unknown dashboard URLs in a real headless Chromium.

The report is reached from the navigation as an operator would, at desktop width and at
390 px, its chart drawn by Chart.js, its downloads answered with the session.

`/docs` is judged by what the browser renders (Swagger UI 5 reading the service's
OpenAPI 3.1), not by its status code; an unknown dashboard URL shows the dashboard's
Vietnamese 404 page, while the API's unknown URLs stay ``application/problem+json``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from broadcaster import db
from broadcaster.dispatch.models import Play, PlayStatus
from kernel.db import utcnow
from kernel.security import Role as UserRole
from stations.models import Station
from tests.api import make_user
from tests.support import browser as ui
from tests.support.browser import BROWSER_MARKS, PHONE, Site

pytestmark = BROWSER_MARKS

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _seed(factory: Any) -> None:
    """An operator of Lợi Bình Nhơn and two plays on the first day of this local month:
    7.5 minutes in the commune, 10 in Phường 2 (outside it)."""
    make_user(factory, "baocao", UserRole.OPERATOR, ["xa-loi-binh-nhon"])
    today = utcnow().astimezone(VN).date()
    start = dt.datetime.combine(today.replace(day=1), dt.time(12), VN).astimezone(dt.UTC)
    with db.session_scope(factory) as session:
        ids = {sid: id_ for sid, id_ in session.execute(select(Station.sid, Station.id))}
        for n, (sid, played_ms) in enumerate((("lbn-cau-tre", 450_000), ("p2-kp-1", 600_000))):
            window = {"planned_start": start, "planned_end": start + dt.timedelta(minutes=10)}
            proof = {"status": PlayStatus.PLAYED, "played_ms": played_ms, "updated_at": start}
            play = Play(station_id=ids[sid], source="schedule", kind="file", **window, **proof)
            play.item_id, play.title = f"bao-cao-{n}", f"Bản tin {n}"
            play.priority, play.expected_ms = 3, played_ms
            session.add(play)


webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def visit(
    _database: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Site, WebDriver]]:
    """The served site (no simulated stations) and one desktop Chromium."""
    tmp = tmp_path_factory.mktemp("web-reports-docs")
    (tmp / "site").mkdir()
    with (
        ui.serve_site(_database, tmp / "site", simulate=None, seed=_seed) as served,
        ui.chromium(tmp / "profile") as driver,
    ):
        yield served, driver


@pytest.fixture
def site(visit: tuple[Site, WebDriver]) -> Site:
    return visit[0]


@pytest.fixture
def browser(visit: tuple[Site, WebDriver]) -> WebDriver:
    return visit[1]


def test_docs_render_the_operations(browser: WebDriver, site: Site) -> None:
    browser.get(site.base_url + "/docs")
    operations = ui.wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary-path"),
        timeout_s=30,
        what="the operations rendered by Swagger UI",
    )
    paths = {op.get_attribute("data-path") or op.text for op in operations}
    assert any("/api/v1/stations" in p for p in paths), sorted(paths)[:10]
    assert "Unable to render this definition" not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper")
    assert "broadcaster" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    ui.screenshot(browser, "docs")


def test_unknown_dashboard_url_shows_the_404_page(browser: WebDriver, site: Site) -> None:
    browser.get(site.base_url + "/khong-co-trang-nay")
    ui.wait(browser, lambda d: d.title.startswith("Không tìm thấy"), what="the 404 page")
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "vi"
    assert "Không có trang này" in browser.find_element(By.TAG_NAME, "body").text
    ui.check_accessibility(browser)
    ui.screenshot(browser, "not-found")


def _open_report(driver: WebDriver, site: Site) -> None:
    """Sign in and reach the report from the navigation."""
    ui.log_in(driver, site, "baocao")
    ui.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    driver.find_element(By.CSS_SELECTOR, ".main-nav a[href='/bao-cao']").click()
    ui.wait(driver, lambda d: d.title.startswith("Báo cáo"), what="the report page")
    ui.wait(
        driver,
        lambda d: d.find_element(By.ID, "report-chart").get_attribute("data-ready") == "1",
        what="the chart drawn",
    )


def _check_report(driver: WebDriver, width: str) -> None:
    assert driver.find_element(By.ID, "total-minutes").text == "7,5"  # the decimal comma
    units = driver.find_element(By.ID, "report-units").text
    assert "Xã Lợi Bình Nhơn" in units
    assert "Phường 2" not in units  # outside the operator's commune
    assert "tổng số phút phát của mọi trạm" in driver.find_element(By.ID, "report-meaning").text
    for link_id, kind in (("export-xlsx", "spreadsheetml"), ("export-csv", "text/csv")):
        href = driver.find_element(By.ID, link_id).get_attribute("href")
        answer = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => done([r.status, r.headers.get('content-type')]));",
            href,
        )
        assert answer[0] == 200, (link_id, answer)
        assert kind in answer[1]
    ui.check_accessibility(driver)
    if width == "phone":
        assert ui.horizontal_overflow(driver) <= 1, "the report scrolls sideways at 390 px"
    assert ui.screenshot(driver, f"bao-cao-{width}").stat().st_size > 1000


def test_report_page_at_desktop_width(browser: WebDriver, site: Site) -> None:
    _open_report(browser, site)
    _check_report(browser, "desktop")


def test_report_page_at_phone_width(site: Site, tmp_path: Path) -> None:
    with ui.chromium(tmp_path / "phone", PHONE) as phone:
        # the navigation may fold away at 390 px: open the page the way the menu does
        _open_report(phone, site)
        _check_report(phone, "phone")
