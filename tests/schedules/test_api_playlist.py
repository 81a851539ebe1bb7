"""The playlist API: every recurrence form reaches a station's day, exact times with the
+07:00 offset, protocol-valid items, signed media URLs, relays with fallbacks, midnight."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from firmware_bridge.schema import MessageKind, schema_errors
from kernel.security import Role
from schedules.calendars import lunar_to_solar, tet
from tests.api import make_user, ok
from tests.schedules.api_helpers import (
    asset_item,
    create_programme,
    create_rule,
    create_source,
    daily,
    hhmm,
    make_asset,
    playlist,
    relay_item,
    rule_body,
)

pytestmark = [pytest.mark.usefixtures("tan_an"), pytest.mark.calendar]
DAY = dt.date(2026, 11, 26)  # a Thursday; lunar 18/10; in the past for every run
VN = ZoneInfo("Asia/Ho_Chi_Minh")
STATION = "p1-kp-1"


def _desired(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        "generated_at": "2026-11-25T12:00:00+07:00",
        "config": {
            "volume": 70,
            "telemetry_interval_s": 60,
            "groups": ["phuong-1"],
            "timezone": "Asia/Ho_Chi_Minh",
        },
        "window": {"from": "2026-11-26T00:00:00+07:00", "to": "2026-11-28T00:00:00+07:00"},
        "playlist": items,
    }


@pytest.fixture
def approver(tan_an: None, session_factory: sessionmaker[Session]) -> dict[str, str]:
    return make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])


def test_each_recurrence_form_reaches_the_playlist(
    client: TestClient,
    admin: dict[str, str],
    approver: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    programme = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Tin", minutes=5))
    )
    pid = programme["id"]
    forms: dict[str, dict[str, Any]] = {
        "daily": daily("06:00"),
        "weekly": {"when": {"kind": "weekly", "weekdays": ["TH"], "times": ["07:00"]}},
        "monthly": {"when": {"kind": "monthly", "days": [26], "times": ["08:00"]}},
        "every_n_days": {
            "when": {"kind": "every_n_days", "n": 3, "anchor": "2026-11-20", "times": ["09:00"]}
        },
        "rrule": {"when": {"kind": "rrule", "rule": "FREQ=WEEKLY;BYDAY=TH;BYHOUR=10;BYMINUTE=30"}},
        "lunar": {"when": {"kind": "lunar", "days": [1, 15], "times": ["11:00"]}},
        "once": {"when": {"kind": "once", "at": "2026-11-26T12:00:00"}},
        "holidays": daily("13:00", skip_holidays=True, skip_dates=["2026-11-27"]),
    }
    rules = {
        name: create_rule(
            client, admin, rule_body(pid, rec, title=name, stations=[STATION]), approver=approver
        )
        for name, rec in forms.items()
    }

    def day_of(day: dt.date) -> dict[str, str]:
        items = playlist(client, admin, STATION, day)
        by_rule = {r["id"]: name for name, r in rules.items()}
        return {by_rule[i["rule_id"]]: hhmm(i["start_at"]) for i in items}

    assert day_of(DAY) == {
        "daily": "06:00",
        "weekly": "07:00",
        "monthly": "08:00",
        "every_n_days": "09:00",
        "rrule": "10:30",
        "once": "12:00",
        "holidays": "13:00",
    }
    # the next day: only the daily rule (13:00 is a skip date)
    assert day_of(DAY + dt.timedelta(days=1)) == {"daily": "06:00"}
    assert day_of(DAY + dt.timedelta(days=3))["every_n_days"] == "09:00"
    full_moon = lunar_to_solar(2026, 10, 15)
    assert day_of(full_moon)["lunar"] == "11:00"
    assert day_of(lunar_to_solar(2026, 11, 1))["lunar"] == "11:00"
    # Tết: the holiday rule stays silent from the 29th to the 5th day, then comes back
    new_year = tet(2027)
    assert "holidays" in day_of(new_year - dt.timedelta(days=3))
    for offset in range(-2, 5):
        assert "holidays" not in day_of(new_year + dt.timedelta(days=offset)), offset
    assert "holidays" in day_of(new_year + dt.timedelta(days=5))

    items = playlist(client, admin, STATION, DAY)
    first = items[0]
    assert first["item_id"] == f"r{rules['daily']['id']}-20261126T0600-0"
    assert first["start_at"] == "2026-11-26T06:00:00.000+07:00"
    assert first["end_at"] == "2026-11-26T06:05:00.000+07:00"
    assert first["kind"] == "file"
    assert first["priority"] == 3
    assert first["title"] == "Tin"
    assert schema_errors(MessageKind.DESIRED, _desired(items)) == []
    # media URLs are signed until 24 h after the item ends, and verify on download
    url = first["media"]["url"]
    exp = int(parse_qs(urlsplit(url).query)["exp"][0])
    assert exp == int(dt.datetime(2026, 11, 27, 6, 5, tzinfo=dt.UTC).timestamp()) - 7 * 3600
    # DAY is in the past, so its link has expired: refused
    assert client.get(url).status_code == 403
    # today's link of the same rule is genuine and valid: 404 (the test asset has no file)
    today = dt.datetime.now(VN).date()
    daily_today = next(
        i for i in playlist(client, admin, STATION, today) if i["rule_id"] == rules["daily"]["id"]
    )
    assert client.get(daily_today["media"]["url"]).status_code == 404


def test_midnight_relay_fallback_and_bad_dates(
    client: TestClient,
    admin: dict[str, str],
    approver: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    fallback = make_asset(session_factory, "Xin quý vị thông cảm", minutes=0.1)
    vov = create_source(client, admin, "VOV1", fallback_asset_id=fallback)
    night = create_programme(
        client,
        admin,
        asset_item(make_asset(session_factory, "Nhạc đêm", minutes=15)),
        relay_item(vov["id"], 5, title="Tin cuối ngày"),
        title="Đêm",
    )
    rule = create_rule(
        client,
        admin,
        rule_body(night["id"], daily("23:50"), stations=[STATION], volume=40),
        approver=approver,
    )
    early = create_programme(
        client, admin, asset_item(make_asset(session_factory, "Sớm", minutes=5))
    )
    create_rule(
        client,
        admin,
        rule_body(early["id"], daily("00:05"), stations=[STATION], shift_tolerance_s=3600),
        approver=approver,
    )
    today = playlist(client, admin, STATION, DAY)
    assert [(hhmm(i["start_at"]), hhmm(i["end_at"])) for i in today] == [
        ("00:10", "00:15"),  # 00:05 of today waited for yesterday's night programme
        ("23:50", "00:05"),
        ("00:05", "00:10"),  # the relay: starts after midnight but belongs to the block
    ]
    crossing = today[1]
    assert crossing["start_at"] == "2026-11-26T23:50:00.000+07:00"
    assert crossing["end_at"] == "2026-11-27T00:05:00.000+07:00"
    assert crossing["volume"] == 40
    relay = today[2]
    assert relay["kind"] == "relay"
    assert relay["url"] == vov["url"]
    assert relay["title"] == "Tin cuối ngày"
    assert relay["end_at"] == "2026-11-27T00:10:00.000+07:00"
    assert relay["fallback"]["bytes"] > 0
    assert relay["fallback"]["url"].startswith("http://testserver/media/")
    tomorrow = playlist(client, admin, STATION, DAY + dt.timedelta(days=1))
    assert [hhmm(i["start_at"]) for i in tomorrow] == ["00:10", "23:50", "00:05"]
    assert not {i["item_id"] for i in today} & {i["item_id"] for i in tomorrow}
    assert schema_errors(MessageKind.DESIRED, _desired(today)) == []
    # a source switched off: its fallback plays (looped) for the relay's slot
    ok(client.patch(f"/api/v1/stream-sources/{vov['id']}", json={"enabled": False}, headers=admin))
    relay = playlist(client, admin, STATION, DAY)[2]
    assert relay["kind"] == "file"
    assert relay["loop"] is True
    assert relay["media"]["sha256"]
    assert "url" in relay["media"]
    assert "fallback" not in relay
    assert rule["id"] == relay["rule_id"]
    # the date must be a real date
    assert (
        client.get(
            f"/api/v1/stations/{STATION}/playlist?date=2026-02-30", headers=admin
        ).status_code
        == 422
    )
    assert client.get("/api/v1/stations/khong-co/playlist", headers=admin).status_code == 404
    # today, by default
    body = ok(client.get(f"/api/v1/stations/{STATION}/playlist", headers=admin))
    assert body["timezone"] == "Asia/Ho_Chi_Minh"
    assert len(body["items"]) == 3
