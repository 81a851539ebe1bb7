"""The test-support pytest plugin: brokers, recorders, publishers, fleets and the whole
service, defined once for every package's tests (registered by ``tests/conftest.py``
through ``pytest_plugins``).

Every fixture that records the broker's traffic ends by asserting that every message
seen was valid against the shared schemas (tests that publish garbage on purpose
declare it with ``recorder.expect_invalid``).

- ``broker`` / ``persistent_broker``: a fresh Mosquitto per test (the second keeps
  retained messages and sessions across restarts), with ``recorder`` /
  ``persistent_recorder`` on them;
- ``raw``: publishes arbitrary bytes on ``broker``; ``inbox`` and ``bridge``: the
  server-side bridge on ``broker``; ``make_fleet``: simulated fleets; ``media``: a
  local HTTP server for media files and relay streams; ``sim``: all of these at once;
- ``dynsec_broker`` (one per module) and ``dynsec_recorder``: Mosquitto with the
  dynamic-security plugin, configured by our own bootstrap, with an observer account;
- ``live``: the whole service (app + worker over HTTP) on a persistent broker;
- ``deployments``: ``deployments(Kind, seed=...)`` -> a seeded
  :class:`~tests.support.service.Deployment` for service processes, on the persistent
  broker and recorder, stopped at the end.

The clock: with ``TESTS_CLOCK_AT`` set (``+365d``: that many days ahead; or an ISO
date-time with its offset), the whole test process runs with its wall clock moved there
and ticking (time-machine: ``time.time``, ``datetime.now``, ``date.today``... but not the
monotonic clock, so timeouts and sleeps are real).  ``tests/test_calendar.py`` runs the
tests marked ``calendar`` that way.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine

from broadcaster.settings import Settings
from firmware_bridge.client import Bridge
from tests.support.dynsec_broker import DynsecBroker, start_dynsec_broker
from tests.support.live import Live, start_live
from tests.support.loa import FleetFactory, Inbox, RawPublisher, SimRig, make_bridge, wait_until
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import VENDORED_SCHEMAS, Recorder, SchemaValidator
from tests.support.service import Deployment, deploy

CLOCK_AT = "TESTS_CLOCK_AT"
_travel: list[time_machine.travel] = []


def clock_destination(value: str) -> dt.datetime:
    """``+Nd`` (N days from now) or an ISO date-time with an offset."""
    days = re.fullmatch(r"\+(\d+)d", value.strip())
    if days:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=int(days.group(1)))
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{CLOCK_AT}={value!r}: give the offset (+07:00, Z)")
    return moment


def pytest_configure(config: pytest.Config) -> None:
    value = os.environ.get(CLOCK_AT)
    if value:
        travel = time_machine.travel(clock_destination(value), tick=True)
        travel.start()
        _travel.append(travel)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _travel:
        _travel.pop().stop()


def pytest_report_header() -> str | None:
    if not _travel:
        return None
    return f"clock moved by {CLOCK_AT}: now {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _running(server: Mosquitto) -> Iterator[Mosquitto]:
    server.start()
    yield server
    server.stop()


def recording(rec: Recorder) -> Iterator[Recorder]:
    """Start ``rec``; at the end stop it and require every message it saw to be valid."""
    rec.start()
    yield rec
    rec.stop()
    rec.assert_all_valid()


def recording_proposals(broker: Mosquitto) -> Iterator[Recorder]:
    """`recording` on ``broker``, against the vendored schemas: ``loa/v1`` plus the
    proposals the service and simulator implement (docs/protocol-proposals), for tests of
    stations that announce them (a module overrides its recorder fixture with it)."""
    validator = SchemaValidator(VENDORED_SCHEMAS)
    yield from recording(Recorder(broker.host, broker.port, validator=validator))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto without persistence."""
    yield from _running(Mosquitto(tmp_path / "broker"))


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto whose retained messages and sessions survive restarts."""
    yield from _running(Mosquitto(tmp_path / "pbroker", persistence=True))


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    """Records and validates every message on ``broker``."""
    yield from recording(Recorder(broker.host, broker.port))


@pytest.fixture
def persistent_recorder(persistent_broker: Mosquitto) -> Iterator[Recorder]:
    """Records and validates every message on ``persistent_broker``."""
    yield from recording(Recorder(persistent_broker.host, persistent_broker.port))


@pytest.fixture
def raw(broker: Mosquitto) -> Iterator[RawPublisher]:
    """Publishes arbitrary bytes on ``broker``."""
    publisher = RawPublisher(broker)
    yield publisher
    publisher.stop()


@pytest.fixture
def media() -> Iterator[MediaServer]:
    """A local HTTP server for media files and relay streams."""
    server = MediaServer().start()
    yield server
    server.stop()


@pytest.fixture
def inbox() -> Inbox:
    """Collects the bridge's inbound messages."""
    return Inbox()


@pytest.fixture
def bridge(broker: Mosquitto, recorder: Recorder, inbox: Inbox) -> Iterator[Bridge]:
    """The server-side bridge, connected to ``broker`` (after the recorder)."""
    server_bridge = make_bridge(broker, inbox)
    server_bridge.start()
    wait_until(lambda: server_bridge.connected, what="bridge connected")
    yield server_bridge
    server_bridge.stop()


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[FleetFactory]:
    """``make_fleet(broker, ["st-1"], faults=[...], speed=...)`` -> a running FleetThread."""
    factory = FleetFactory(tmp_path / "sim")
    yield factory
    factory.stop_all()


@pytest.fixture
def sim(
    broker: Mosquitto,
    recorder: Recorder,
    bridge: Bridge,
    inbox: Inbox,
    media: MediaServer,
    make_fleet: FleetFactory,
) -> SimRig:
    """The above together: ``sim.fleet(["st-1"])``, ``sim.bridge``, ``sim.recorder``..."""
    return SimRig(broker, recorder, bridge, inbox, media, make_fleet)


@pytest.fixture(scope="module")
def dynsec_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynsecBroker]:
    """One dynamic-security broker per test module, with the observer account."""
    started = start_dynsec_broker(tmp_path_factory.mktemp("dynsec"))
    yield started
    started.stop()


@pytest.fixture
def dynsec_recorder(dynsec_broker: DynsecBroker) -> Iterator[Recorder]:
    """Records and validates every message on ``dynsec_broker`` (as the observer)."""
    yield from recording(dynsec_broker.recorder())


@pytest.fixture
def live(
    settings: Settings,
    tmp_path: Path,
    persistent_broker: Mosquitto,
    persistent_recorder: Recorder,
) -> Iterator[Live]:
    """The whole service end to end (see :mod:`tests.support.live`)."""
    harness = start_live(settings, tmp_path, persistent_broker, persistent_recorder)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def deployments(
    database_url: str,
    tmp_path: Path,
    persistent_broker: Mosquitto,
    persistent_recorder: Recorder,
) -> Iterator[Callable[..., Any]]:
    """``deployments(Kind, seed=fn)``: a seeded deployment (``Kind``, a subclass of
    :class:`~tests.support.service.Deployment`) of the service's processes."""
    made: list[Deployment] = []

    def make(kind: type[Deployment], *, seed: Callable[[Any], object]) -> Deployment:
        made.append(
            deploy(
                kind,
                database_url=database_url,
                tmp=tmp_path,
                broker=persistent_broker,
                recorder=persistent_recorder,
                seed=seed,
            )
        )
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()
