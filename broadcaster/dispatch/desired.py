"""Each station's retained desired state: config + the playlist for today and tomorrow.

`build` turns the schedules into one document per station; its digest (the canonical
JSON without version and generation time) decides whether anything changed.  Media
URLs are signed until the day after the window ends, so an unchanged plan signs to the
same URLs and the same digest.  `apply` bumps a station's version only when the digest
changed (versions are monotonic and persisted) and publishes every version not yet
published; a station is never sent the same content twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library.models import MediaAsset
from audio_library.service import MediaLibrary
from broadcaster.dispatch import playlog
from firmware_bridge.client import Bridge
from firmware_bridge.messages import Desired
from schedules import service as schedules
from schedules.builder import MediaRef, PlannedItem, desired_item
from stations import live
from stations import service as stations
from stations.models import Station

log = logging.getLogger(__name__)

TELEMETRY_INTERVAL_S = 60


@dataclass
class StationDoc:
    station_id: int
    sid: str
    body: dict[str, Any]
    digest: str
    items: list[PlannedItem] = field(default_factory=list)


@dataclass
class Window:
    start: dt.datetime
    end: dt.datetime
    url_expiry: dt.datetime

    @classmethod
    def around(cls, now: dt.datetime, tz: ZoneInfo) -> Window:
        today = now.astimezone(tz).date()
        start = dt.datetime.combine(today, dt.time(), tzinfo=tz)
        end = dt.datetime.combine(today + dt.timedelta(days=2), dt.time(), tzinfo=tz)
        return cls(start=start, end=end, url_expiry=end + dt.timedelta(days=1))


def _timestamp(value: dt.datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


def build(
    session: Session,
    library: MediaLibrary,
    *,
    tz: ZoneInfo,
    now: dt.datetime,
    station_ids: Collection[int] | None = None,
    telemetry_interval_s: int = TELEMETRY_INTERVAL_S,
) -> list[StationDoc]:
    """The desired document of every enabled station (or of `station_ids`)."""
    window = Window.around(now, tz)
    today = window.start.date()
    days = [today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)]
    query = select(Station).where(Station.enabled.is_(True)).order_by(Station.id)
    if station_ids is not None:
        query = query.where(Station.id.in_(station_ids))
    targets = list(session.scalars(query))
    plans = schedules.station_plans(session, days, tz, {s.id for s in targets})
    items_by_station: dict[int, list[PlannedItem]] = {s.id: [] for s in targets}
    for plan in plans:
        for station_id, items in plan.stations.items():
            if station_id in items_by_station:
                items_by_station[station_id].extend(
                    item
                    for item in items
                    if item.end_at > window.start and item.start_at < window.end
                )
    media_ids = {
        ref.asset_id
        for items in items_by_station.values()
        for item in items
        for ref in (item.media, item.fallback)
        if ref is not None
    }
    exts = {
        asset_id: ext or "mp3"
        for asset_id, ext in session.execute(
            select(MediaAsset.id, MediaAsset.ext).where(MediaAsset.id.in_(media_ids))
        )
    }

    def media_url(ref: MediaRef) -> str:
        return library.url(ref.sha256, exts.get(ref.asset_id, "mp3"), window.url_expiry)

    groups = stations.station_groups(session)
    docs = []
    for station in targets:
        ordered = sorted(items_by_station[station.id], key=lambda i: (i.start_at, i.item_id))
        body = {
            "config": {
                "volume": station.default_volume,
                "telemetry_interval_s": telemetry_interval_s,
                "groups": groups.get(station.id, []),
                "timezone": tz.key,
            },
            "window": {"from": _timestamp(window.start, tz), "to": _timestamp(window.end, tz)},
            "playlist": [desired_item(item, media_url) for item in ordered],
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        docs.append(StationDoc(station.id, station.sid, body, digest, ordered))
    return docs


@dataclass
class ApplyResult:
    changed: int = 0
    published: int = 0
    failed: int = 0
    unchanged: int = 0


def apply(
    session: Session,
    bridge: Bridge | None,
    docs: list[StationDoc],
    *,
    tz: ZoneInfo,
    now: dt.datetime,
) -> ApplyResult:
    """Bump versions of changed documents, record their plans, publish what is due.

    Commits after every station, so a version is persisted before it is published
    and a crash never reuses a version number for different content.
    """
    result = ApplyResult()
    window = Window.around(now, tz)
    for doc in docs:
        state = live.state_of(session, doc.station_id)
        if state.desired_digest != doc.digest:
            state.desired_version = (state.desired_version or 0) + 1
            state.desired_digest = doc.digest
            playlog.record_plan(
                session,
                doc.station_id,
                [
                    playlog.PlannedPlay(
                        station_id=doc.station_id,
                        item_id=item.item_id,
                        rule_id=item.rule_id,
                        title=item.title,
                        kind=item.kind,
                        priority=item.priority,
                        start=item.start_at,
                        end=item.end_at,
                    )
                    for item in doc.items
                ],
                window=(window.start - dt.timedelta(days=1), window.end),
                now=now,
            )
            result.changed += 1
        else:
            result.unchanged += 1
        session.commit()
        if state.desired_published_version == state.desired_version:
            continue
        if bridge is None or not bridge.connected:
            result.failed += 1
            continue
        message = Desired.model_validate(
            {"version": state.desired_version, "generated_at": now, **doc.body}
        )
        if bridge.publish_desired(doc.sid, message, wait_s=10.0):
            state.desired_published_version = state.desired_version
            state.desired_at = now
            session.commit()
            result.published += 1
        else:
            result.failed += 1
    return result
