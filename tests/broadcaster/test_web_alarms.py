"""The alarms dashboard in a real headless Chromium against the whole service (issue 12,
item 6): a simulated station's speaker-line fault raises an alarm that shows as a badge
in the navigation and on the overview and on the alarms page; the technician
acknowledges it with a note.  Both widths, screenshots and axe-core."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_bridge.simulator.faults import Fault
from kernel.security import Role as UserRole
from tests.api import make_user
from tests.support import browser
from tests.support.browser import Site, wait

COMMUNE = "xa-loi-binh-nhon"

pytestmark = browser.BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _accounts(factory: Any) -> None:
    make_user(factory, "kythuat", UserRole.TECHNICIAN, [COMMUNE])


site = browser.site_fixture("web-alarms", simulate=COMMUNE, seed=_accounts)


def _badge(driver: WebDriver) -> str:
    """The navigation's alarm badge after a reload ("" while there is none)."""
    driver.refresh()
    found = driver.find_elements(By.ID, "nav-alarms")
    return str(found[0].text) if found else ""


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_a_speaker_fault_is_shown_and_acknowledged_with_a_note(
    site: Site, tmp_path: Any, width: str
) -> None:
    sid = site.sids[0] if width == "desktop" else site.sids[1]
    size = browser.PHONE if width == "phone" else (1280, 1000)
    with browser.chromium(tmp_path / "profile", size) as driver:
        browser.log_in(driver, site, "kythuat")
        wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        before = _badge(driver)
        site.fleet.inject(sid, Fault.SPEAKER)
        wait(
            driver,
            lambda d: _badge(d) not in ("", before),
            timeout_s=30,
            what="the alarm badge in the navigation",
        )
        overview = driver.find_element(By.ID, "overview-alarms")
        assert "Cảnh báo đang còn" in overview.text
        browser.check_accessibility(driver)
        browser.screenshot(driver, f"tong-quan-canh-bao-{width}")

        # the alarms page, through the navigation
        driver.find_element(By.CSS_SELECTOR, "nav.main-nav a[href='/canh-bao']").click()
        wait(driver, lambda d: d.title.startswith("Cảnh báo"), what="the alarms page")
        row = driver.find_element(
            By.XPATH, f"//table[@id='alarms-table']//tr[.//code[text()='{sid}']]"
        )
        assert "Lỗi đường dây loa" in row.text
        assert "Nghiêm trọng" in row.text
        assert "không nghe được" in row.text  # plays meanwhile are not heard
        browser.check_accessibility(driver)
        if width == "phone":
            assert browser.horizontal_overflow(driver) <= 1, "the alarms page scrolls sideways"
        browser.screenshot(driver, f"canh-bao-{width}")

        # acknowledge it with a note
        note = f"Đã cử người kiểm tra đường dây ({width})"
        row.find_element(By.CSS_SELECTOR, "input[name='note']").send_keys(note)
        row.find_element(By.CSS_SELECTOR, "form[data-alarm-ack] button").click()

        def acknowledged(d: WebDriver) -> str:
            """The station's row once acknowledged (read in one script: the page reloads)."""
            text = d.execute_script(
                "const c = [...document.querySelectorAll('#alarms-table code')]"
                ".find((e) => e.textContent === arguments[0]);"
                "const tr = c && c.closest('tr');"
                "return tr && !tr.querySelector('form') ? tr.innerText : '';",
                sid,
            )
            return str(text) if "Đã xác nhận" in str(text) else ""

        done = wait(driver, acknowledged, timeout_s=20, what="the alarm acknowledged")
        assert note in done
        assert "kythuat" in done

        # the map: the station in the alarm colour
        marker = f"path.station-marker.sid-{sid}"
        found = wait(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, marker), what="the map marker"
        )
        assert "state-critical" in (found[0].get_attribute("class") or "")
        others = driver.find_elements(By.CSS_SELECTOR, "path.station-marker.state-ok")
        assert others  # the healthy stations of the commune, in the normal colour
        driver.execute_script("arguments[0].scrollIntoView()", found[0])
        browser.screenshot(driver, f"canh-bao-ban-do-{width}")

        # filters: critical and open still list it; cleared does not
        driver.get(site.base_url + "/canh-bao?muc_do=critical&trang_thai=open")
        assert sid in driver.find_element(By.ID, "alarms-table").text
        driver.get(site.base_url + "/canh-bao?trang_thai=cleared")
        assert sid not in driver.find_element(By.ID, "alarms-table").text
        browser.screenshot(driver, f"canh-bao-da-xac-nhan-{width}")
        assert driver.get_log("browser") == []
