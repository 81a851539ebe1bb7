"""iCalendar feeds: they parse with `icalendar`, match the playlist API item for item,
and work for calendar programs through signed links (good, forged, expired)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from schedules.service import calendar_links as service
from tests.api import make_user, ok
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    daily,
    make_asset,
    playlist,
    rule_body,
)

pytestmark = [pytest.mark.usefixtures("tan_an"), pytest.mark.calendar]
DAY = dt.date(2026, 11, 26)
STATION = "p2-kp-1"


@pytest.fixture
def scheduled(
    tan_an: None, client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    approver = make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])
    news = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Bản tin", minutes=15)), title="Tin"
    )
    night = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Nhạc đêm", minutes=30)), title="Đêm"
    )
    create_rule(
        client,
        admin,
        rule_body(news["id"], daily("06:00", "11:30"), groups=["phuong-2"]),
        approver=approver,
    )
    create_rule(
        client,
        admin,
        rule_body(night["id"], daily("23:45"), stations=[STATION], tier="priority"),
        approver=approver,
    )
    create_rule(
        client,
        admin,
        rule_body(
            news["id"], daily("06:05"), stations=[STATION], shift_tolerance_s=1800, title="Dời"
        ),
        approver=approver,
    )


def _events(body: bytes) -> list[Any]:
    calendar = Calendar.from_ical(body)
    return list(calendar.walk("VEVENT"))


def _matches(events: list[Any], items: list[dict[str, Any]]) -> None:
    assert len(events) == len(items)
    for event, item in zip(events, items, strict=True):
        assert str(event["UID"]) == f"{item['item_id']}@broadcaster"
        assert event.decoded("DTSTART") == dt.datetime.fromisoformat(item["start_at"])
        assert event.decoded("DTEND") == dt.datetime.fromisoformat(item["end_at"])
        assert str(event["SUMMARY"]) == item["title"]
        assert int(event["X-BROADCASTER-PRIORITY"]) == item["priority"]
        assert int(event["X-BROADCASTER-RULE"]) == item["rule_id"]


@pytest.mark.usefixtures("scheduled")
def test_station_and_area_feeds_match_the_playlists(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get(
        f"/api/v1/stations/{STATION}/calendar.ics?days=2&start={DAY}", headers=admin
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    items = playlist(client, admin, STATION, DAY) + playlist(
        client, admin, STATION, DAY + dt.timedelta(days=1)
    )
    assert len(items) == 8  # 06:00, 06:15 (moved), 11:30, 23:45 (ends after midnight), twice
    _matches(_events(response.content), items)
    calendar = Calendar.from_ical(response.content)
    assert str(calendar["X-WR-TIMEZONE"]) == "Asia/Ho_Chi_Minh"

    area = client.get(f"/api/v1/areas/phuong-2/calendar.ics?days=1&start={DAY}", headers=admin)
    assert area.status_code == 200
    events = _events(area.content)
    # the same 06:00 and 11:30 items on every station of Phường 2 are one event each;
    # p2-kp-1's own (and its moved 06:05) are extra
    own = playlist(client, admin, STATION, DAY)
    other = playlist(client, admin, "p2-kp-2", DAY)
    expected = {(i["item_id"], dt.datetime.fromisoformat(i["start_at"])) for i in own + other}
    assert len(expected) == 4
    assert {(str(e["X-BROADCASTER-ITEM"]), e.decoded("DTSTART")) for e in events} == expected
    assert len({str(e["UID"]) for e in events}) == len(events)
    # scope, bad input, no credentials
    assert (
        client.get(f"/api/v1/stations/{STATION}/calendar.ics?days=0", headers=admin).status_code
        == 422
    )
    assert (
        client.get(f"/api/v1/stations/{STATION}/calendar.ics?days=40", headers=admin).status_code
        == 422
    )
    unauthenticated = client.get(f"/api/v1/stations/{STATION}/calendar.ics")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/stations/khong-co/calendar.ics", headers=admin).status_code == 404


@pytest.mark.usefixtures("scheduled")
def test_signed_calendar_links(
    client: TestClient, admin: dict[str, str], app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    link = ok(client.get(f"/api/v1/stations/{STATION}/calendar-link?days=2", headers=admin))
    expires = dt.datetime.fromisoformat(link["expires_at"])
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(days=365))) < dt.timedelta(
        minutes=1
    )
    parts = urlsplit(link["url"])
    assert parts.netloc == "testserver"
    assert parts.path == f"/api/v1/stations/{STATION}/calendar.ics"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert set(query) == {"days", "exp", "sig"}
    assert query["days"] == "2"
    # a calendar program: no credentials at all
    good = client.get(f"{parts.path}?{parts.query}&start={DAY}")
    assert good.status_code == 200
    items = playlist(client, admin, STATION, DAY) + playlist(
        client, admin, STATION, DAY + dt.timedelta(days=1)
    )
    _matches(_events(good.content), items)
    assert client.get(link["url"]).status_code == 200  # from today
    # forged or altered
    sig = query["sig"]
    forged = {**query, "sig": ("0" if sig[0] != "0" else "1") + sig[1:]}
    for altered in (
        forged,
        {**query, "days": "7"},
        {**query, "exp": str(int(query["exp"]) + 60)},
        {**query, "sig": "xyz"},
        {"days": "2", "exp": query["exp"]},
    ):
        response = client.get(f"{parts.path}?{urlencode(altered)}")
        assert response.status_code == 403, altered
        assert "not valid" in response.json()["detail"]
    # the same signature does not open another station's or an area's feed
    assert client.get(f"/api/v1/stations/p2-kp-2/calendar.ics?{parts.query}").status_code == 403
    assert client.get(f"/api/v1/areas/phuong-2/calendar.ics?{parts.query}").status_code == 403
    # expired
    library = app.state.media_library
    key = service.calendar_key(library.url_secret)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    expired = service.sign_calendar_url("http://testserver", parts.path, 2, past, key)
    response = client.get(expired)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    # area links; a commune operator gets links for their own stations only
    area_link = ok(client.get("/api/v1/areas/phuong-2/calendar-link?valid_days=30", headers=admin))
    assert client.get(area_link["url"]).status_code == 200
    lbn = make_user(session_factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    assert client.get(f"/api/v1/stations/{STATION}/calendar-link", headers=lbn).status_code == 404
    assert client.get("/api/v1/areas/phuong-2/calendar-link", headers=lbn).status_code == 404
    assert client.get("/api/v1/areas/phuong-2/calendar.ics", headers=lbn).status_code == 404
    assert ok(client.get("/api/v1/stations/lbn-cau-tre/calendar-link", headers=lbn))["url"]
