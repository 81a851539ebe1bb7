"""The alarm settings (``/canh-bao/thiet-lap``) and a station's own thresholds in a real
headless Chromium against the whole service: the city administrator opens the third
alarms tab, adds an e-mail subscription and a webhook one (its HMAC key shown once,
gone after a reload), deletes one after the confirmation (a first "Hủy" keeps it),
changes a station kind's threshold (saved, seen after a reload) and tries an out-of-range
one (refused with the API's Vietnamese message, nothing saved), then sets a station's own
threshold on its page.  At desktop width and at 390 px, with screenshots, the axe-core
check and no script error in the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcaster.alarms import service as alarms_service
from broadcaster.alarms.models import AlarmSubscription
from kernel.security import Role as UserRole
from stations import service as stations_service
from tests.api import make_user
from tests.support import browser as web

pytestmark = web.BROWSER_MARKS

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

SETTINGS = "/canh-bao/thiet-lap"
#: per width: the kind threshold set, and the station whose own threshold is set
RUNS = {
    "desktop": {"offline": "900", "station": "p2-kp-1", "storage": "750"},
    "phone": {"offline": "1200", "station": "lbn-cau-tre", "storage": "640"},
}


def _accounts(factory: Any) -> None:
    make_user(factory, "quantri", UserRole.ADMIN)


site = web.site_fixture("web-alarm-settings", simulate=None, seed=_accounts)


def _check_page(driver: WebDriver, name: str) -> None:
    web.check_accessibility(driver)
    assert web.horizontal_overflow(driver) <= 0, f"{name} scrolls sideways"
    web.screenshot(driver, name)


def _click(driver: WebDriver, element_id: str) -> None:
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _type(driver: WebDriver, element_id: str, text: str) -> None:
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.clear()
    element.send_keys(text)


def _subscription_row(driver: WebDriver, name: str) -> Any:
    found = driver.find_elements(
        By.XPATH, f"//table[@id='subscriptions-table']//td[@data-name='{name}']/.."
    )
    return found[0] if found else None


def _shown(driver: WebDriver, element_id: str, what: str) -> Any:
    """The element, once it is displayed."""
    return web.wait(
        driver,
        lambda d: (
            d.find_element(By.ID, element_id).is_displayed() and d.find_element(By.ID, element_id)
        ),
        what=what,
    )


def _dialog_open(driver: WebDriver) -> bool:
    return driver.find_element(By.ID, "confirm-dialog").get_attribute("open") is not None


def _subscription(site: web.Site, name: str) -> AlarmSubscription | None:
    with site.sessions()() as session:
        found: AlarmSubscription | None = session.scalar(
            select(AlarmSubscription).where(AlarmSubscription.name == name)
        )
        return found


@pytest.mark.parametrize(("size", "suffix"), [(web.DESKTOP, "desktop"), (web.PHONE, "phone")])
def test_admin_manages_subscriptions_and_thresholds(
    site: web.Site, tmp_path: Path, size: tuple[int, int], suffix: str
) -> None:
    run = RUNS[suffix]
    mail_name, hook_name = f"Tổ kỹ thuật P2 ({suffix})", f"Webhook trực ban ({suffix})"
    console: list[dict[str, Any]] = []
    with web.chromium(tmp_path / "profile", size) as driver:
        web.log_in(driver, site, "quantri")
        web.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.get(site.base_url + "/canh-bao")
        web.wait(driver, lambda d: d.title.startswith("Cảnh báo"), what="the alarms page")
        _click(driver, "tab-settings")
        web.wait(driver, lambda d: d.title.startswith("Thiết lập cảnh báo"), what="settings")
        tab = driver.find_element(By.ID, "tab-settings")
        assert tab.get_attribute("aria-current") == "page"
        _check_page(driver, f"canh-bao-thiet-lap-{suffix}")

        # an e-mail subscription for Phường 2, critical alarms only
        _type(driver, "sub-name", mail_name)
        Select(driver.find_element(By.ID, "sub-channel")).select_by_value("email")
        _type(driver, "sub-target", f"kythuat.{suffix}@tanan.gov.vn")
        Select(driver.find_element(By.ID, "sub-area")).select_by_value("phuong-2")
        Select(driver.find_element(By.ID, "sub-severity")).select_by_value("critical")
        _click(driver, "create-subscription")
        row = web.wait(driver, lambda d: _subscription_row(d, mail_name), what="the new row")
        assert "Thư điện tử (e-mail)" in row.text
        assert "Phường 2" in row.text
        assert "Nghiêm trọng" in row.text
        assert not driver.find_element(By.ID, "webhook-secret").is_displayed()

        # a webhook for the whole city: its key shown once
        _type(driver, "sub-name", hook_name)
        Select(driver.find_element(By.ID, "sub-channel")).select_by_value("webhook")
        _type(driver, "sub-target", f"https://truc-ban.example.vn/hook/{suffix}")
        Select(driver.find_element(By.ID, "sub-area")).select_by_value("")
        _click(driver, "create-subscription")
        box = _shown(driver, "webhook-secret", "the webhook's key")
        assert "chỉ hiển thị một lần" in box.text
        shown = driver.find_element(By.ID, "webhook-secret-value").text
        stored = _subscription(site, hook_name)
        assert stored is not None
        assert stored.secret == shown
        assert len(shown) >= 32
        row = _subscription_row(driver, hook_name)
        assert "Toàn thành phố" in row.text
        assert "Webhook (gọi URL)" in row.text
        _check_page(driver, f"canh-bao-thiet-lap-khoa-webhook-{suffix}")
        driver.refresh()
        web.wait(driver, lambda d: _subscription_row(d, hook_name), what="the list reloaded")
        assert shown not in driver.page_source  # not shown again
        assert not driver.find_element(By.ID, "webhook-secret").is_displayed()

        # delete the e-mail one: "Hủy" keeps it, "Xóa đăng ký" removes it
        delete = f"//td[@data-name='{mail_name}']/..//button[@data-delete-subscription]"
        for answer in ("cancel", "ok"):
            button = driver.find_element(By.XPATH, delete)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
            web.wait(driver, _dialog_open, what="the confirmation")
            dialog = driver.find_element(By.ID, "confirm-dialog")
            assert mail_name in dialog.text
            if answer == "cancel":
                dialog.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
                web.wait(driver, lambda d: not _dialog_open(d), what="the dialog closed")
                assert _subscription(site, mail_name) is not None
            else:
                web.screenshot(driver, f"canh-bao-thiet-lap-xoa-{suffix}")
                driver.find_element(By.ID, "confirm-ok").click()
        web.wait(driver, lambda d: _subscription_row(d, mail_name) is None, what="row removed")
        assert "Đã xóa đăng ký" in driver.find_element(By.ID, "subscription-result").text
        assert _subscription(site, mail_name) is None
        console += driver.get_log("browser")

        # a station kind's threshold: saved and seen after a reload
        field = "th-hamlet-offline_after_s"
        _type(driver, field, run["offline"])
        _click(driver, "save-thresholds-hamlet")
        web.wait(
            driver,
            lambda d: "Đã lưu" in d.find_element(By.ID, "thresholds-result-hamlet").text,
            what="thresholds saved",
        )
        assert driver.find_element(By.ID, "eff-hamlet-offline_after_s").text == run["offline"]
        driver.refresh()
        web.wait(driver, lambda d: d.find_element(By.ID, field), what="reloaded")
        assert driver.find_element(By.ID, field).get_attribute("value") == run["offline"]
        assert driver.find_element(By.ID, "eff-hamlet-offline_after_s").text == run["offline"]
        console += driver.get_log("browser")

        # out of range: the API's Vietnamese message beside the form, nothing saved
        _type(driver, field, "5")
        _click(driver, "save-thresholds-hamlet")
        error = _shown(driver, "thresholds-error-hamlet", "the refusal")
        assert "Mất kết nối quá phải nằm trong khoảng 10–86400 s" in error.text
        assert "must be within" not in error.text  # the Vietnamese message alone
        assert error.get_attribute("role") == "alert"
        assert driver.find_element(By.ID, field).get_attribute("aria-invalid") == "true"
        _check_page(driver, f"canh-bao-thiet-lap-nguong-loi-{suffix}")
        with site.sessions()() as session:
            kinds = alarms_service.kind_thresholds(session)
        assert kinds["hamlet"]["overrides"]["offline_after_s"] == float(run["offline"])
        driver.get_log("browser")  # drop the expected 422

        # the station's own threshold, on its page
        sid = run["station"]
        driver.get(f"{site.base_url}/tram/{sid}")
        web.wait(driver, lambda d: d.find_element(By.ID, "station-thresholds"), what="station")
        section = driver.find_element(By.ID, "station-thresholds")
        assert "Ngưỡng cảnh báo riêng của trạm" in section.text
        _type(driver, "sth-storage_low_mb", run["storage"])
        _click(driver, "save-station-thresholds")
        web.wait(
            driver,
            lambda d: "Đã lưu" in d.find_element(By.ID, "station-thresholds-result").text,
            what="the station's thresholds saved",
        )
        assert driver.find_element(By.ID, "seff-storage_low_mb").text == run["storage"]
        driver.refresh()
        web.wait(driver, lambda d: d.find_element(By.ID, "sth-storage_low_mb"), what="reloaded")
        value = driver.find_element(By.ID, "sth-storage_low_mb").get_attribute("value")
        assert value == run["storage"]
        # the kind's value reaches the station where it has none of its own
        kind_effective = driver.find_element(By.ID, "seff-offline_after_s").text
        with site.sessions()() as session:
            station = stations_service.get_station(session, sid)
            own = alarms_service.station_thresholds(session, station)
        assert own["overrides"] == {"storage_low_mb": float(run["storage"])}
        assert kind_effective == f"{own['effective']['offline_after_s']:g}"
        _check_page(driver, f"tram-nguong-canh-bao-{suffix}")
        console += driver.get_log("browser")
    errors = [e for e in console if e["level"] == "SEVERE"]
    assert errors == [], errors
