"""Administration and the commune operator's broadcast, in a real headless Chromium.

The city administrator creates an operator account for one commune in the dashboard;
that operator signs in, sees only their own commune's bulletin in the broadcast form
(not another commune's emergency alert, which is city-wide), reads the station count,
the places and the repeats in the confirmation, sends, and follows the progress by
hamlet name; the administrator finds the broadcast in the audit log.  At desktop width
and at 390 px, with screenshots and the axe-core check of every page on the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audio_library import service as media
from kernel.security import Role as UserRole
from stations import service as stations_service
from tests.api import PASSWORD, make_user
from tests.support import browser as web

COMMUNE = "xa-loi-binh-nhon"

pytestmark = web.BROWSER_MARKS

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402


def _accounts(factory: Any) -> None:
    make_user(factory, "quantri", UserRole.ADMIN)


def _bulletin(site: web.Site, title: str, *, area: str | None, tags: tuple[str, ...] = ()) -> int:
    """An approved spoken bulletin owned by `area` (None: city-wide)."""
    library = site.app.state.media_library
    rendition = media.speak(library, text=title, voice="south", rate=0)
    factory = site.sessions()
    with factory() as session:
        area_id = stations_service.area_id(session, area) if area else None
        asset = media.add_speech(
            session,
            library,
            rendition,
            text=title,
            voice="south",
            rate=0,
            title=title,
            category="canh-bao" if tags else "tin-tuc",
            tags=tags,
            author=media.Author(name="canbo-p2" if tags else "quantri", area_id=area_id),
        )
        asset.owner_area_id = area_id
        media.set_approval(
            session, asset, approver=media.Author(name="kiem-duyet"), approve=True, note=None
        )
        session.commit()
        return asset.id


site = web.site_fixture("web-admin", simulate=COMMUNE, seed=_accounts)


@pytest.fixture(scope="module")
def assets(site: web.Site) -> dict[str, int]:
    return {
        "own": _bulletin(site, "Tin xã Lợi Bình Nhơn", area=COMMUNE),
        "alert": _bulletin(site, "Cháy chợ Phường 2", area=None, tags=("khan-cap",)),
    }


def _check_page(driver: WebDriver, name: str) -> None:
    web.screenshot(driver, name)
    web.check_accessibility(driver)
    assert web.horizontal_overflow(driver) <= 0, name


def _sign_out(driver: WebDriver, site: web.Site) -> None:
    driver.delete_all_cookies()
    driver.get(site.base_url + "/dang-nhap")


@pytest.mark.parametrize(("size", "suffix"), [(web.DESKTOP, "desktop"), (web.PHONE, "phone")])
def test_admin_creates_an_operator_who_broadcasts_safely(
    site: web.Site,
    assets: dict[str, int],
    tmp_path: Path,
    size: tuple[int, int],
    suffix: str,
) -> None:
    operator = f"canbo-lbn-{suffix}"
    with web.chromium(tmp_path / "profile", size) as driver:
        # --- the administrator creates the operator account -------------------------
        web.log_in(driver, site, "quantri")
        web.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.find_element(By.LINK_TEXT, "Quản trị").click()
        web.wait(driver, lambda d: d.title.startswith("Tài khoản"), what="the accounts page")
        _check_page(driver, f"admin-users-{suffix}")
        driver.find_element(By.ID, "u-username").send_keys(operator)
        driver.find_element(By.ID, "u-password").send_keys(PASSWORD)
        driver.find_element(By.ID, "u-full-name").send_keys("Cán bộ xã Lợi Bình Nhơn")
        Select(driver.find_element(By.ID, "u-role")).select_by_value("operator")
        area = driver.find_element(By.CSS_SELECTOR, f"input[name='areas'][value='{COMMUNE}']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", area)
        area.click()
        driver.find_element(By.ID, "create-user").click()
        web.wait(driver, lambda d: f"Đã lưu tài khoản {operator}" in d.page_source, what="saved")
        row = driver.find_element(By.XPATH, f"//table[@id='users']//tr[td/a[text()='{operator}']]")
        assert "Cán bộ vận hành" in row.text
        driver.find_element(By.LINK_TEXT, operator).click()
        web.wait(driver, lambda d: d.title.startswith("Tài khoản " + operator), what="the account")
        _check_page(driver, f"admin-user-{suffix}")
        driver.find_element(By.LINK_TEXT, "Mã tích hợp").click()
        web.wait(driver, lambda d: d.title.startswith("Mã tích hợp"), what="the tokens page")
        _check_page(driver, f"admin-tokens-{suffix}")
        _sign_out(driver, site)

        # --- the operator sends a broadcast from the form ---------------------------
        web.log_in(driver, site, operator)
        web.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the operator's overview")
        assert not driver.find_elements(By.LINK_TEXT, "Quản trị")
        driver.get(site.base_url + "/quan-tri/tai-khoan")
        assert "Chỉ quản trị thành phố" in driver.page_source
        driver.get(site.base_url + "/phat-thanh")
        web.wait(driver, lambda d: d.find_elements(By.ID, "broadcast-form"), what="the form")
        choice = Select(driver.find_element(By.ID, "asset"))
        offered = [o.get_attribute("value") for o in choice.options]
        assert choice.first_selected_option.get_attribute("value") == str(assets["own"])
        assert str(assets["alert"]) not in offered
        _check_page(driver, f"broadcast-operator-{suffix}")
        Select(driver.find_element(By.ID, "repeat")).select_by_value("2")
        send = driver.find_element(By.ID, "send-broadcast")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", send)
        send.click()
        dialog = driver.find_element(By.ID, "confirm-dialog")
        web.wait(
            driver, lambda d: dialog.get_attribute("open") is not None, what="the confirmation"
        )
        assert f"Số trạm: {len(site.sids)} trạm" in dialog.text
        assert "Nơi phát: Xã Lợi Bình Nhơn" in dialog.text
        assert "Số lần phát: 2 lần" in dialog.text
        assert "Tin xã Lợi Bình Nhơn" in dialog.text
        web.screenshot(driver, f"broadcast-confirm-{suffix}")
        driver.find_element(By.ID, "confirm-ok").click()
        web.wait(
            driver, lambda d: d.find_element(By.ID, "progress").is_displayed(), what="progress"
        )
        rows = web.wait(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#progress-stations tbody tr"),
            what="the progress rows",
        )
        assert len(rows) == len(site.sids)
        web.wait(
            driver,
            lambda d: "Ấp Cầu Tre" in d.find_element(By.ID, "progress-stations").text,
            what="the hamlet's name in the progress rows",
        )
        progress = driver.find_element(By.ID, "progress").text
        for code in ("RECEIVED", "SUCCEEDED", "PENDING", "EXPIRED", "FAILED"):
            assert code not in progress
        _check_page(driver, f"broadcast-progress-{suffix}")
        _sign_out(driver, site)

        # --- the administrator finds it in the audit log ----------------------------
        web.log_in(driver, site, "quantri")
        web.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.get(site.base_url + "/quan-tri/nhat-ky")
        driver.find_element(By.ID, "a-actor").send_keys(operator)
        Select(driver.find_element(By.ID, "a-action")).select_by_value("broadcast.create")
        driver.find_element(By.CSS_SELECTOR, "form.filters button[type='submit']").click()
        web.wait(driver, lambda d: "nguoi=" in d.current_url, what="the filtered audit log")
        table = driver.find_element(By.ID, "audit").text
        assert operator in table
        assert "Phát thanh" in table
        _check_page(driver, f"admin-audit-{suffix}")
