"""The one wire format of a plan: planned items become `firmware_bridge.messages` models in
dispatch (`desired.playlist`), a station's document validates against the protocol
schema, and an unchanged plan gives the same digest (nothing is republished)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.service import MediaLibrary
from broadcaster.dispatch import desired
from firmware_bridge.messages import Desired, DesiredPlan, dump_message, parse_message
from firmware_bridge.schema import MessageKind
from kernel.security import Role
from kernel.tiers import Tier
from schedules.builder import build_day
from tests.api import make_user, ok
from tests.schedules import api_helpers as api
from tests.schedules.factories import daily, file_item, gap_item, programme, relay_item, rule

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = dt.date(2026, 11, 26)


def _expiry(url: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(parse_qs(urlsplit(url).query)["exp"][0]), dt.UTC)


def test_planned_items_become_protocol_playlist_items(app: FastAPI) -> None:
    library: MediaLibrary = app.state.media_library
    progs = [
        programme(1, relay_item(30, "VOV")),
        programme(2, file_item(10.5, "Bản tin"), gap_item(0.25), file_item(1, "Nhạc")),
    ]
    rules = [
        rule(1, 1, daily("05:00"), priority=Tier.PRIORITY.priority, volume=70),
        rule(2, 2, daily("05:10"), tolerance_s=3600),
    ]
    items = build_day(rules, progs, DAY, VN).stations[1]
    entries = desired.playlist(items, library)
    dumped = [entry.model_dump(mode="json", by_alias=True) for entry in entries]
    # protocol timestamps: RFC 3339, the zone's offset, milliseconds (format_timestamp)
    assert [entry["start_at"] for entry in dumped] == [
        "2026-11-26T05:00:00.000+07:00",
        "2026-11-26T05:30:00.000+07:00",
        "2026-11-26T05:40:45.000+07:00",
    ]
    relay, bulletin, music = dumped
    assert relay["kind"] == "relay"
    assert relay["url"] == "http://relay.example/1"
    assert relay["volume"] == 70
    assert relay["priority"] == Tier.PRIORITY.priority
    assert "media" not in relay
    assert "loop" not in relay
    assert bulletin["kind"] == "file"
    assert bulletin["loop"] is False
    assert bulletin["media"]["sha256"] == items[1].media.sha256  # type: ignore[union-attr]
    assert "url" not in bulletin
    # each link stays valid 24 h after the end of the item using it
    for entry, item in zip(entries, items, strict=True):
        if entry.media is not None:
            assert _expiry(entry.media.url) == item.end_at + desired.MEDIA_URL_GRACE
    assert music["media"]["url"] != bulletin["media"]["url"]
    message = Desired(
        version=1,
        generated_at=dt.datetime(2026, 11, 25, 12, tzinfo=VN),
        config={"volume": 80, "telemetry_interval_s": 60, "groups": [], "timezone": VN.key},
        window={
            "from": dt.datetime(2026, 11, 26, tzinfo=VN),
            "to": dt.datetime(2026, 11, 28, tzinfo=VN),
        },
        playlist=entries,
    )
    assert parse_message(MessageKind.DESIRED, dump_message(message)) == message


@pytest.mark.usefixtures("tan_an")
def test_unchanged_plan_same_digest_and_every_document_validates(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    approver = make_user(session_factory, "duyet", Role.APPROVER, ["tan-an"])
    news = api.make_asset(session_factory, "Bản tin sáng", minutes=5)
    source = api.create_source(client, admin, "VOV1", fallback_asset_id=news)
    prog = api.create_programme(
        client, admin, api.asset_item(news), api.relay_item(source["id"], 2)
    )
    api.create_rule(
        client,
        admin,
        api.rule_body(prog["id"], api.daily("06:00", "23:50"), groups=["phuong-1"]),
        approver=approver,
    )
    library: MediaLibrary = app.state.media_library
    now = dt.datetime.now(dt.UTC)
    # the playlist of a plan is serialised and validated once, however many stations share it
    built: list[int] = []
    shared_init = DesiredPlan.__init__

    def counting_init(plan: DesiredPlan, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        shared_init(plan, *args, **kwargs)

    monkeypatch.setattr(DesiredPlan, "__init__", counting_init)
    with session_factory() as session:
        first = desired.build(session, library, tz=VN, now=now)
    monkeypatch.undo()
    assert len(first) > 100
    assert len(built) == len({doc.playlist for doc in first}) == 2  # phuong-1's, everyone else's
    with session_factory() as session:
        again = desired.build(session, library, tz=VN, now=now + dt.timedelta(minutes=5))
    assert [d.digest for d in first] == [d.digest for d in again]
    planned = [doc for doc in first if doc.playlist]
    assert planned, "phuong-1's stations have items"
    # stations sharing a plan share one playlist (built once)
    assert len({id(doc.playlist) for doc in planned}) == 1
    for doc in first:
        payload = dump_message(doc.message(3, now))  # validates against the schema
        assert doc.payload(3, now) == payload  # spliced from the shared plan: the same bytes
        assert dump_message(parse_message(MessageKind.DESIRED, payload)) == payload
    # a change to what plays changes the digest of the stations concerned only
    ok(
        client.patch(
            f"/api/v1/stream-sources/{source['id']}", json={"enabled": False}, headers=admin
        )
    )
    with session_factory() as session:
        changed = desired.build(session, library, tz=VN, now=now)
    before = {d.sid: d.digest for d in first}
    after = {d.sid: d.digest for d in changed}
    moved = {sid for sid in before if before[sid] != after[sid]}
    assert moved == {d.sid for d in planned}
