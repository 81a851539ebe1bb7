"""`broadcaster serve` freezes what is alive once it has started, so CPython's full
collections no longer walk the start-up heap (`broadcaster.app.freeze_start_up_heap`)."""

from __future__ import annotations

import gc
import logging

import pytest
from fastapi.testclient import TestClient

from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Settings


def test_a_served_app_freezes_its_start_up_heap_until_it_stops(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broadcaster.app")
    with TestClient(create_app(settings, role=Role.API, freeze_heap=True)) as client:
        assert gc.get_freeze_count() > 10_000  # modules, mappers, schemas, routes
        frozen = [r.getMessage() for r in caplog.records if "heap frozen" in r.getMessage()]
        assert len(frozen) == 1, frozen
        assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() == 0  # thawed at shutdown


def test_an_app_made_in_a_process_that_makes_many_does_not(settings: Settings) -> None:
    before = gc.get_freeze_count()
    with TestClient(create_app(settings, role=Role.API)):
        assert gc.get_freeze_count() == before
