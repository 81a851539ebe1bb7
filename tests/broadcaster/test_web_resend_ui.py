"""The broadcast page's emergency report and its "send again to those who missed it"
button in a real headless Chromium against the whole service (no simulated station:
every station is offline, so an emergency with a short window misses them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kernel.security import Role as UserRole
from tests.api import make_user
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
    site_fixture,
    wait,
)
from tests.support.loa import wait_until

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _accounts(factory: Any) -> None:
    make_user(factory, "chihuy", UserRole.ADMIN, can_emergency=True)


site = site_fixture("web-resend", simulate=None, seed=_accounts)


@pytest.fixture(scope="module")
def missed(site: Site) -> int:
    """An emergency to two offline stations that expired: finished, both missed."""
    headers = make_user(site.sessions(), "api-chihuy", UserRole.ADMIN, can_emergency=True)
    with httpx.Client(base_url=site.base_url, headers=headers, timeout=60) as http:
        sids = [
            s["sid"] for s in http.get("/api/v1/stations?area=phuong-3&limit=2").json()["items"]
        ]
        made = http.post(
            "/api/v1/broadcasts",
            json={
                "targets": {"stations": sids},
                "content": {"text": "Cảnh báo triều cường. Người dân chú ý an toàn."},
                "tier": "emergency",
                "title": "Cảnh báo triều cường",
                "expires_in_s": 1,
            },
        )
        assert made.status_code == 201, made.text
        broadcast_id = int(made.json()["id"])
        wait_until(
            lambda: http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "finished",
            timeout_s=60,
            what="the emergency expired everywhere",
        )
    return broadcast_id


@pytest.fixture(scope="module", params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def browser(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), request.param) as driver:
        yield driver


def test_the_report_lists_the_missed_stations_and_send_again_resends(
    browser: WebDriver, site: Site, missed: int
) -> None:
    width = browser.get_window_size()["width"]
    name = "phone" if width < DESKTOP[0] else "desktop"
    checker = make_user(site.sessions(), f"check-{name}", UserRole.ADMIN)

    def read() -> dict[str, Any]:
        url = f"{site.base_url}/api/v1/broadcasts/{missed}"
        body: dict[str, Any] = httpx.get(url, headers=checker, timeout=30).json()
        return body

    # a copy sent by the other width's run has expired too
    wait_until(lambda: read()["status"] == "finished", timeout_s=60, what="settled")
    before = len(read()["resends"])
    log_in(browser, site, "chihuy")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    browser.get(site.base_url + f"/phat-thanh/{missed}")
    section = browser.find_element(By.ID, "report")
    assert "Báo cáo lượt phát khẩn cấp" in section.text
    assert "Người gửi" in section.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#missed-stations tbody tr")
    assert len(rows) == 2
    assert all("trạm không nhận lệnh trước khi hết hạn" in r.text for r in rows)
    links = [a.get_attribute("href") for a in section.find_elements(By.CSS_SELECTOR, "a.button")]
    assert any(str(h).endswith("format=xlsx") for h in links)
    check_accessibility(browser)
    assert horizontal_overflow(browser) == 0
    screenshot(browser, f"broadcast-report-{name}")

    button = browser.find_element(By.ID, "resend-broadcast")
    assert button.is_displayed()
    button.click()
    dialog = browser.find_element(By.ID, "confirm-dialog")
    wait(browser, lambda d: dialog.get_attribute("open") is not None, what="the confirmation")
    assert "2 trạm" in dialog.text
    browser.find_element(By.ID, "confirm-ok").click()

    def resent(d: WebDriver) -> bool:
        lead = d.find_element(By.ID, "report").text
        return f"Số lần gửi lại\n{before + 1}" in lead or f"Số lần gửi lại {before + 1}" in lead

    wait(browser, resent, timeout_s=20, what="the page reloaded with the copy sent")
    assert browser.get_log("browser") == []
