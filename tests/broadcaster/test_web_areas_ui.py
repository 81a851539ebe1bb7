"""The area tree editor and the reorganisation, in a real headless Chromium.

The city administrator opens the area tree (codes, station counts), one commune's page,
adds a khu phố under Phường 1, then builds a reorganisation in the form (Xã Bình Tâm
into Phường 7, the new khu phố moved there too, and a unit that does not exist): every
error is listed and nothing changes; corrected, the preview lists the stations that move,
the plan is scheduled for its date, shown waiting, and cancelled.  At desktop width and
at 390 px, with screenshots and the axe-core check of every page on the way.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from kernel.security import Role as UserRole
from stations.models import Area, Reorganisation, ReorgStatus
from tests.api import make_user
from tests.support import browser as web

pytestmark = web.BROWSER_MARKS

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _accounts(factory: Any) -> None:
    make_user(factory, "quantri", UserRole.ADMIN)


site = web.site_fixture("web-areas", simulate=None, seed=_accounts)


def _check_page(driver: WebDriver, name: str) -> None:
    web.screenshot(driver, name)
    web.check_accessibility(driver)
    assert web.horizontal_overflow(driver) <= 0, name


def _row(driver: WebDriver, n: int, **fields: str) -> None:
    for name, value in fields.items():
        element = driver.find_element(By.ID, f"r{n}-{name}")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            if value:
                element.send_keys(value)


def _submit(driver: WebDriver, button: str) -> None:
    element = driver.find_element(By.ID, button)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


@pytest.mark.parametrize(("size", "suffix"), [(web.DESKTOP, "desktop"), (web.PHONE, "phone")])
def test_admin_edits_the_tree_and_previews_a_reorganisation(
    site: web.Site, tmp_path: Path, size: tuple[int, int], suffix: str
) -> None:
    hamlet = f"p1-kp-{suffix}"
    days = 30 if suffix == "desktop" else 31
    effective = dt.datetime.now(VN).date() + dt.timedelta(days=days)
    with web.chromium(tmp_path / "profile", size) as driver:
        web.log_in(driver, site, "quantri")
        web.wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.get(site.base_url + "/quan-tri")
        web.wait(driver, lambda d: d.title.startswith("Tài khoản"), what="the accounts page")
        driver.find_element(By.LINK_TEXT, "Địa bàn").click()
        web.wait(driver, lambda d: d.title.startswith("Địa bàn"), what="the area tree")
        city = driver.find_element(By.XPATH, "//td[@data-code='tan-an']/..")
        assert city.find_elements(By.TAG_NAME, "td")[-1].text == "108"
        _check_page(driver, f"admin-areas-{suffix}")

        # one commune's page
        link = driver.find_element(By.LINK_TEXT, "Xã Lợi Bình Nhơn")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
        link.click()
        web.wait(driver, lambda d: d.title.startswith("Địa bàn Xã Lợi Bình Nhơn"), what="commune")
        assert int(driver.find_element(By.ID, "area-stations").text) > 0
        _check_page(driver, f"admin-area-{suffix}")

        # a new khu phố under Phường 1
        driver.find_element(By.LINK_TEXT, "← Cây địa bàn").click()
        web.wait(driver, lambda d: d.title.startswith("Địa bàn"), what="the area tree")
        driver.find_element(By.ID, "a-name").send_keys(f"Khu phố {suffix}")
        driver.find_element(By.ID, "a-code").send_keys(hamlet)
        Select(driver.find_element(By.ID, "a-level")).select_by_value("hamlet")
        Select(driver.find_element(By.ID, "a-parent")).select_by_value("phuong-1")
        _submit(driver, "create-area")
        web.wait(driver, lambda d: f"Đã lưu địa bàn {hamlet}" in d.page_source, what="saved")
        assert driver.find_elements(By.XPATH, f"//td[@data-code='{hamlet}']")

        # the reorganisation, built in the form, with an unknown unit first
        driver.find_element(By.LINK_TEXT, "Sắp xếp đơn vị").click()
        web.wait(driver, lambda d: d.title.startswith("Sắp xếp"), what="the reorganisation page")
        _check_page(driver, f"admin-reorg-{suffix}")
        driver.find_element(By.ID, "r-name").send_keys(f"Gộp Bình Tâm ({suffix})")
        date = driver.find_element(By.ID, "r-effective")
        driver.execute_script("arguments[0].value = arguments[1]", date, effective.isoformat())
        _row(driver, 1, action="merge", old="xa-binh-tam", new="phuong-7")
        _row(driver, 2, action="move", new="phuong-7", hamlets=hamlet)
        _row(driver, 3, action="merge", old="xa-khong-co", new="phuong-7")
        _submit(driver, "preview-button")
        web.wait(driver, lambda d: d.find_elements(By.ID, "reorg-errors"), what="the errors")
        assert "xa-khong-co" in driver.find_element(By.ID, "reorg-errors").text
        _check_page(driver, f"admin-reorg-errors-{suffix}")
        with site.sessions()() as session:
            assert session.scalar(select(Area.valid_to).where(Area.code == "xa-binh-tam")) is None

        # corrected (the rows kept what was typed): the preview
        assert driver.find_element(By.ID, "r1-old").get_attribute("value") == "xa-binh-tam"
        _row(driver, 3, action="", old="", new="")
        _submit(driver, "preview-button")
        web.wait(driver, lambda d: d.find_elements(By.ID, "reorg-preview"), what="the preview")
        moving = int(driver.find_element(By.ID, "preview-stations").text)
        assert moving > 0
        assert "xa-binh-tam" in driver.find_element(By.ID, "preview-retired").text
        _check_page(driver, f"admin-reorg-preview-{suffix}")

        # scheduled for its date, then cancelled
        button = driver.find_element(By.ID, "apply-button")
        assert effective.strftime("%d/%m/%Y") in button.text
        _submit(driver, "apply-button")
        web.wait(driver, lambda d: d.find_elements(By.ID, "reorg-notice"), what="scheduled")
        assert "Đã lên lịch" in driver.find_element(By.ID, "reorg-notice").text
        row = driver.find_element(
            By.XPATH, f"//table[@id='reorgs']//tr[td[contains(., '({suffix})')]]"
        )
        assert "Chờ đến ngày hiệu lực" in row.text
        _check_page(driver, f"admin-reorg-scheduled-{suffix}")
        cancel = row.find_element(By.TAG_NAME, "button")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cancel)
        cancel.click()

        def cancelled(d: Any) -> bool:
            # this size's own row: the other size's cancelled plan is on the same page
            rows = d.find_elements(
                By.XPATH, f"//table[@id='reorgs']//tr[td[contains(., '({suffix})')]]"
            )
            return bool(rows) and "Đã hủy" in rows[0].text

        web.wait(driver, cancelled, what="cancelled")
    with site.sessions()() as session:
        record = session.scalar(
            select(Reorganisation).where(Reorganisation.name.contains(f"({suffix})"))
        )
        assert record is not None
        assert record.status is ReorgStatus.UNDONE
        assert session.scalar(select(Area.valid_to).where(Area.code == "xa-binh-tam")) is None
