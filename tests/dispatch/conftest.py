"""The ``live`` fixture: the whole service end to end (see :mod:`support.live`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from kernel.security import Role as UserRole
from tests.api import make_user
from tests.support.live import Live, start_server
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.protocol import Recorder


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[Live]:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    recorder = Recorder(broker.host, broker.port).start()
    port = free_port()
    live_settings = settings.model_copy(
        update={"mqtt_url": broker.url, "public_base_url": f"http://127.0.0.1:{port}"}
    )
    app = create_app(live_settings, role=Role.ALL)
    server, thread = start_server(app, port)
    factory = app.state.sessionmaker
    admin = make_user(factory, "admin", UserRole.ADMIN, can_emergency=True)
    harness = Live(
        settings=live_settings,
        broker=broker,
        recorder=recorder,
        app=app,
        base_url=f"http://127.0.0.1:{port}",
        admin=admin,
        factory=factory,
        server=server,
        thread=thread,
        tmp=tmp_path,
    )
    try:
        yield harness
    finally:
        for fleet in harness.fleets:
            fleet.stop()
        harness.stop_server()
        recorder.stop()
        broker.stop()
        recorder.assert_all_valid()
