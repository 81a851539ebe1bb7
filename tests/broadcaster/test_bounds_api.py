"""Integers and dates are bounded by validation, never by the database (issue 15,
defect 6 and the OpenAPI items of defect 8): a 422 with a Vietnamese message."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

BIG = str(2**64)

CASES = [
    f"/api/v1/playlog?offset={BIG}",
    f"/api/v1/users/{BIG}",
    f"/api/v1/broadcasts/{BIG}",
    f"/api/v1/programmes/{BIG}",
    f"/api/v1/media/{BIG}",
    f"/api/v1/schedules/rules?programme_id={BIG}",
    "/api/v1/audit?to=0.5",
    "/api/v1/schedules/conflicts?date=0",
    "/api/v1/playlog?from=9999-12-31T23:59:59-01:00",
    "/api/v1/playlog?to=0001-01-01T00:00:00%2B14:00",
    "/api/v1/playlog?from=1999-12-31",
    "/api/v1/playlog?from=2026-13-01",
    "/api/v1/playlog?from=2026-12-01T05:00:00",
    "/api/v1/playlog?from=2026-12-02&to=2026-12-01",
]


@pytest.mark.parametrize("path", CASES)
def test_out_of_range_parameters_are_422(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    response = client.get(path, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["message_vi"]


def test_out_of_range_bodies_are_422(client: TestClient, admin: dict[str, str]) -> None:
    compose = client.post(
        "/api/v1/media/compose", json={"title": "x", "parts": [2**64]}, headers=admin
    )
    assert compose.status_code == 422, compose.text
    rule = client.post(
        "/api/v1/schedules/rules",
        json={
            "title": "x",
            "programme_id": 2**63,
            "targets": {"groups": ["all"]},
            "recurrence": {"when": {"kind": "once", "at": "9999-12-31T23:00:00"}},
        },
        headers=admin,
    )
    assert rule.status_code == 422, rule.text
    broadcast = client.post(
        "/api/v1/broadcasts",
        json={
            "targets": {"groups": ["all"]},
            "content": {"text": "Thử"},
            "start_at": "9999-12-31T23:59:59-01:00",
        },
        headers=admin,
    )
    assert broadcast.status_code == 422, broadcast.text


def test_filters_take_plain_dates_as_whole_days_in_site_time(
    client: TestClient, admin: dict[str, str]
) -> None:
    """``from=2026-12-01&to=2026-12-01`` is the whole of 1 December in Vietnam."""
    day = client.get("/api/v1/playlog?from=2026-12-01&to=2026-12-01", headers=admin)
    assert day.status_code == 200, day.text
    instants = client.get(
        "/api/v1/playlog",
        params={"from": "2026-12-01T00:00:00+07:00", "to": "2026-12-02T00:00:00+07:00"},
        headers=admin,
    )
    assert day.json() == instants.json()
    for path in (
        "/api/v1/audit",
        "/api/v1/alarms",
        "/api/v1/alarms/availability",
        "/api/v1/playlog/totals",
        "/api/v1/dispatch/dead-letters",
    ):
        response = client.get(f"{path}?from=2026-11-01&to=2026-11-30", headers=admin)
        assert response.status_code == 200, (path, response.text)
    naive = client.get("/api/v1/playlog?from=2026-12-01T05:00:00", headers=admin)
    assert "múi giờ" in naive.json()["message_vi"]
