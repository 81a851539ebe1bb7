"""Helpers for the schedules API tests (imported by the schedules API test modules).

Media assets are inserted straight into the database (ready, with a made-up rendition
hash): building playlists needs only their hash, size and duration, and this keeps the
slow parts (ffmpeg, espeak-ng) for the few tests that are about them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import AssetSource, AssetStatus, MediaAsset
from kernel.approval import Approval
from kernel.text import fold
from stations.models import Area
from tests.api import ok

VN = ZoneInfo("Asia/Ho_Chi_Minh")
MINUTE = 60_000
_serial = itertools.count(1)


def make_asset(
    factory: sessionmaker[Session],
    title: str = "Bản tin",
    *,
    minutes: float = 1.0,
    approved: bool = True,
    owner_area: str | None = None,
    category: str = "tin-tuc",
) -> int:
    """A ready asset (approved by default) with a fake rendition; returns its id."""
    n = next(_serial)
    with factory() as session:
        owner = (
            session.scalar(select(Area.id).where(Area.code == owner_area)) if owner_area else None
        )
        asset = MediaAsset(
            title=title,
            title_folded=fold(title),
            category=category,
            tags=[],
            source=AssetSource.UPLOAD,
            status=AssetStatus.READY,
            approval=Approval.APPROVED if approved else Approval.DRAFT,
            approved_by="kiem-duyet" if approved else None,
            owner_area_id=owner,
            created_by="test",
            sha256=hashlib.sha256(f"{title}-{n}".encode()).hexdigest(),
            ext="mp3",
            mime="audio/mpeg",
            bytes=10_000 + n,
            duration_ms=int(minutes * MINUTE),
        )
        session.add(asset)
        session.commit()
        return asset.id


def asset_item(asset_id: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "asset", "asset_id": asset_id, **extra}


def relay_item(source_id: int, minutes: float, **extra: Any) -> dict[str, Any]:
    return {"kind": "relay", "source_id": source_id, "duration_ms": int(minutes * MINUTE), **extra}


def gap_item(seconds: float) -> dict[str, Any]:
    return {"kind": "gap", "duration_ms": int(seconds * 1000)}


def daily(*times: str, **extra: Any) -> dict[str, Any]:
    return {"when": {"kind": "daily", "times": list(times)}, **extra}


def rule_body(
    programme_id: int,
    recurrence: dict[str, Any],
    *,
    title: str = "Lịch phát",
    groups: list[str] | None = None,
    stations: list[str] | None = None,
    areas: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    targets: dict[str, list[str]] = {}
    if groups is not None:
        targets["groups"] = groups
    if stations is not None:
        targets["stations"] = stations
    if areas is not None:
        targets["areas"] = areas
    return {
        "title": title,
        "programme_id": programme_id,
        "targets": targets or {"groups": ["all"]},
        "recurrence": recurrence,
        **extra,
    }


def create_source(
    client: TestClient, headers: dict[str, str], name: str = "VOV1", **extra: Any
) -> dict[str, Any]:
    body = {
        "name": name,
        "url": f"http://stream.example/{fold(name).replace(' ', '-')}",
        "kind": "national",
        **extra,
    }
    created: dict[str, Any] = ok(
        client.post("/api/v1/stream-sources", json=body, headers=headers), 201
    )
    return created


def create_programme(
    client: TestClient,
    headers: dict[str, str],
    *items: dict[str, Any],
    title: str = "Chương trình",
    **extra: Any,
) -> dict[str, Any]:
    body = {"title": title, "items": list(items), **extra}
    created: dict[str, Any] = ok(client.post("/api/v1/programmes", json=body, headers=headers), 201)
    return created


def create_rule(
    client: TestClient,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    approver: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a rule and, with `approver`, approve it."""
    rule: dict[str, Any] = ok(
        client.post("/api/v1/schedules/rules", json=body, headers=headers), 201
    )
    if approver is not None:
        rule = ok(client.post(f"/api/v1/schedules/rules/{rule['id']}/approve", headers=approver))
        assert rule["approval"] == "approved"
    return rule


def playlist(
    client: TestClient, headers: dict[str, str], sid: str, day: dt.date
) -> list[dict[str, Any]]:
    body = ok(
        client.get(f"/api/v1/stations/{sid}/playlist?date={day.isoformat()}", headers=headers)
    )
    assert body["station"] == sid
    assert body["date"] == day.isoformat()
    items: list[dict[str, Any]] = body["items"]
    return items


def hhmm(timestamp: str) -> str:
    """``HH:MM`` of an RFC 3339 timestamp, read in Vietnam time."""
    return dt.datetime.fromisoformat(timestamp).astimezone(VN).strftime("%H:%M")


def field_of(response: Any) -> list[Any]:
    """The ``loc`` of the first error of a 422 answer."""
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    loc: list[Any] = response.json()["detail"][0]["loc"]
    return loc
