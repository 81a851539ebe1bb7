"""Alarm thresholds, evaluation and lifecycle, and subscriptions (`queue`: the delivery queue).

Lifecycle: an alarm is *raised* when its rule first holds for a station, may be
*acknowledged* (by whom, with a note) and is *cleared* when the condition has been
absent for the station's ``clear_hold_s`` (flap damping: a condition that comes back
within the hold keeps the same alarm, counted in ``raise_count``, and notifies nobody
again).  There is at most one open alarm per station and condition; cleared alarms stay
as the history.  A severity that rises (warning → critical) is an *escalation*.

Every raise, escalation and clear queues one delivery per matching subscription in the
same transaction (an outbox); `notify.Notifier` sends them after the commit.  The queue
is bounded: past ``max_pending`` pending deliveries new ones are recorded as dropped.

Services flush; the caller (the worker's job, the ingest batch, a route) commits.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from broadcaster.alarms import rules
from broadcaster.alarms.models import (
    Alarm,
    AlarmDelivery,
    AlarmStatus,
    AlarmSubscription,
    AlarmThreshold,
    Channel,
    DeliveryStatus,
)
from broadcaster.alarms.rules import Condition, Severity
from broadcaster.reorg import service as reorg
from kernel import spreadsheets
from kernel.db import among, paginate
from kernel.errors import ConflictError, InvalidInput, NotFoundError
from kernel.local_time import SITE_ZONE
from stations import live
from stations import service as stations
from stations.models import (
    Area,
    AreaLevel,
    ConnectionCause,
    Station,
    StationConnection,
    StationKind,
    StationState,
)
from stations.targets import IDS_PER_STATEMENT

MAX_PENDING = 10_000


class AlarmNotFound(NotFoundError):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"alarm {alarm_id} not found", message_vi="Không tìm thấy cảnh báo")


class SubscriptionNotFound(NotFoundError):
    def __init__(self, sub_id: int) -> None:
        super().__init__(
            f"subscription {sub_id} not found", message_vi="Không tìm thấy đăng ký nhận cảnh báo"
        )


# --- thresholds ------------------------------------------------------------------------


def _kind_overrides(session: Session) -> dict[StationKind, dict[str, float]]:
    found: dict[StationKind, dict[str, float]] = defaultdict(dict)
    for row in session.scalars(
        select(AlarmThreshold).where(AlarmThreshold.station_kind.is_not(None))
    ):
        assert row.station_kind is not None
        found[row.station_kind][row.key] = row.value
    return found


def _station_overrides(
    session: Session, station_ids: Collection[int] | None
) -> dict[int, dict[str, float]]:
    query = select(AlarmThreshold).where(AlarmThreshold.station_id.is_not(None))
    if station_ids is not None:
        query = query.where(among(session, AlarmThreshold.station_id, station_ids))
    found: dict[int, dict[str, float]] = defaultdict(dict)
    for row in session.scalars(query):
        assert row.station_id is not None
        found[row.station_id][row.key] = row.value
    return found


def kind_thresholds(session: Session) -> dict[str, dict[str, Any]]:
    """Per station kind: defaults, overrides and the effective values."""
    overrides = _kind_overrides(session)
    return {
        kind.value: {
            "defaults": rules.defaults_for(kind),
            "overrides": dict(overrides.get(kind, {})),
            "effective": rules.defaults_for(kind) | overrides.get(kind, {}),
        }
        for kind in StationKind
    }


def station_thresholds(session: Session, station: Station) -> dict[str, Any]:
    kind = _kind_overrides(session).get(station.kind, {})
    own = _station_overrides(session, [station.id]).get(station.id, {})
    return {
        "station": station.sid,
        "kind": station.kind.value,
        "overrides": dict(own),
        "effective": rules.defaults_for(station.kind) | kind | own,
    }


def _apply_overrides(
    session: Session,
    values: Mapping[str, float | None],
    current: dict[str, float],
    base: dict[str, float],
    *,
    kind: StationKind | None,
    station_id: int | None,
) -> dict[str, float]:
    wanted = {k: v for k, v in values.items() if v is not None}
    checked = rules.validate_thresholds(wanted)
    removed = {k for k, v in values.items() if v is None}
    unknown = [k for k in removed if k not in rules.THRESHOLDS]
    if unknown:
        rules.validate_thresholds({unknown[0]: 0})  # raises the "unknown threshold" 422
    merged = {k: v for k, v in current.items() if k not in removed} | checked
    rules.check_consistent(base | merged)
    match = (
        AlarmThreshold.station_kind == kind
        if kind is not None
        else AlarmThreshold.station_id == station_id
    )
    session.execute(delete(AlarmThreshold).where(match))
    for key, value in sorted(merged.items()):
        session.add(AlarmThreshold(station_kind=kind, station_id=station_id, key=key, value=value))
    session.flush()
    return merged


def set_kind_thresholds(
    session: Session, kind: StationKind, values: Mapping[str, float | None]
) -> dict[str, float]:
    """Override thresholds for every station of a kind (None removes an override)."""
    current = _kind_overrides(session).get(kind, {})
    return _apply_overrides(
        session, values, dict(current), rules.defaults_for(kind), kind=kind, station_id=None
    )


def set_station_thresholds(
    session: Session, station: Station, values: Mapping[str, float | None]
) -> dict[str, float]:
    """Override thresholds for one station (None removes an override)."""
    base = rules.defaults_for(station.kind) | _kind_overrides(session).get(station.kind, {})
    current = _station_overrides(session, [station.id]).get(station.id, {})
    return _apply_overrides(session, values, dict(current), base, kind=None, station_id=station.id)


# --- evaluation and lifecycle ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchFacts:
    """What dispatch knows of the counting window (an hour by default), per station id
    (the worker looks it up)."""

    plays_missed: Mapping[int, int]
    unacknowledged: Mapping[int, int]

    @property
    def station_ids(self) -> set[int]:
        return set(self.plays_missed) | set(self.unacknowledged)


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    stations: int
    raised: int = 0
    escalated: int = 0
    cleared: int = 0
    deliveries: int = 0


class _Notifications:
    """Queues deliveries for one evaluation (subscriptions and areas loaded once)."""

    def __init__(self, session: Session, max_pending: int) -> None:
        self.session = session
        self.subscriptions = list(
            session.scalars(
                select(AlarmSubscription)
                .where(AlarmSubscription.enabled.is_(True))
                .order_by(AlarmSubscription.id)
            )
        )
        self.parents: dict[int, int | None] = {}
        self.names: dict[int, str] = {}
        if self.subscriptions:
            for area_id, parent, name in session.execute(
                select(Area.id, Area.parent_id, Area.name)
            ):
                self.parents[area_id] = parent
                self.names[area_id] = name
        self.room: int | None = None
        self.max_pending = max_pending
        self.count = 0

    def _lineage(self, area_id: int) -> set[int]:
        seen: set[int] = set()
        current: int | None = area_id
        while current is not None and current not in seen:
            seen.add(current)
            current = self.parents.get(current)
        return seen

    def queue(self, alarm: Alarm, event: str, station: _StationRow, now: dt.datetime) -> None:
        if not self.subscriptions:
            return
        lineage = self._lineage(station.area_id)
        matching = [
            s
            for s in self.subscriptions
            if s.min_severity.rank <= alarm.severity.rank
            and (s.area_id is None or s.area_id in lineage)
        ]
        if not matching:
            return
        if self.room is None:
            pending = self.session.scalar(
                select(func.count())
                .select_from(AlarmDelivery)
                .where(AlarmDelivery.status == DeliveryStatus.PENDING)
            )
            self.room = self.max_pending - int(pending or 0)
        snapshot = alarm_snapshot(alarm, station.sid, station.name, self.names.get(station.area_id))
        snapshot["event"] = event
        for subscription in matching:
            full = self.room <= 0
            self.session.add(
                AlarmDelivery(
                    alarm_id=alarm.id,
                    subscription_id=subscription.id,
                    event=event,
                    snapshot=snapshot,
                    status=DeliveryStatus.DROPPED if full else DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    last_error="queue full" if full else None,
                )
            )
            self.room -= 1
            self.count += 0 if full else 1


def alarm_snapshot(
    alarm: Alarm, sid: str, station_name: str, area_name: str | None
) -> dict[str, Any]:
    """What a notification says about an alarm (JSON-ready)."""
    return {
        "alarm_id": alarm.id,
        "sid": sid,
        "station": station_name,
        "area": area_name,
        "condition": alarm.condition.value,
        "title_vi": rules.CONDITION_TITLES_VI[alarm.condition],
        "severity": alarm.severity.value,
        "severity_vi": rules.SEVERITY_LABELS_VI[alarm.severity],
        "status": alarm.status.value,
        "detail": alarm.detail,
        "note_vi": rules.note_vi(alarm.condition, alarm.severity),
        "value": alarm.value,
        "raised_at": alarm.raised_at.isoformat(),
        "cleared_at": alarm.cleared_at.isoformat() if alarm.cleared_at else None,
    }


@dataclass(frozen=True, slots=True)
class _StationRow:
    id: int
    sid: str
    name: str
    kind: StationKind
    area_id: int
    enabled: bool
    online: bool | None
    offline_since: dt.datetime | None
    telemetry: dict[str, Any] | None
    faults: list[str] | None
    online_since: dt.datetime | None
    desired_version: int | None
    desired_at: dt.datetime | None
    applied_version: int | None
    missing: list[str] | None


def _due(also: Collection[int]) -> Any:
    """Stations whose alarms may change with time alone (the periodic sweep): offline,
    with an open alarm (a held clear), behind their plan or missing media.  Online
    stations are also evaluated with every message they send (telemetry each minute)."""
    open_alarm = select(Alarm.station_id).where(Alarm.open_key.is_not(None))
    published = StationState.desired_published_version
    return or_(
        StationState.online.is_(False),
        Station.id.in_(open_alarm),
        and_(published > 0, func.coalesce(StationState.applied_version, -1) != published),
        live.MISSES_MEDIA,
        Station.id.in_(list(also)),
    )


def _stations(
    session: Session, station_ids: Collection[int] | None, *, due: Collection[int] | None
) -> list[_StationRow]:
    query: Select[Any] = select(
        Station.id,
        Station.sid,
        Station.name,
        Station.kind,
        Station.area_id,
        Station.enabled,
        StationState.online,
        StationState.offline_since,
        StationState.telemetry,
        StationState.faults,
        StationState.online_since,
        StationState.desired_published_version,
        StationState.desired_at,
        StationState.applied_version,
        StationState.missing,
    ).outerjoin(StationState, StationState.station_id == Station.id)
    if station_ids is not None:
        query = query.where(Station.id.in_(list(station_ids)))
    if due is not None:
        query = query.where(_due(due))
    return [_StationRow(*row) for row in session.execute(query)]


def evaluate(
    session: Session,
    now: dt.datetime,
    station_ids: Collection[int] | None = None,
    *,
    due_only: bool = False,
    dispatch: DispatchFacts | None = None,
    max_pending: int = MAX_PENDING,
    window_s: float = rules.COUNT_WINDOW_S,
) -> EvaluationResult:
    """Apply the rules to the given stations (default: every station; ``due_only``:
    those whose alarms may change with time alone, or that ``dispatch`` names); flush.
    The rules on missed plays and unacknowledged commands are judged only when
    ``dispatch`` is given; reconnects are counted over the last ``window_s`` (the
    window ``dispatch`` counted in too)."""
    if station_ids is not None and not station_ids:
        return EvaluationResult(0)
    due = (dispatch.station_ids if dispatch else set()) if due_only else None
    rows = _stations(session, station_ids, due=due)
    ids = [r.id for r in rows]
    open_query = select(Alarm).where(Alarm.open_key.is_not(None))
    if station_ids is not None:
        open_query = open_query.where(Alarm.station_id.in_(ids))
    open_alarms = {(a.station_id, a.condition): a for a in session.scalars(open_query)}
    kinds = _kind_overrides(session)
    own = _station_overrides(session, None if station_ids is None else ids)
    since = now - dt.timedelta(seconds=window_s)
    reconnects = live.reconnects_since(session, since, None if station_ids is None else ids)
    unvouched = {
        station_id
        for station_id, cause in live.last_causes(
            session, [r.id for r in rows if r.online is False]
        ).items()
        if cause is ConnectionCause.SERVER
    }
    notes = _Notifications(session, max_pending)
    raised = escalated = cleared = 0
    for row in rows:
        thresholds = rules.defaults_for(row.kind) | kinds.get(row.kind, {}) | own.get(row.id, {})
        observation = rules.Observation(
            online=bool(row.online),
            offline_since=row.offline_since,
            telemetry=row.telemetry,
            faults=frozenset(row.faults or ()),
            enabled=row.enabled,
            online_since=row.online_since,
            desired_version=row.desired_version or 0,
            desired_at=row.desired_at,
            applied_version=row.applied_version,
            missing=len(row.missing or ()),
            reconnects=reconnects.get(row.id, 0),
            offline_unvouched=row.id in unvouched,
            plays_missed=dispatch.plays_missed.get(row.id, 0) if dispatch else None,
            unacknowledged=dispatch.unacknowledged.get(row.id, 0) if dispatch else None,
            window_s=window_s,
        )
        result = rules.evaluate(observation, thresholds, now)
        for condition in result.judged:
            finding = result.found.get(condition)
            alarm = open_alarms.get((row.id, condition))
            if finding is not None and alarm is None:
                alarm = Alarm(
                    station_id=row.id,
                    condition=condition,
                    open_key=condition.value,
                    severity=finding.severity,
                    status=AlarmStatus.RAISED,
                    detail=finding.detail[:300],
                    value=finding.value,
                    raised_at=now,
                    last_seen_at=now,
                    raise_count=1,
                )
                session.add(alarm)
                session.flush()
                notes.queue(alarm, "raised", row, now)
                raised += 1
            elif finding is not None and alarm is not None:
                alarm.last_seen_at = now
                alarm.detail = finding.detail[:300]
                alarm.value = finding.value
                if alarm.clearing_since is not None:
                    alarm.clearing_since = None  # back within the hold: damped
                    alarm.raise_count += 1
                if finding.severity.rank > alarm.severity.rank:
                    alarm.severity = finding.severity
                    notes.queue(alarm, "escalated", row, now)
                    escalated += 1
            elif alarm is not None:
                if alarm.clearing_since is None:
                    alarm.clearing_since = now
                if (now - alarm.clearing_since).total_seconds() >= thresholds["clear_hold_s"]:
                    alarm.status = AlarmStatus.CLEARED
                    alarm.cleared_at = now
                    alarm.open_key = None
                    session.flush()
                    notes.queue(alarm, "cleared", row, now)
                    cleared += 1
    session.flush()
    return EvaluationResult(len(rows), raised, escalated, cleared, notes.count)


def acknowledge(
    session: Session, alarm: Alarm, *, by: str, note: str | None, now: dt.datetime
) -> Alarm:
    if alarm.status is AlarmStatus.CLEARED:
        raise ConflictError(
            f"alarm {alarm.id} is already cleared",
            message_vi="Cảnh báo đã hết, không cần xác nhận",
        )
    alarm.status = AlarmStatus.ACKNOWLEDGED
    alarm.acknowledged_at = now
    alarm.acknowledged_by = by[:64]
    alarm.ack_note = (note or "").strip()[:500] or None
    session.flush()
    return alarm


# --- queries ---------------------------------------------------------------------------


def open_count(session: Session, scope: Collection[int] | None) -> int:
    """How many alarms are open (raised or acknowledged) at the stations in `scope`."""
    query = (
        select(func.count())
        .select_from(Alarm)
        .join(Station, Station.id == Alarm.station_id)
        .where(Alarm.open_key.is_not(None))
    )
    if scope is not None:
        query = query.where(Station.area_id.in_(list(scope)))
    return int(session.scalar(query) or 0)


def open_severity_by_station(
    session: Session, scope: Collection[int] | None
) -> dict[int, Severity]:
    """The most serious open alarm of each station in `scope` that has one."""
    query = (
        select(Alarm.station_id, Alarm.severity)
        .join(Station, Station.id == Alarm.station_id)
        .where(Alarm.open_key.is_not(None))
    )
    if scope is not None:
        query = query.where(Station.area_id.in_(list(scope)))
    worst: dict[int, Severity] = {}
    for station_id, severity in session.execute(query):
        if station_id not in worst or severity.rank > worst[station_id].rank:
            worst[station_id] = severity
    return worst


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """An open alarm as lists show it beside its station."""

    condition: Condition
    severity: Severity
    detail: str
    raised_at: dt.datetime

    @property
    def title_vi(self) -> str:
        return rules.CONDITION_TITLES_VI[self.condition]

    @property
    def severity_vi(self) -> str:
        return rules.SEVERITY_LABELS_VI[self.severity]


def open_alarms_by_station(
    session: Session, scope: Collection[int] | None, station_ids: Collection[int] | None = None
) -> dict[int, list[OpenAlarm]]:
    """The open alarms (raised or acknowledged) of every station in `scope` (or of
    `station_ids`) that has one, in one query: most serious first, then oldest first."""
    query = (
        select(Alarm.station_id, Alarm.condition, Alarm.severity, Alarm.detail, Alarm.raised_at)
        .join(Station, Station.id == Alarm.station_id)
        .where(Alarm.open_key.is_not(None))
        .order_by(Alarm.station_id, Alarm.raised_at, Alarm.id)
    )
    if scope is not None:
        query = query.where(Station.area_id.in_(list(scope)))
    if station_ids is not None:
        query = query.where(Alarm.station_id.in_(list(station_ids)))
    found: dict[int, list[OpenAlarm]] = {}
    for station_id, condition, severity, detail, raised_at in session.execute(query):
        found.setdefault(station_id, []).append(
            OpenAlarm(Condition(condition), Severity(severity), detail or "", raised_at)
        )
    for alarms in found.values():
        alarms.sort(key=lambda a: -a.severity.rank)  # stable: oldest first within a severity
    return found


def silencing_alarm(
    session: Session, station_id: int, start: dt.datetime, end: dt.datetime
) -> Alarm | None:
    """An alarm of the station that kept the loudspeakers silent at some time between
    `start` and `end` (speaker line, amplifier overheat: `rules.silences`), if any."""
    return silenced_between(silencing_alarms(session, [station_id]).get(station_id, []), start, end)


#: the conditions an alarm that silences the loudspeakers has (`rules.silences`)
_SILENCING = [Condition.SPEAKER_LINE, Condition.AMP_TEMPERATURE]


def silencing_alarms(session: Session, station_ids: Collection[int]) -> dict[int, list[Alarm]]:
    """Every alarm that silences the loudspeakers of each of the stations, oldest first
    (one statement): what `silencing_alarm` asks for one play, for a batch of plays
    (`silenced_between` picks among them)."""
    found: dict[int, list[Alarm]] = {}
    ids = sorted(set(station_ids))
    for first in range(0, len(ids), IDS_PER_STATEMENT):
        for alarm in session.scalars(
            select(Alarm)
            .where(
                among(session, Alarm.station_id, ids[first : first + IDS_PER_STATEMENT]),
                Alarm.condition.in_(_SILENCING),
            )
            .order_by(Alarm.raised_at)
        ):
            if rules.silences(alarm.condition, alarm.severity):
                found.setdefault(alarm.station_id, []).append(alarm)
    return found


def silenced_between(alarms: Sequence[Alarm], start: dt.datetime, end: dt.datetime) -> Alarm | None:
    """The first of a station's `silencing_alarms` that was open between start and end."""
    return next(
        (
            a
            for a in alarms
            if a.raised_at <= end and (a.cleared_at is None or a.cleared_at >= start)
        ),
        None,
    )


#: the default zone of the unit history's local dates (the settings' `timezone`)
LOCAL = SITE_ZONE


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    state: str | None = None  # open (raised or acknowledged), raised, acknowledged, cleared
    severity: Severity | None = None
    condition: Condition | None = None
    sid: str | None = None
    area: str | None = None  # an area code: that area and below (its units at the time)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    tz: ZoneInfo = LOCAL  # the local dates of the unit history


def _in_area_at_the_time(session: Session, code: str, tz: ZoneInfo) -> ColumnElement[bool]:
    """Alarms of the stations under the area `code`, each counted for the ward/commune
    its station belonged to when the alarm was raised (after a reorganisation, a former
    unit still finds its alarms, and a new unit only those since the change)."""
    area = stations.get_area(session, code)
    area_ids = stations.subtree_ids(session, [area.id])
    today = Station.area_id.in_(area_ids)
    if area.level is AreaLevel.HAMLET:
        return today  # hamlets keep their stations through a reorganisation
    # the units that lay under it at the time (a dissolved city's wards and communes)
    then = reorg.former_subtree(session, area_ids)
    with_history, periods = reorg.UnitHistory(session).periods(then, tz)
    if not with_history:
        return today
    at_the_time = [
        and_(
            Alarm.station_id == station_id,
            Alarm.raised_at >= start if start is not None else true(),
            Alarm.raised_at < end if end is not None else true(),
        )
        for station_id, start, end in periods
    ]
    return or_(and_(today, Alarm.station_id.not_in(with_history)), *at_the_time)


def get_alarm(session: Session, alarm_id: int, scope: Collection[int] | None) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise AlarmNotFound(alarm_id)
    if scope is not None:
        station = session.get(Station, alarm.station_id)
        if station is None or station.area_id not in scope:
            raise AlarmNotFound(alarm_id)
    return alarm


def list_alarms(
    session: Session,
    flt: AlarmFilter,
    *,
    scope: Collection[int] | None,
    limit: int,
    offset: int,
) -> tuple[list[Alarm], int]:
    """Alarms with their stations: open ones first (critical first), newest first."""
    query = select(Alarm).join(Station, Station.id == Alarm.station_id)
    if scope is not None:
        query = query.where(Station.area_id.in_(list(scope)))
    if flt.area is not None:
        query = query.where(_in_area_at_the_time(session, flt.area, flt.tz))
    if flt.state == "open":
        query = query.where(Alarm.open_key.is_not(None))
    elif flt.state is not None:
        query = query.where(Alarm.status == AlarmStatus(flt.state))
    if flt.severity is not None:
        query = query.where(Alarm.severity == flt.severity)
    if flt.condition is not None:
        query = query.where(Alarm.condition == flt.condition)
    if flt.sid is not None:
        query = query.where(Alarm.station_id == stations.get_station(session, flt.sid).id)
    if flt.since is not None:
        query = query.where(Alarm.raised_at >= flt.since)
    if flt.until is not None:
        query = query.where(Alarm.raised_at < flt.until)
    severity_order = case({s.value: -s.rank for s in Severity}, value=Alarm.severity, else_=0)
    query = query.order_by(
        Alarm.open_key.is_(None), severity_order, Alarm.raised_at.desc(), Alarm.id.desc()
    )
    return paginate(session, query, limit, offset)


def active_counts(session: Session) -> dict[Severity, int]:
    """Open alarms by severity (every severity present, zero if none)."""
    counts = dict.fromkeys(Severity, 0)
    for severity, n in session.execute(
        select(Alarm.severity, func.count())
        .where(Alarm.open_key.is_not(None))
        .group_by(Alarm.severity)
    ):
        counts[Severity(severity)] = int(n)
    return counts


def stations_online(session: Session) -> tuple[int, int]:
    """(online, registered and enabled) stations."""
    total = session.scalar(select(func.count()).select_from(Station).where(Station.enabled))
    online = session.scalar(
        select(func.count())
        .select_from(StationState)
        .join(Station, Station.id == StationState.station_id)
        .where(StationState.online.is_(True), Station.enabled)
    )
    return int(online or 0), int(total or 0)


# --- availability ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AvailabilityRow:
    key: str  # a sid, or a ward/commune code
    name: str
    stations: int  # with a known connection history
    online_s: float
    period_s: float

    @property
    def availability(self) -> float | None:
        known = self.stations * self.period_s
        return round(self.online_s / known, 4) if known else None


def availability(
    session: Session,
    since: dt.datetime,
    until: dt.datetime,
    *,
    by: Literal["station", "area"],
    scope: Collection[int] | None,
    units: reorg.Units = "today",
    tz: ZoneInfo = LOCAL,
) -> list[AvailabilityRow]:
    """Connected time over [since, until), per station or per ward/commune (the mean of
    its stations), from the connection history; stations without one are left out.

    By ward/commune after a reorganisation: ``units="today"`` (today's units), a date
    (the units of that day) or ``"then"`` (the period cut at the changes' local
    midnights, each part read by the units of its time)."""
    history = reorg.UnitHistory(session) if by == "area" and units != "today" else None
    if history is not None and units == "then":
        cuts = [since, *history.changes(since, until, tz), until]
        parts = [
            availability(session, a, b, by=by, scope=scope, units=a.astimezone(tz).date(), tz=tz)
            for a, b in itertools.pairwise(cuts)
        ]
        return _merge_parts(parts)
    online = live.online_seconds(session, since, until)
    period = (until - since).total_seconds()
    areas = {a.id: a for a in session.scalars(select(Area))}
    grouped: dict[str, list[float]] = defaultdict(list)
    names: dict[str, str] = {}
    for station in session.scalars(select(Station).where(Station.id.in_(list(online)))):
        if scope is not None and station.area_id not in scope:
            continue
        key, name = station.sid, station.name
        if by == "area":
            unit_id = station.area_id
            if history is not None and isinstance(units, dt.date):
                unit_id = history.at(station.id, units) or station.area_id
            unit = _unit(areas, unit_id)
            key, name = unit.code, unit.name
        grouped[key].append(online[station.id])
        names[key] = name
    return [
        AvailabilityRow(key, names[key], len(values), round(sum(values), 1), period)
        for key, values in sorted(grouped.items())
    ]


def disconnections(
    session: Session,
    since: dt.datetime,
    until: dt.datetime,
    *,
    by: Literal["station", "area"],
    scope: Collection[int] | None,
    units: reorg.Units = "today",
    tz: ZoneInfo = LOCAL,
) -> dict[str, int]:
    """Connections that ended within [since, until), keyed as `availability` keys its
    rows (a sid, or a ward/commune code read by the same ``units``; with ``"then"`` each
    by the unit of its local date)."""
    history = reorg.UnitHistory(session) if by == "area" and units != "today" else None
    ended = session.execute(
        select(StationConnection.station_id, StationConnection.offline_at).where(
            StationConnection.offline_at >= since, StationConnection.offline_at < until
        )
    ).all()
    if not ended:
        return {}
    stations_ = {
        s.id: s
        for s in session.scalars(select(Station).where(Station.id.in_({i for i, _ in ended})))
    }
    areas = {a.id: a for a in session.scalars(select(Area))} if by == "area" else {}
    counts: dict[str, int] = defaultdict(int)
    for station_id, offline_at in ended:
        station = stations_[station_id]
        if offline_at is None or (scope is not None and station.area_id not in scope):
            continue
        if by == "station":
            counts[station.sid] += 1
            continue
        unit_id = station.area_id
        if history is not None:
            day = units if isinstance(units, dt.date) else offline_at.astimezone(tz).date()
            unit_id = history.at(station_id, day) or station.area_id
        counts[_unit(areas, unit_id).code] += 1
    return dict(counts)


def _merge_parts(parts: list[list[AvailabilityRow]]) -> list[AvailabilityRow]:
    """The rows of consecutive parts of a period as one row per key: connected time
    summed over the time its stations were known (``period_s``: that time per station)."""
    merged: dict[str, tuple[str, int, float, float]] = {}
    for rows in parts:
        for row in rows:
            name, stations_, online, known = merged.get(row.key, (row.name, 0, 0.0, 0.0))
            merged[row.key] = (
                name,
                max(stations_, row.stations),
                online + row.online_s,
                known + row.stations * row.period_s,
            )
    return [
        AvailabilityRow(key, name, count, round(online, 1), known / count if count else 0.0)
        for key, (name, count, online, known) in sorted(merged.items())
    ]


def _availability_table(
    rows: Sequence[AvailabilityRow], by: Literal["station", "area"]
) -> tuple[list[str], list[list[spreadsheets.Cell]]]:
    unit = spreadsheets.UNIT_HEADERS[by]
    headers = [
        f"Mã {unit.lower()}",
        unit,
        "Số trạm",
        "Thời gian kết nối (giờ)",
        "Thời gian của kỳ (giờ)",
        "Tỷ lệ sẵn sàng (%)",
    ]
    table: list[list[spreadsheets.Cell]] = [
        [
            r.key,
            r.name,
            r.stations,
            round(r.online_s / 3600, 2),
            round(r.period_s / 3600, 2),
            round(r.availability * 100, 2) if r.availability is not None else None,
        ]
        for r in rows
    ]
    return headers, table


def availability_csv(rows: Sequence[AvailabilityRow], *, by: Literal["station", "area"]) -> str:
    """`availability` as CSV for Vietnamese Excel (Vietnamese headers, decimal comma)."""
    headers, table = _availability_table(rows, by)
    return spreadsheets.excel_csv(headers, table)


def availability_xlsx(
    rows: Sequence[AvailabilityRow], *, by: Literal["station", "area"], title: str
) -> bytes:
    """`availability` as an Excel workbook (hours and percentages as numbers)."""
    headers, table = _availability_table(rows, by)
    return spreadsheets.xlsx(
        title=title,
        sheet="Tỷ lệ sẵn sàng",
        headers=headers,
        rows=table,
        formats={3: "0.00", 4: "0.00", 5: "0.00"},
        widths=(24, 32, 10, 22, 22, 20),
    )


#: How far a ward/commune outline reaches beyond its outermost stations (degrees, ~300 m).
OUTLINE_MARGIN_DEG = 0.003


def unit_outlines(session: Session, located: Sequence[Station]) -> list[dict[str, Any]]:
    """Outlines of the wards/communes of ``located`` stations (with coordinates) for the
    map.  No administrative boundaries are available offline, so each is the convex hull
    of its stations (shapely), widened by `OUTLINE_MARGIN_DEG` so that one or two
    stations still make an area: ``{"code", "name", "stations", "ring": [[lat, lon]...]}``."""
    from shapely import MultiPoint

    areas = {a.id: a for a in session.scalars(select(Area))}
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for station in located:
        if station.latitude is None or station.longitude is None:
            continue
        unit = _unit(areas, station.area_id)
        points[unit.id].append((station.longitude, station.latitude))
    outlines = []
    for unit_id, found in points.items():
        hull = MultiPoint(found).convex_hull.buffer(OUTLINE_MARGIN_DEG, quad_segs=4)
        ring = [[round(lat, 5), round(lon, 5)] for lon, lat in hull.exterior.coords]
        unit = areas[unit_id]
        outlines.append(
            {"code": unit.code, "name": unit.name, "stations": len(found), "ring": ring}
        )
    return sorted(outlines, key=lambda o: str(o["code"]))


def _unit(areas: Mapping[int, Area], area_id: int) -> Area:
    """The ward/commune an area belongs to (itself if it is one; the city above them)."""
    area = areas[area_id]
    while area.level.rank > 1 and area.parent_id is not None:
        area = areas[area.parent_id]
    return area


# --- subscriptions ---------------------------------------------------------------------


def _check_target(channel: Channel, target: str) -> str:
    target = target.strip()
    if channel is Channel.EMAIL:
        local, _, domain = target.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in target) or len(target) > 254:
            raise InvalidInput(
                f"not an e-mail address: {target[:80]!r}",
                field="target",
                message_vi="Địa chỉ e-mail không hợp lệ",
            )
        return target
    if not target.startswith(("http://", "https://")) or len(target) > 500 or " " in target:
        raise InvalidInput(
            "a webhook target must be an http(s) URL",
            field="target",
            message_vi="Địa chỉ webhook phải là một URL http(s)",
        )
    return target


def create_subscription(
    session: Session,
    *,
    name: str,
    channel: Channel,
    target: str,
    area_id: int | None,
    min_severity: Severity,
    secret: str | None = None,
) -> AlarmSubscription:
    if channel is Channel.WEBHOOK:
        secret = secret or secrets.token_urlsafe(32)  # the HMAC key of its signatures
    target = _check_target(channel, target)
    subscription = AlarmSubscription(name=name.strip()[:200], channel=channel, target=target)
    subscription.secret = secret if channel is Channel.WEBHOOK else None
    subscription.area_id, subscription.min_severity = area_id, min_severity
    subscription.enabled = True
    session.add(subscription)
    session.flush()
    return subscription


def list_subscriptions(
    session: Session, scope: Collection[int] | None, *, city_wide: bool = False
) -> list[AlarmSubscription]:
    """The subscriptions of the areas in `scope` (None: all); a `city_wide` account
    (one assigned the whole city) also sees those for every station (no area)."""
    query = select(AlarmSubscription).order_by(AlarmSubscription.id)
    if scope is not None:
        in_scope = AlarmSubscription.area_id.in_(list(scope))
        query = query.where(
            in_scope | AlarmSubscription.area_id.is_(None) if city_wide else in_scope
        )
    return list(session.scalars(query))


def get_subscription(
    session: Session, sub_id: int, scope: Collection[int] | None, *, city_wide: bool = False
) -> AlarmSubscription:
    """One subscription the account may see (`list_subscriptions`), else not found."""
    subscription = session.get(AlarmSubscription, sub_id)
    if subscription is None:
        raise SubscriptionNotFound(sub_id)
    visible = (
        scope is None
        or subscription.area_id in scope
        or (city_wide and subscription.area_id is None)
    )
    if not visible:
        raise SubscriptionNotFound(sub_id)
    return subscription


def delete_subscription(session: Session, subscription: AlarmSubscription) -> None:
    session.delete(subscription)
    session.flush()


def deliveries(
    session: Session,
    *,
    alarm_id: int | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 100,
) -> list[AlarmDelivery]:
    query = select(AlarmDelivery).order_by(AlarmDelivery.id.desc()).limit(limit)
    if alarm_id is not None:
        query = query.where(AlarmDelivery.alarm_id == alarm_id)
    if status is not None:
        query = query.where(AlarmDelivery.status == status)
    return list(session.scalars(query))


def pending_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AlarmDelivery)
            .where(AlarmDelivery.status == DeliveryStatus.PENDING)
        )
        or 0
    )
