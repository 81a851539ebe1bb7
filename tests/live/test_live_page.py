"""The live paging page in a real Chromium: an operator pages three hamlets of Lợi Bình
Nhơn live through Chromium's fake microphone (its beeping test signal); the audio goes
browser -> WebSocket -> ffmpeg -> a real Icecast2, and the simulated stations of exactly
those hamlets read the stream; leaving the page (the socket closes) stops them within a
few seconds.  The page at desktop width and at 390 px, with the accessibility check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from kernel.security import Role as UserRole
from stations import service as stations_service
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
    serve_site,
    wait,
)
from tests.support.icecast import requires_icecast, running_icecast
from tests.support.loa import wait_until

COMMUNE = "xa-loi-binh-nhon"

pytestmark = [*BROWSER_MARKS, requires_icecast]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _accounts(factory: Any) -> None:
    make_user(factory, "truc-tiep", UserRole.ADMIN, can_emergency=True)


@pytest.fixture(scope="module")
def site(_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web-live")
    with running_icecast(tmp / "icecast") as icecast:
        live = {"live_icecast_url": SecretStr(icecast.source_url), "live_idle_s": 2.0}
        with serve_site(_database, tmp, simulate=COMMUNE, seed=_accounts, settings=live) as s:
            yield s


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def hamlets_of(site: Site, driver: WebDriver) -> dict[str, list[str]]:
    """The commune's hamlets offered on the page, each with its stations (registry)."""
    codes = [
        box.get_attribute("value")
        for box in driver.find_elements(By.CSS_SELECTOR, "input[name='areas']")
        if (box.get_attribute("value") or "").startswith("lbn-")
    ]
    out: dict[str, list[str]] = {}
    with site.sessions()() as session:
        for code in codes:
            query = stations_service.station_query(session, area=code)
            out[str(code)] = [s.sid for s in stations_service.all_stations(session, query)]
    return out


def live_plays(site: Site, sids: list[str]) -> dict[str, Any]:
    """The live stream plays (priority 7) each station has seen."""
    found = {}
    for sid in sids:
        for play in site.fleet.station(sid).plays:
            if play.source == "stream" and play.priority == 7:
                found[sid] = play
    return found


def test_page_three_hamlets_live_from_the_microphone(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "truc-tiep")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    browser.get(site.base_url + "/truc-tiep")
    wait(browser, lambda d: d.title.startswith("Phát trực tiếp"), what="the live page")
    assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current='page']").text == "Trực tiếp"
    hamlets = hamlets_of(site, browser)
    chosen = list(hamlets)[:3]
    assert len(chosen) == 3
    targets = sorted(sid for code in chosen for sid in hamlets[code])
    others = sorted(set(site.sids) - set(targets))
    assert others, "the commune has stations outside the three hamlets"
    for code in chosen:
        box = browser.find_element(By.CSS_SELECTOR, f"input[name='areas'][value='{code}']")
        browser.execute_script("arguments[0].closest('details').open = true", box)
        box.click()
    assert browser.find_element(By.ID, "live-count").text == str(len(targets))
    browser.find_element(By.ID, "live-title").send_keys("Thông báo khẩn của ấp")
    screenshot(browser, "live-desktop")
    check_accessibility(browser)

    browser.find_element(By.ID, "live-start").click()
    broadcast = wait(
        browser,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-broadcast"),
        timeout_s=30,
        what="on air",
    )
    assert "Đang phát tới" in browser.find_element(By.ID, "live-status").text
    assert browser.find_element(By.ID, "live-stop").is_displayed()

    def every_target_hears() -> bool:
        plays = live_plays(site, targets)
        return len(plays) == len(targets) and all(
            p.stream is not None and p.stream.bytes > 4000 for p in plays.values()
        )

    wait_until(every_target_hears, timeout_s=30, what="the three hamlets reading the stream")
    assert live_plays(site, others) == {}  # exactly the chosen hamlets
    link = browser.find_element(By.ID, "live-progress")
    assert link.get_attribute("href").endswith(f"/phat-thanh/{broadcast}")
    screenshot(browser, "live-on-air-desktop")

    # the operator's browser goes away: the page is left, its socket closes
    browser.get(site.base_url + "/")
    gone = time.monotonic()
    wait_until(
        lambda: all(p.outcome != "playing" for p in live_plays(site, targets).values()),
        timeout_s=15,
        what="every station stopped",
    )
    assert time.monotonic() - gone < 5
    for play in live_plays(site, targets).values():
        assert play.outcome == "preempted"
        assert (play.reason or "").startswith("stopped by")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_stop_button_and_the_phone_width(browser: WebDriver, site: Site) -> None:
    log_in(browser, site, "truc-tiep")
    wait(browser, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    browser.set_window_size(*PHONE)
    try:
        browser.get(site.base_url + "/truc-tiep")
        wait(browser, lambda d: d.title.startswith("Phát trực tiếp"), what="the live page")
        assert horizontal_overflow(browser) == 0
        check_accessibility(browser)
        # nothing chosen: a Vietnamese error, nothing sent
        browser.find_element(By.ID, "live-start").click()
        error = browser.find_element(By.ID, "live-error")
        assert error.text == "Chọn ít nhất một ấp, khu phố."
        box = browser.find_elements(By.CSS_SELECTOR, "input[name='areas'][value^='lbn-']")[0]
        browser.execute_script("arguments[0].closest('details').open = true", box)
        box.click()
        browser.find_element(By.ID, "live-start").click()
        wait(
            browser,
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-broadcast"),
            timeout_s=30,
            what="on air",
        )
        screenshot(browser, "live-phone")
        assert horizontal_overflow(browser) == 0
        browser.find_element(By.ID, "live-stop").click()
        wait(
            browser,
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-ended"),
            timeout_s=15,
            what="ended",
        )
        assert "Đã kết thúc" in browser.find_element(By.ID, "live-status").text
    finally:
        browser.set_window_size(1280, 1000)
