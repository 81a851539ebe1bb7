"""Every route is prepared at start-up, so the first request to a router (the first
emergency among them) does not pay for building its routes (`broadcaster.app.warm_routes`)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi.testclient import TestClient

from broadcaster.app import WARM_UP_PATH, create_app, warm_routes
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from stations import targets


def test_the_warm_up_path_is_matched_by_no_route(settings: Settings) -> None:
    """Routing only prepares the routers it walks through before a match: a route that
    took the warm-up path (a catch-all page) would leave every router after it cold."""
    app = create_app(settings, role=Role.API)
    assert asyncio.run(warm_routes(app)) == 404
    with TestClient(app) as client:
        assert client.get(WARM_UP_PATH).status_code == 404


def test_the_service_prepares_its_routes_at_start(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broadcaster.app")
    app = create_app(settings.model_copy(update={"route_warm_up": True}), role=Role.API)
    with TestClient(app) as client:
        prepared = [r.getMessage() for r in caplog.records if "routes prepared" in r.getMessage()]
        assert len(prepared) == 1, prepared
        assert "answered 404" in prepared[0]
        assert client.get("/readyz").status_code == 200


def test_the_test_apps_skip_it(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    assert settings.route_warm_up is False
    caplog.set_level(logging.INFO, logger="broadcaster.app")
    with TestClient(create_app(settings, role=Role.API)):
        assert not [r for r in caplog.records if "routes prepared" in r.getMessage()]


@pytest.mark.usefixtures("tan_an")  # a registry (through the first, unprepared app)
def test_the_api_prepares_the_emergencys_way_out_at_start(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the API runs, the start-up also plans a city-wide broadcast without storing
    it (`broadcaster.app.prepare_way_out`): the fleet is in memory before the first
    emergency comes."""
    caplog.set_level(logging.INFO, logger="broadcaster.app")
    app = create_app(settings.model_copy(update={"route_warm_up": True}), role=Role.API)
    with TestClient(app) as client:
        prepared = [r.getMessage() for r in caplog.records if "way out prepared" in r.getMessage()]
        assert len(prepared) == 1, prepared
        assert "(2 routes" in prepared[0]  # the city and the ``all`` group
        with app.state.sessionmaker() as session:
            assert targets.FLEETS.peek(session) is not None
        assert client.get("/readyz").status_code == 200
