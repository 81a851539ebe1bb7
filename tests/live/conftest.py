"""Live paging end to end: the service (app + worker over HTTP) on a real Mosquitto,
with a real Icecast2 it pushes to (`tests.support.icecast`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from broadcaster.settings import Settings
from tests.support.icecast import running_icecast
from tests.support.live import Live, start_live
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder


@pytest.fixture
def paging(
    settings: Settings,
    tmp_path: Path,
    persistent_broker: Mosquitto,
    persistent_recorder: Recorder,
) -> Iterator[Live]:
    """The whole service with live paging on its own Icecast."""
    with running_icecast(tmp_path / "icecast") as icecast:
        configured = settings.model_copy(
            update={"live_icecast_url": SecretStr(icecast.source_url), "live_idle_s": 2.0}
        )
        harness = start_live(configured, tmp_path, persistent_broker, persistent_recorder)
        try:
            yield harness
        finally:
            harness.stop()
