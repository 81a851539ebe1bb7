"""Alert sources for the CAP tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api import ok


def make_source(client: TestClient, admin: dict[str, str], name: str, *, auto_air: bool) -> str:
    made = ok(
        client.post(
            "/api/v1/alert-sources", json={"name": name, "auto_air": auto_air}, headers=admin
        ),
        201,
    )
    return str(made["token"])


@pytest.fixture
def auto_token(client: TestClient, admin: dict[str, str]) -> str:
    """A pre-authorised source: its alerts air at once."""
    return make_source(client, admin, "PCTT Long An", auto_air=True)


@pytest.fixture
def held_token(client: TestClient, admin: dict[str, str]) -> str:
    """A source whose alerts wait for an approver."""
    return make_source(client, admin, "Đài KTTV Nam Bộ", auto_air=False)
