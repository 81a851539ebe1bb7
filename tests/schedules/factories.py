"""Small builders for schedule-rule tests (imported by the schedules test modules)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from schedules.plans import (
    DayPlan,
    MediaRef,
    PlannedItem,
    ProgrammeItemSpec,
    ProgrammeSpec,
    RuleSpec,
    StreamRef,
)
from schedules.recurrence import Recurrence, parse_recurrence

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CREATED = datetime(2026, 1, 1, 8, 0)
MINUTE_MS = 60_000


def media(asset_id: int = 1, duration_ms: int = MINUTE_MS) -> MediaRef:
    return MediaRef(
        asset_id=asset_id,
        sha256=f"{asset_id:064x}",
        bytes=1000 + asset_id,
        duration_ms=duration_ms,
    )


def stream(source_id: int = 1) -> StreamRef:
    return StreamRef(source_id=source_id, url=f"http://relay.example/{source_id}")


def file_item(minutes: float, title: str = "Bản tin", asset_id: int = 1) -> ProgrammeItemSpec:
    ms = int(minutes * MINUTE_MS)
    return ProgrammeItemSpec(kind="file", title=title, duration_ms=ms, media=media(asset_id, ms))


def relay_item(minutes: float, title: str = "VOV", source_id: int = 1) -> ProgrammeItemSpec:
    return ProgrammeItemSpec(
        kind="relay",
        title=title,
        duration_ms=int(minutes * MINUTE_MS),
        stream=stream(source_id),
        fallback=media(900 + source_id),
    )


def gap_item(minutes: float) -> ProgrammeItemSpec:
    return ProgrammeItemSpec(kind="gap", title="", duration_ms=int(minutes * MINUTE_MS))


def programme(pid: int, *items: ProgrammeItemSpec, title: str | None = None) -> ProgrammeSpec:
    return ProgrammeSpec(id=pid, title=title or f"Chương trình {pid}", items=tuple(items))


def daily(*times: str, **extra: Any) -> Recurrence:
    return parse_recurrence({"when": {"kind": "daily", "times": list(times)}, **extra})


def when(data: Mapping[str, Any], **extra: Any) -> Recurrence:
    return parse_recurrence({"when": dict(data), **extra})


def rule(
    rid: int,
    pid: int,
    recurrence: Recurrence,
    *,
    stations: Iterable[int] = (1,),
    priority: int = 3,
    order: int = 0,
    created_at: datetime = CREATED,
    tolerance_s: int = 0,
    volume: int | None = None,
    slot_s: int | None = None,
    title: str | None = None,
) -> RuleSpec:
    return RuleSpec(
        id=rid,
        title=title or f"Lịch {rid}",
        programme_id=pid,
        station_ids=frozenset(stations),
        priority=priority,
        order=order,
        created_at=created_at,
        recurrence=recurrence,
        shift_tolerance_s=tolerance_s,
        volume=volume,
        slot_s=slot_s,
    )


def starts(items: Iterable[PlannedItem]) -> list[str]:
    """``HH:MM`` (or ``HH:MM:SS``) local starts of items, for compact assertions."""
    out = []
    for item in items:
        local = item.start_at.astimezone(VN)
        out.append(local.strftime("%H:%M:%S" if local.second else "%H:%M"))
    return out


def assert_no_overlap(plans: Iterable[DayPlan]) -> None:
    """No two items of one station overlap, across all the plans (days) given."""
    per_station: dict[int, list[PlannedItem]] = {}
    for plan in plans:
        for station_id, items in plan.stations.items():
            per_station.setdefault(station_id, []).extend(items)
    for station_id, items in per_station.items():
        ordered = sorted(items, key=lambda item: item.start_at)
        ids = [item.item_id for item in ordered]
        assert len(ids) == len(set(ids)), f"station {station_id}: an item appears twice"
        for before, after in itertools.pairwise(ordered):
            assert before.end_at <= after.start_at, (
                f"station {station_id}: {before.item_id} overlaps {after.item_id}"
            )
