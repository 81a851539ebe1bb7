"""The alarms dashboard in a real headless Chromium against the whole service (issue 12,
item 6): a simulated station's speaker-line fault raises an alarm that shows as a badge
in the navigation and on the overview and on the alarms page; the technician
acknowledges it with a note; the availability view over a chosen period.  Both widths,
screenshots and axe-core."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from broadcaster import db
from firmware_bridge.simulator.faults import Fault
from kernel.security import Role as UserRole
from stations import service as stations_service
from stations.models import ConnectionCause, StationConnection
from tests.api import make_user
from tests.support import browser
from tests.support.browser import Site, wait

COMMUNE, COMMUNE_NAME = "xa-loi-binh-nhon", "Xã Lợi Bình Nhơn"

pytestmark = browser.BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
#: The day of the commune's seeded connection history (before the simulator's own).
PAST_DAY = dt.datetime.now(TZ).date() - dt.timedelta(days=2)
#: Hours each station was connected that day: the first 6, the others 12.
FIRST_HOURS, OTHER_HOURS = 6, 12


def _accounts(factory: Any) -> None:
    make_user(factory, "kythuat", UserRole.TECHNICIAN, [COMMUNE])
    start = dt.datetime.combine(PAST_DAY, dt.time(), tzinfo=TZ)
    with db.session_scope(factory) as session:
        query = stations_service.station_query(session, area=COMMUNE)
        stations = sorted(stations_service.all_stations(session, query), key=lambda s: s.sid)
        for i, station in enumerate(stations):
            hours = FIRST_HOURS if i == 0 else OTHER_HOURS
            session.add(
                StationConnection(
                    station_id=station.id,
                    bdseq=900,
                    online_at=start,
                    offline_at=start + dt.timedelta(hours=hours),
                    cause=ConnectionCause.WILL,
                )
            )


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
        # the commune's outline around its stations, on the plain background (no tiles)
        assert driver.find_elements(By.CSS_SELECTOR, f"path.area-outline.area-{COMMUNE}")
        assert not driver.find_elements(By.CSS_SELECTOR, "img.leaflet-tile")
        driver.execute_script("arguments[0].scrollIntoView()", found[0])
        browser.screenshot(driver, f"canh-bao-ban-do-{width}")

        # filters: critical and open still list it; cleared does not
        driver.get(site.base_url + "/canh-bao?muc_do=critical&trang_thai=open")
        assert sid in driver.find_element(By.ID, "alarms-table").text
        driver.get(site.base_url + "/canh-bao?trang_thai=cleared")
        assert sid not in driver.find_element(By.ID, "alarms-table").text
        browser.screenshot(driver, f"canh-bao-da-xac-nhan-{width}")
        assert driver.get_log("browser") == []


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_availability_view_over_a_chosen_period(site: Site, tmp_path: Any, width: str) -> None:
    """From the alarms page's own navigation: the last 7 days by default, then the seeded
    day by the units of the time: the commune and each station with the seeded figures."""
    size = browser.PHONE if width == "phone" else (1280, 1000)
    sids = sorted(site.sids)
    n = len(sids)
    with browser.chromium(tmp_path / "profile", size) as driver:
        browser.log_in(driver, site, "kythuat")
        wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.find_element(By.CSS_SELECTOR, "nav.main-nav a[href='/canh-bao']").click()
        wait(driver, lambda d: d.title.startswith("Cảnh báo"), what="the alarms page")
        driver.find_element(By.ID, "tab-availability").click()
        wait(driver, lambda d: d.title.startswith("Tỷ lệ sẵn sàng"), what="the availability view")
        # the last 7 days, today up to now: every simulated station, the commune
        assert "đến hiện tại" in driver.find_element(By.ID, "availability-period").text
        stations = driver.find_element(By.ID, "availability-stations")
        assert all(sid in stations.text for sid in sids)
        assert COMMUNE_NAME in driver.find_element(By.ID, "availability-areas").text
        browser.check_accessibility(driver)
        if width == "phone":
            assert browser.horizontal_overflow(driver) <= 1, "the view scrolls sideways"
        browser.screenshot(driver, f"ty-le-san-sang-{width}")

        # a reversed period: the reason, in Vietnamese
        day = PAST_DAY.isoformat()
        later = (PAST_DAY + dt.timedelta(days=1)).isoformat()
        set_value = "arguments[0].value = arguments[1]"
        driver.execute_script(set_value, driver.find_element(By.ID, "f-from"), later)
        driver.execute_script(set_value, driver.find_element(By.ID, "f-to"), day)
        driver.find_element(By.ID, "availability-show").click()
        error = wait(
            driver, lambda d: d.find_elements(By.ID, "availability-error"), what="the error"
        )
        assert "“Từ ngày” phải trước hoặc bằng “Đến ngày”" in error[0].text
        browser.check_accessibility(driver)
        browser.screenshot(driver, f"ty-le-san-sang-loi-{width}")

        # the seeded day, by the units of the time
        driver.execute_script(set_value, driver.find_element(By.ID, "f-from"), day)
        driver.execute_script(set_value, driver.find_element(By.ID, "f-to"), day)
        Select(driver.find_element(By.ID, "f-units")).select_by_visible_text(
            "Đơn vị tại thời điểm đó"
        )
        driver.find_element(By.ID, "availability-show").click()
        wait(
            driver,
            lambda d: (
                f"hết ngày {PAST_DAY:%d/%m/%Y}" in d.find_element(By.ID, "availability-period").text
            ),
            what="the chosen period",
        )
        assert not driver.find_elements(By.ID, "availability-error")
        percent = (FIRST_HOURS + OTHER_HOURS * (n - 1)) / (24 * n) * 100
        offline = 24 * n - FIRST_HOURS - OTHER_HOURS * (n - 1)
        area = driver.find_element(By.XPATH, "//table[@id='availability-areas']/tbody/tr")
        cells = [c.text for c in area.find_elements(By.TAG_NAME, "td")]
        assert COMMUNE_NAME in cells[0]
        assert cells[1:] == [
            "" if width == "phone" else str(n),  # the station count: not on a phone
            f"{percent:.1f} %".replace(".", ","),
            f"{offline} giờ 00 phút",
            str(n),
        ]
        first = driver.find_element(By.XPATH, "//table[@id='availability-stations']/tbody/tr")
        cells = [c.text for c in first.find_elements(By.TAG_NAME, "td")]
        assert sids[0] in cells[0]  # the least available first
        assert cells[1:] == ["25,0 %", "18 giờ 00 phút", "1"]
        link = driver.find_element(By.ID, "availability-area-xlsx").get_attribute("href") or ""
        assert "units=then" in link
        assert "by=area" in link
        browser.check_accessibility(driver)
        if width == "phone":
            assert browser.horizontal_overflow(driver) <= 1, "the view scrolls sideways"
        browser.screenshot(driver, f"ty-le-san-sang-ngay-{width}")
        assert driver.get_log("browser") == []
