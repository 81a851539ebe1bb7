"""Fixtures for the firmware bridge: a real broker per test, a validating recorder,
a media server, the server-side bridge and simulated fleets.

Every test that uses ``recorder`` ends by asserting that every message seen on the
broker was valid against the shared schemas (tests that publish garbage on purpose
declare it with ``recorder.expect_invalid``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.client import Bridge
from tests.support.loa import FleetFactory, Inbox, RawPublisher, make_bridge, wait_until
from tests.support.media_server import MediaServer
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto without persistence."""
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto whose retained messages and sessions survive restarts."""
    server = Mosquitto(tmp_path / "pbroker", persistence=True).start()
    yield server
    server.stop()


def _recorder(server: Mosquitto) -> Iterator[Recorder]:
    rec = Recorder(server.host, server.port).start()
    yield rec
    rec.stop()
    rec.assert_all_valid()


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    """Records and validates every message on ``broker``."""
    yield from _recorder(broker)


@pytest.fixture
def persistent_recorder(persistent_broker: Mosquitto) -> Iterator[Recorder]:
    """Records and validates every message on ``persistent_broker``."""
    yield from _recorder(persistent_broker)


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
def raw(broker: Mosquitto) -> Iterator[RawPublisher]:
    """Publishes arbitrary bytes on ``broker``."""
    publisher = RawPublisher(broker)
    yield publisher
    publisher.stop()
