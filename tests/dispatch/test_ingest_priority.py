"""The service's ingest (the bridge's consumer thread, which stores what stations send)
runs at ``BROADCASTER_INGEST_NICE`` below the rest of the process: when every core is
busy, the broker, the API and the outbox publisher get them first (issue 14)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from tests.support.live import Live
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a niceness per thread"),
]


def test_the_ingest_thread_yields_the_cores_to_the_rest_of_the_service(live: Live) -> None:
    worker = live.worker()
    assert live.settings.ingest_nice == 10  # the default
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    name = f"{worker.bridge.config.client_id}-consumer"
    consumer = wait_until(
        lambda: next((t for t in threading.enumerate() if t.name == name), None),
        what="the ingest thread",
    )
    assert consumer.native_id is not None
    wanted = min(19, own + live.settings.ingest_nice)
    wait_until(
        lambda: os.getpriority(os.PRIO_PROCESS, consumer.native_id) == wanted,
        what=f"the ingest thread at niceness {wanted}",
    )
    # the HTTP server and the outbox publisher are where the process is
    publisher = next(t for t in threading.enumerate() if t.name == "outbox")
    assert publisher.native_id is not None
    assert os.getpriority(os.PRIO_PROCESS, publisher.native_id) == own
