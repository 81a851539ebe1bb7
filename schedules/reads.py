"""What the schedules API answers: read models built from the service's objects.

Each function takes a batch (one page of a list) and asks the services for what it
needs in a few queries, whatever the page size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from kernel.audit import snapshot
from kernel.db import utcnow
from schedules.models import Programme, ScheduleRule, StreamSource
from schedules.schemas import (
    ProgrammeItemRead,
    ProgrammeRead,
    RuleRead,
    StreamSourceRead,
    TargetsRead,
)
from schedules.service import programmes as programme_service
from schedules.service import rules as rule_service
from schedules.service import sources as source_service
from schedules.service.targets import lost_targets, rule_targets
from stations import service as stations
from stations.targets import TargetResolver


def source_reads(session: Session, sources: Sequence[StreamSource]) -> list[StreamSourceRead]:
    codes = stations.area_codes(session, [s.owner_area_id for s in sources])
    return [
        StreamSourceRead(
            id=s.id,
            key=s.key,
            name=s.name,
            url=s.url,
            kind=s.kind,
            fallback_asset_id=s.fallback_asset_id,
            fallback_title=s.fallback.title if s.fallback else None,
            fallback_playable=bool(s.fallback and s.fallback.playable),
            owner_area_code=codes.get(s.owner_area_id) if s.owner_area_id else None,
            enabled=s.enabled,
            created_by=s.created_by,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )
        for s in sources
    ]


def source_snapshot(source: StreamSource) -> dict[str, Any]:
    return snapshot(source, source_service.SOURCE_FIELDS)


def programme_reads(
    session: Session, programmes: Sequence[Programme], *, rules_reset: Sequence[int] = ()
) -> list[ProgrammeRead]:
    states = programme_service.item_states(session, programmes)
    counts = programme_service.rule_counts(session, [p.id for p in programmes])
    codes = stations.area_codes(session, [p.owner_area_id for p in programmes])
    out = []
    for p in programmes:
        items = [
            ProgrammeItemRead(
                position=item.position,
                kind=item.kind,
                title=item.title,
                duration_ms=states[item.id].duration_ms,
                asset_id=item.asset_id,
                asset_title=states[item.id].asset_title,
                source_id=item.source_id,
                source_name=states[item.id].source_name,
                text=item.text,
                voice=item.voice,
                rate=item.rate,
                problem=states[item.id].problem,
            )
            for item in p.items
        ]
        out.append(
            ProgrammeRead(
                id=p.id,
                key=p.key,
                title=p.title,
                owner_area_code=codes.get(p.owner_area_id) if p.owner_area_id else None,
                duration_ms=sum(i.duration_ms or 0 for i in items),
                items=items,
                rule_count=counts.get(p.id, 0),
                rules_reset=list(rules_reset),
                created_by=p.created_by,
                created_at=p.created_at,
                updated_at=p.updated_at,
            )
        )
    return out


def programme_snapshot(programme: Programme) -> dict[str, Any]:
    return {
        "title": programme.title,
        "owner_area_id": programme.owner_area_id,
        "items": [
            {
                "kind": i.kind.value,
                "title": i.title,
                "asset_id": i.asset_id,
                "source_id": i.source_id,
                "duration_ms": i.duration_ms,
                "text": i.text,
                "voice": i.voice,
                "rate": i.rate,
            }
            for i in programme.items
        ],
    }


def rule_reads(session: Session, rules: Sequence[ScheduleRule], tz: dt.tzinfo) -> list[RuleRead]:
    targets = rule_targets(session, [r.id for r in rules])
    resolver = TargetResolver(session)
    resolver.load_groups({g for t in targets.values() for g, _ in t.groups})
    durations = programme_service.programme_durations(
        session, {r.programme.id: r.programme for r in rules}.values()
    )
    codes = stations.area_codes(session, [r.owner_area_id for r in rules])
    now = utcnow()
    out = []
    for r in rules:
        t = targets[r.id]
        out.append(
            RuleRead(
                id=r.id,
                key=r.key,
                title=r.title,
                programme_id=r.programme_id,
                programme_title=r.programme.title,
                duration_ms=durations.get(r.programme_id, 0),
                targets=TargetsRead(
                    stations=[n for _, n in t.stations],
                    groups=[n for _, n in t.groups],
                    areas=[n for _, n in t.areas],
                ),
                lost_targets=lost_targets(r, t),
                station_count=len(resolver.resolve(*t.ids())),
                tier=r.tier,
                priority=r.priority,
                order=r.order,
                owner_area_code=codes.get(r.owner_area_id) if r.owner_area_id else None,
                volume=r.volume,
                recurrence=r.recurrence,
                shift_tolerance_s=r.shift_tolerance_s,
                slot_s=r.slot_s,
                enabled=r.enabled,
                approval=r.approval,
                approved_by=r.approved_by,
                approved_at=r.approved_at,
                approval_note=r.approval_note,
                next_occurrences=rule_service.next_occurrences(
                    rule_service.stored_recurrence(r.recurrence), tz, now=now
                ),
                created_by=r.created_by,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )
    return out


def rule_snapshot(rule: ScheduleRule) -> dict[str, Any]:
    return snapshot(rule, rule_service.RULE_FIELDS) | {"targets": rule.target_names}
