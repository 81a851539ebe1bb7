"""The ``live`` fixture: the whole service end to end (see :mod:`support.live`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.settings import Settings
from tests.support.live import Live, live_service


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[Live]:
    with live_service(settings, tmp_path) as harness:
        yield harness
