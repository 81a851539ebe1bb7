"""Each station's retained desired state: config + the playlist for today and tomorrow.

This is the one place a plan becomes the wire: `playlist` turns the schedule builder's
`PlannedItem` into the protocol's `PlaylistItem` (media URLs signed until
`MEDIA_URL_GRACE` after the end of the item using them, as the protocol promises), and
`build` assembles one `Desired` body per station from the `firmware_bridge.messages`
models.  Its digest (the canonical JSON without version and generation time) decides
whether anything changed: an unchanged plan signs to the same URLs and gives the same
digest.  `apply` bumps a station's version only when the digest changed (versions are
monotonic and persisted) and publishes every version not yet published; a station is
never sent the same content twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library.service import MediaLibrary
from broadcaster.dispatch import playlog
from firmware_bridge.client import Bridge
from firmware_bridge.messages import Config, Desired, DesiredPlan, Media, PlaylistItem, Window
from kernel.db import among, commit_retrying
from schedules import service as schedules
from schedules.plans import MediaRef, PlannedItem
from stations import live
from stations import service as stations
from stations.models import Station

log = logging.getLogger(__name__)

TELEMETRY_INTERVAL_S = 60
#: Media URLs stay valid this long after the end of the item using them (protocol).
MEDIA_URL_GRACE = dt.timedelta(hours=24)
#: Longest title the protocol carries.
MAX_TITLE = 500


def _media(ref: MediaRef, library: MediaLibrary, until: dt.datetime) -> Media:
    return Media(
        url=library.url(ref.sha256, ref.ext, until + MEDIA_URL_GRACE),
        sha256=ref.sha256,
        bytes=ref.bytes,
        duration_ms=ref.duration_ms,
    )


def playlist_item(item: PlannedItem, library: MediaLibrary) -> PlaylistItem:
    """The protocol's ``desired.playlist[]`` entry for a planned item."""
    file = item.kind == "file" and item.media is not None
    relay = item.kind == "relay" and item.stream is not None
    return PlaylistItem(
        item_id=item.item_id,
        kind=item.kind,
        title=item.title[:MAX_TITLE],
        start_at=item.start_at,
        end_at=item.end_at,
        priority=item.priority,
        volume=item.volume,
        media=_media(item.media, library, item.end_at) if file and item.media else None,
        loop=item.loop if file else None,
        url=item.stream.url if relay and item.stream else None,
        fallback=(_media(item.fallback, library, item.end_at) if relay and item.fallback else None),
    )


def playlist(items: Sequence[PlannedItem], library: MediaLibrary) -> list[PlaylistItem]:
    """A station's planned items as protocol playlist entries, in order."""
    return [playlist_item(item, library) for item in items]


@dataclass
class StationDoc:
    """One station's desired body (all but version and generation time) and its digest.

    ``plan`` is the playlist and window the station shares with every station on the same
    plan: serialised and validated once, whatever the number of stations."""

    station_id: int
    sid: str
    config: Config
    plan: DesiredPlan
    digest: str
    items: list[PlannedItem] = field(default_factory=list)

    @property
    def window(self) -> Window:
        return self.plan.window

    @property
    def playlist(self) -> tuple[PlaylistItem, ...]:
        return self.plan.playlist

    def message(self, version: int, generated_at: dt.datetime) -> Desired:
        return Desired(
            version=version,
            generated_at=generated_at,
            config=self.config,
            window=self.window,
            playlist=list(self.playlist),
        )

    def payload(self, version: int, generated_at: dt.datetime) -> bytes:
        """The wire bytes of :meth:`message` (only the station's own part serialised)."""
        return self.plan.payload(version, generated_at, self.config)


@dataclass
class Span:
    """The days a desired document covers: from local midnight today, two days."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def around(cls, now: dt.datetime, tz: ZoneInfo) -> Span:
        today = now.astimezone(tz).date()
        start = dt.datetime.combine(today, dt.time(), tzinfo=tz)
        end = dt.datetime.combine(today + dt.timedelta(days=2), dt.time(), tzinfo=tz)
        return cls(start=start, end=end)


def _digest(config: Config, plan: DesiredPlan) -> str:
    """SHA-256 of the canonical ``{"config", "playlist", "window"}`` body (sorted keys,
    compact); the plan's parts come pre-serialised from :class:`DesiredPlan`."""
    config_json = json.dumps(
        config.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    canonical = (
        f'{{"config":{config_json},"playlist":{plan.canonical_playlist},'
        f'"window":{plan.canonical_window}}}'
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def build(
    session: Session,
    library: MediaLibrary,
    *,
    tz: ZoneInfo,
    now: dt.datetime,
    station_ids: Collection[int] | None = None,
    telemetry_interval_s: int = TELEMETRY_INTERVAL_S,
) -> list[StationDoc]:
    """The desired document of every enabled station (or of `station_ids`).

    Stations with the same items share one playlist (built once per distinct plan).
    """
    span = Span.around(now, tz)
    today = span.start.date()
    days = [today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)]
    query = select(Station).where(Station.enabled.is_(True)).order_by(Station.id)
    if station_ids is not None:
        query = query.where(among(session, Station.id, station_ids))
    enabled = list(session.scalars(query))
    plans = schedules.station_plans(session, days, tz, {s.id for s in enabled})
    items_by_station: dict[int, list[PlannedItem]] = {s.id: [] for s in enabled}
    for plan in plans:
        for station_id, items in plan.stations.items():
            if station_id in items_by_station:
                items_by_station[station_id].extend(
                    item for item in items if item.end_at > span.start and item.start_at < span.end
                )
    window = Window(from_=span.start, to=span.end)
    groups = stations.station_groups(session)
    plans_by_items: dict[tuple[PlannedItem, ...], DesiredPlan] = {}
    docs = []
    for station in enabled:
        ordered = tuple(sorted(items_by_station[station.id], key=lambda i: (i.start_at, i.item_id)))
        shared = plans_by_items.get(ordered)
        if shared is None:
            shared = plans_by_items[ordered] = DesiredPlan(window, playlist(ordered, library))
        config = Config(
            volume=station.default_volume,
            telemetry_interval_s=telemetry_interval_s,
            groups=groups.get(station.id, []),
            timezone=tz.key,
        )
        docs.append(
            StationDoc(
                station.id, station.sid, config, shared, _digest(config, shared), list(ordered)
            )
        )
    return docs


@dataclass
class ApplyResult:
    changed: int = 0
    published: int = 0
    failed: int = 0
    unchanged: int = 0


#: Documents per batch: versions committed together, then published together and their
#: broker acknowledgements awaited before the next batch (paces the republish of a whole
#: city; the outbox thread's emergency publishes go out between batches).
PUBLISH_BATCH = 500


def apply(
    session: Session,
    bridge: Bridge | None,
    docs: list[StationDoc],
    *,
    tz: ZoneInfo,
    now: dt.datetime,
    batch: int = PUBLISH_BATCH,
) -> ApplyResult:
    """Bump versions of changed documents, record their plans, publish what is due.

    Works in batches of ``batch`` stations: their versions (and plans) are committed
    before any of them is published, so a crash never reuses a version number for
    different content; the batch is then published (each payload spliced from its shared
    plan, see :class:`DesiredPlan`) and the acknowledged versions committed.
    """
    result = ApplyResult()
    span = Span.around(now, tz)
    for first in range(0, len(docs), max(1, batch)):
        chunk = docs[first : first + max(1, batch)]

        # both commits are run again when PostgreSQL picks them as a deadlock victim of
        # the ack ingest (which updates the same state rows): a lost bump only delays the
        # batch, but a lost "published" mark would publish the same version twice
        def bump(
            chunk: list[StationDoc] = chunk,
        ) -> tuple[list[tuple[StationDoc, int]], ApplyResult]:
            counted = ApplyResult()
            return _bump_versions(session, chunk, span, now, counted), counted

        due, counted = commit_retrying(session, bump)
        result.changed += counted.changed
        result.unchanged += counted.unchanged
        if not due:
            continue
        if bridge is None or not bridge.connected:
            result.failed += len(due)
            continue
        payloads = [
            (bridge.topics.desired(doc.sid), doc.payload(version, now)) for doc, version in due
        ]
        acked = set(bridge.publish_prepared(payloads, retain=True, wait_s=30.0))
        published = {
            doc.station_id: version
            for (doc, version), (topic, _) in zip(due, payloads, strict=True)
            if topic in acked
        }
        commit_retrying(session, functools.partial(_mark_published, session, published, now))
        result.published += len(published)
        result.failed += len(due) - len(published)
    return result


def _mark_published(session: Session, published: dict[int, int], now: dt.datetime) -> None:
    """Record the versions the broker acknowledged (unless a newer one was bumped since)."""
    states = live.load_states(session, list(published))
    for sid, version in sorted(published.items()):
        state = states.get(sid)
        if state is not None and state.desired_version == version:
            state.desired_published_version = version
            state.desired_at = now


def _bump_versions(
    session: Session,
    docs: list[StationDoc],
    span: Span,
    now: dt.datetime,
    result: ApplyResult,
) -> list[tuple[StationDoc, int]]:
    """Give every changed document a new version (and record its plan); the documents
    whose version is not yet published, with that version."""
    states = live.states_of(session, [doc.station_id for doc in docs])
    due: list[tuple[StationDoc, int]] = []
    plans: dict[int, list[playlog.PlannedPlay]] = {}
    for doc in docs:
        state = states[doc.station_id]
        if state.desired_digest != doc.digest:
            state.desired_version = (state.desired_version or 0) + 1
            state.desired_digest = doc.digest
            plans[doc.station_id] = [
                playlog.PlannedPlay(  # station, item, rule, title, kind, priority, start, end
                    doc.station_id,
                    *(item.item_id, item.rule_id, item.title, item.kind, item.priority),
                    *(item.start_at, item.end_at),
                )
                for item in doc.items
            ]
            result.changed += 1
        else:
            result.unchanged += 1
        if state.desired_published_version != state.desired_version:
            due.append((doc, state.desired_version))
    window = (span.start - dt.timedelta(days=1), span.end)
    playlog.record_plans(session, plans, window=window, now=now)
    return due
