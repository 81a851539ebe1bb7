"""The bridge from the database to the pure playlist builder.

What the dispatcher calls:

- `station_plans(session, days, tz, station_ids=None) -> list[DayPlan]`: every station's
  built day (`schedules.builder.build_days`) for the given local days, from every
  approved, enabled rule (dispatch turns the items into ``desired`` playlists);
- `plan_inputs(session) -> (rules, programmes)`: the builder's inputs, if it wants to
  build itself.

Targets are resolved for the whole fleet at once by the registry's `TargetResolver`, so
10,000 stations and hundreds of rules cost a handful of queries.  Only enabled stations
are targeted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from datetime import date, tzinfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kernel.approval import Approval
from kernel.db import utcnow
from schedules.builder import build_days
from schedules.models import ProgrammeItem, ScheduleRule, StreamSource
from schedules.plans import DayPlan, PlannedItem, ProgrammeSpec, RuleSpec
from schedules.service.rules import stored_recurrence
from schedules.service.specs import programme_specs
from schedules.service.targets import target_ids
from stations.targets import TargetResolver


def local_today(tz: tzinfo) -> date:
    return utcnow().astimezone(tz).date()


def plan_inputs(
    session: Session, *, resolver: TargetResolver | None = None
) -> tuple[list[RuleSpec], dict[int, ProgrammeSpec]]:
    """Every approved, enabled rule as a `RuleSpec` (targets resolved to enabled station
    ids), and the programmes they play.  A rule whose targets resolve to nothing has an
    empty ``station_ids`` (the builder then plans it nowhere)."""
    rules = list(
        session.scalars(
            select(ScheduleRule)
            .where(ScheduleRule.enabled.is_(True), ScheduleRule.approval == Approval.APPROVED)
            .order_by(ScheduleRule.id)
        )
    )
    resolver = resolver or TargetResolver(session)
    targets = target_ids(session, [rule.id for rule in rules])
    resolver.load_groups({g for t in targets.values() for g in t[1]})
    specs = [
        RuleSpec(
            id=rule.id,
            title=rule.title,
            programme_id=rule.programme_id,
            station_ids=resolver.resolve(*targets[rule.id]),
            priority=rule.priority,
            order=rule.order,
            created_at=rule.created_at,
            recurrence=stored_recurrence(rule.recurrence),
            shift_tolerance_s=rule.shift_tolerance_s,
            volume=rule.volume,
            slot_s=rule.slot_s,
        )
        for rule in rules
    ]
    return specs, programme_specs(session, {rule.programme_id for rule in rules})


def station_plans(
    session: Session,
    days: Sequence[date],
    tz: tzinfo,
    station_ids: Collection[int] | None = None,
) -> list[DayPlan]:
    """Each station's built day for every local day in ``days`` (see `build_days`).

    ``station_ids`` limits the plans to those stations (each gets an entry, empty when
    nothing targets it).  Deterministic: the same database gives the same plans.
    """
    rules, programmes = plan_inputs(session)
    wanted = None if station_ids is None else sorted(station_ids)
    if wanted is not None:
        chosen = frozenset(wanted)
        rules = [rule for rule in rules if rule.station_ids & chosen]
    return build_days(rules, programmes.values(), list(days), tz, stations=wanted)


def calendar_items(
    session: Session, station_ids: Collection[int], first: date, days: int, tz: tzinfo
) -> list[PlannedItem]:
    """Every item of the stations over ``days`` local days from ``first``."""
    wanted = [first + dt.timedelta(days=offset) for offset in range(days)]
    plans = station_plans(session, wanted, tz, station_ids)
    return [item for plan in plans for items in plan.stations.values() for item in items]


def asset_users(session: Session, asset_id: int) -> list[str]:
    """Who still uses a media asset: rules not yet over whose programme plays it, and
    stream sources using it as their fallback (the media DELETE route answers 409)."""
    yesterday = utcnow().date() - dt.timedelta(days=1)
    rules = session.execute(
        select(ScheduleRule.id, ScheduleRule.title)
        .join(ProgrammeItem, ProgrammeItem.programme_id == ScheduleRule.programme_id)
        .where(
            ProgrammeItem.asset_id == asset_id,
            or_(ScheduleRule.ends_on.is_(None), ScheduleRule.ends_on >= yesterday),
        )
        .distinct()
        .order_by(ScheduleRule.id)
    )
    sources = session.execute(
        select(StreamSource.id, StreamSource.name)
        .where(StreamSource.fallback_asset_id == asset_id)
        .order_by(StreamSource.id)
    )
    return [f"lịch phát '{title}' (#{rid})" for rid, title in rules] + [
        f"nguồn tiếp sóng '{name}' (#{sid})" for sid, name in sources
    ]
