"""`/docs` and unknown dashboard URLs in a real headless Chromium.

`/docs` is judged by what the browser renders (Swagger UI 5 reading the service's
OpenAPI 3.1), not by its status code; an unknown dashboard URL shows the dashboard's
Vietnamese 404 page, while the API's unknown URLs stay ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    BROWSER_MARKS,
    Site,
    check_accessibility,
    chromium,
    screenshot,
    serve_site,
    wait,
)

pytestmark = BROWSER_MARKS


def _seed(factory: Any) -> None:
    pass


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
        serve_site(_database, tmp / "site", simulate=None, seed=_seed) as served,
        chromium(tmp / "profile") as driver,
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
    operations = wait(
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
    screenshot(browser, "docs")


def test_unknown_dashboard_url_shows_the_404_page(browser: WebDriver, site: Site) -> None:
    browser.get(site.base_url + "/khong-co-trang-nay")
    wait(browser, lambda d: d.title.startswith("Không tìm thấy"), what="the 404 page")
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "vi"
    assert "Không có trang này" in browser.find_element(By.TAG_NAME, "body").text
    check_accessibility(browser)
    screenshot(browser, "not-found")
