"""The dashboard in a real headless Chromium: the served site, the browser, screenshots
and the accessibility check, once for every browser test.

- :func:`serve_site` runs the whole service (app in role "all": API, pages and worker)
  in a uvicorn thread on a fresh Mosquitto, seeded with the Tân An registry, with one
  commune's stations simulated and online (a context manager: tests wrap it in a
  module-scoped fixture);
- :func:`chromium` starts Debian's ``chromium`` through ``chromium-driver`` with
  Selenium and an explicit driver path (Selenium Manager downloads nothing), at a
  desktop width or a phone's 390 px, with Chromium's fake microphone;
- :func:`screenshot` saves the page to ``var/screenshots/<name>.png`` (the folder the
  README names; ``BROADCASTER_SCREENSHOTS`` moves it);
- :func:`check_accessibility` runs the vendored axe-core 4.14 in the page and fails on
  any critical violation.

Tests that use the browser mark themselves with :data:`BROWSER_MARKS` (skipped, with the
reason, when Chromium or Mosquitto is not installed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Environment, Settings
from firmware_bridge.simulator.fleet import FleetConfig, FleetThread
from firmware_bridge.simulator.station import SimSettings, StationSpec
from kernel.signals import plan_changed
from stations import service as stations_service
from stations import tan_an
from tests.api import PASSWORD
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto, find_mosquitto

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = os.environ.get("BROADCASTER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BROADCASTER_CHROMEDRIVER", "/usr/bin/chromedriver")
SECRET = "test-secret-key-0123456789abcdef-0123456789"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("BROADCASTER_SCREENSHOTS", ROOT / "var" / "screenshots"))
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
DESKTOP = (1280, 1000)
PHONE = (390, 844)

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason=f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
        "run scripts/system-deps.sh --with-browser",
    ),
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]


@dataclass
class Site:
    """The served dashboard: its address, the app (for its session factory) and the
    simulated stations' ids."""

    base_url: str
    app: Any
    sids: list[str] = field(default_factory=list)
    fleet: Any = None  # the simulated stations (`FleetThread`: fault injection), if any

    def sessions(self) -> Any:
        """The app's session factory (seeding and checks outside the browser)."""
        return self.app.state.sessionmaker


@contextlib.contextmanager
def serve_site(
    database: Any,
    tmp: Path,
    *,
    simulate: str | None = "xa-loi-binh-nhon",
    seed: Callable[[Any], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[Site]:
    """The whole service on a fresh broker, seeded with Tân An; the stations under the
    area code ``simulate`` online (``None``: no simulator).  ``seed(factory)`` adds
    accounts and data before the stations start; ``settings`` overrides service settings
    (e.g. live paging's Icecast)."""
    database.reset()
    broker = Mosquitto(tmp / "broker").start()
    # bound here and handed to uvicorn: a port only found free could be taken by another
    # test process (pytest-xdist) before the server binds it
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    service_settings = Settings(
        environment=Environment.TEST,
        database_url=database.url_for_test(tmp),
        media_dir=tmp / "media",
        secret_key=SECRET,
        mqtt_url=broker.url,
        mqtt_dynsec=False,
        public_base_url=f"http://127.0.0.1:{port}",
    ).model_copy(update=settings or {})
    app = create_app(service_settings, role=Role.ALL)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: server.run(sockets=[listener]), daemon=True)
    thread.start()
    fleet: FleetThread | None = None
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=30, what="server")
        assert thread.is_alive(), "the service did not start"
        factory = app.state.sessionmaker
        sids: list[str] = []
        with db.session_scope(factory) as session:
            tan_an.load(session)
            plan_changed(session, "browser test seed")
            if simulate is not None:
                query = stations_service.station_query(session, area=simulate)
                sids = [station.sid for station in stations_service.all_stations(session, query)]
        if seed is not None:
            seed(factory)
        if sids:
            fleet = FleetThread(
                FleetConfig(mqtt_url=broker.url, state_dir=tmp / "sim", settings=SimSettings()),
                [StationSpec(sid) for sid in sids],
            )
            fleet.start(timeout_s=30)

            def all_online() -> bool:
                with factory() as session:
                    query = stations_service.station_query(session, online=True, sids=sids)
                    return len(stations_service.all_stations(session, query)) == len(sids)

            wait_until(all_online, timeout_s=30, what="the simulated stations online")
        yield Site(base_url=f"http://127.0.0.1:{port}", app=app, sids=sids, fleet=fleet)
    finally:
        if fleet is not None:
            fleet.stop()
        server.should_exit = True
        thread.join(20)
        listener.close()
        broker.stop()


def site_fixture(
    name: str, *, simulate: str | None, seed: Callable[[Any], None] | None = None
) -> Any:
    """A module-scoped ``site`` fixture: :func:`serve_site` in a fresh folder ``name``
    for the tests of one module (assign it to ``site`` there)."""

    @pytest.fixture(scope="module")
    def site(_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
        tmp = tmp_path_factory.mktemp(name)
        with serve_site(_database, tmp, simulate=simulate, seed=seed) as served:
            yield served

    return site


@contextlib.contextmanager
def chromium(profile: Path, size: tuple[int, int] = DESKTOP) -> Iterator[WebDriver]:
    """Headless Chromium at ``size`` (:data:`DESKTOP` or :data:`PHONE`), Vietnamese,
    with a fake microphone that needs no permission prompt."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        "--lang=vi-VN",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


#: What a page that is reloading answers for a node it just dropped: poll again.
GONE_NODE = ("does not belong to the document", "No node with given id")


def wait(driver: WebDriver, predicate: Any, timeout_s: float = 15, what: str = "") -> Any:
    """Poll ``predicate(driver)`` until it is truthy (Selenium's explicit wait); a node
    that went away with a reload (stale, or the inspector's "does not belong to the
    document") is "not yet", not a failure."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d: WebDriver) -> Any:
        try:
            return predicate(d)
        except WebDriverException as exc:
            if any(text in (exc.msg or "") for text in GONE_NODE):
                return False
            raise

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2, ignored_exceptions=ignored).until(
        check, message=what
    )


def log_in(driver: WebDriver, site: Site, username: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in page (cookies cleared first, once the page left open
    is gone: a dashboard page would otherwise poll once more without its session and
    log a 401 in the console; ``about:blank`` asks for no icon either), and wait for
    its answer: the next page, or the sign-in page with its error."""
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(site.base_url + "/")
    wait(driver, lambda d: "/dang-nhap" in d.current_url, what="redirect to the login page")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    # the form's answer, before the caller navigates on (a page asked for while the
    # sign-in is still in flight is redirected to the sign-in page: no session yet)
    wait(
        driver,
        lambda d: "/dang-nhap" not in d.current_url or d.find_elements(By.ID, "login-error"),
        what="the sign-in's answer",
    )


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the whole page as ``<SCREENSHOTS>/<name>.png`` and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(int(height) + 120, 600))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(width, DESKTOP[1] if width >= DESKTOP[0] else PHONE[1])
    return path


def check_accessibility(driver: WebDriver, impacts: tuple[str, ...] = ("critical",)) -> None:
    """Run axe-core in the current page; fail on violations of the given impacts."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations.map("
        "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))));"
    )
    bad = [v for v in result if v["impact"] in impacts]
    assert not bad, f"accessibility violations on {driver.current_url}: {bad}"


def horizontal_overflow(driver: WebDriver) -> int:
    """How many pixels the page is wider than the window (0 when it fits a phone)."""
    return int(
        driver.execute_script(
            "return Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"
        )
    )
