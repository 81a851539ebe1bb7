"""The alarm vocabulary, in one place: conditions, severities, Vietnamese titles, the
thresholds (defaults per station kind, their ranges) and the rules themselves.

A rule looks at what the server knows of one station (`Observation`: its live state,
latest telemetry and active faults) and says whether its condition holds now, with which
severity and a short detail.  Rules are pure functions: `evaluate` is what the worker
calls, the lifecycle (raise, acknowledge, clear, damping) lives in `service`.

Telemetry fields used (loa/v1 ``telemetry``): ``amp_temp_c``, ``speaker_ok``,
``on_battery``, ``supply_v``, ``storage_free_mb``; fault events (``fault.raised`` /
``fault.cleared``): ``amp_overheat``, ``speaker_line``, ``on_battery``, ``power_lost``,
``storage_low``, ``clock_unsynced``; and from ``reported`` against what the server
published: the applied ``desired_version`` and the ``missing`` media.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kernel.errors import InvalidInput
from stations.live import MAINS_LOST_FAULTS
from stations.models import StationKind

__all__ = [
    "CONDITION_TITLES_VI",
    "COUNT_WINDOW_S",
    "EVENT_LABELS_VI",
    "NOT_HEARD_NOTE_VI",
    "RULES",
    "SEVERITY_LABELS_VI",
    "THRESHOLDS",
    "Condition",
    "Evaluation",
    "Finding",
    "Observation",
    "Severity",
    "ThresholdSpec",
    "check_consistent",
    "defaults_for",
    "evaluate",
    "note_vi",
    "silences",
    "validate_thresholds",
]


class Severity(StrEnum):
    """From the least to the most serious (`rank`)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


SEVERITY_LABELS_VI: dict[Severity, str] = {
    Severity.INFO: "Thông tin",
    Severity.WARNING: "Cảnh báo",
    Severity.CRITICAL: "Nghiêm trọng",
}


class Condition(StrEnum):
    STATION_OFFLINE = "station_offline"
    LINK_FLAPPING = "link_flapping"
    AMP_TEMPERATURE = "amp_temperature"
    SPEAKER_LINE = "speaker_line"
    MAINS_LOST = "mains_lost"
    BATTERY_LOW = "battery_low"
    STORAGE_LOW = "storage_low"
    CLOCK_OFFSET = "clock_offset"
    PLAN_BEHIND = "plan_behind"
    MEDIA_MISSING = "media_missing"
    PLAYS_MISSED = "plays_missed"
    COMMANDS_UNACKED = "commands_unacked"


CONDITION_TITLES_VI: dict[Condition, str] = {
    Condition.STATION_OFFLINE: "Trạm mất kết nối",
    Condition.LINK_FLAPPING: "Kết nối chập chờn",
    Condition.AMP_TEMPERATURE: "Nhiệt độ bộ khuếch đại cao",
    Condition.SPEAKER_LINE: "Lỗi đường dây loa",
    Condition.MAINS_LOST: "Mất điện lưới, đang chạy ắc quy",
    Condition.BATTERY_LOW: "Ắc quy yếu",
    Condition.STORAGE_LOW: "Bộ nhớ trạm sắp đầy",
    Condition.CLOCK_OFFSET: "Đồng hồ trạm lệch",
    Condition.PLAN_BEHIND: "Trạm chưa áp dụng kế hoạch mới",
    Condition.MEDIA_MISSING: "Trạm thiếu tệp âm thanh",
    Condition.PLAYS_MISSED: "Bỏ lỡ lịch phát",
    Condition.COMMANDS_UNACKED: "Lệnh không được trạm xác nhận",
}


#: What the alarm text adds for the faults that keep a play from being heard: a play the
#: station reports while such an alarm is open is recorded as "not heard" (proof of play).
NOT_HEARD_NOTE_VI = (
    "Trong khi lỗi này còn, các lượt trạm báo đã phát được ghi là "
    "không nghe được trong nhật ký phát."
)


def silences(condition: Condition, severity: Severity) -> bool:
    """True when an alarm means the loudspeakers were not heard: a speaker-line fault, or
    the amplifier at its critical temperature (overheat: it shuts down or mutes)."""
    if condition is Condition.SPEAKER_LINE:
        return True
    return condition is Condition.AMP_TEMPERATURE and severity is Severity.CRITICAL


def note_vi(condition: Condition, severity: Severity) -> str | None:
    """The alarm text's addition for a silencing alarm (`NOT_HEARD_NOTE_VI`), else None."""
    return NOT_HEARD_NOTE_VI if silences(condition, severity) else None


#: What happened to an alarm, as a notification says it.
EVENT_LABELS_VI: dict[str, str] = {
    "raised": "Phát sinh",
    "escalated": "Nặng thêm",
    "cleared": "Đã hết",
}


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """A configurable threshold: its range, unit, Vietnamese label and defaults."""

    key: str
    label_vi: str
    unit: str
    minimum: float
    maximum: float
    defaults: Mapping[StationKind, float]


def _spec(
    key: str, label_vi: str, unit: str, low: float, high: float, hamlet: float, smart: float
) -> ThresholdSpec:
    return ThresholdSpec(
        key, label_vi, unit, low, high, {StationKind.HAMLET: hamlet, StationKind.SMART: smart}
    )


#: Every threshold, by key.  Retrofitted hamlet boxes are given more slack than smart
#: stations (their links and amplifiers are older).
THRESHOLDS: dict[str, ThresholdSpec] = {
    spec.key: spec
    for spec in (
        _spec("offline_after_s", "Mất kết nối quá", "s", 10, 86_400, 600, 300),
        _spec(
            "flap_reconnects_per_hour", "Số lần kết nối lại trong 1 giờ quá", "lần", 2, 1_000, 6, 4
        ),
        _spec("amp_temp_warning_c", "Nhiệt độ cảnh báo", "°C", 30, 120, 68, 65),
        _spec("amp_temp_critical_c", "Nhiệt độ nghiêm trọng", "°C", 30, 130, 75, 72),
        _spec("battery_low_v", "Điện áp ắc quy yếu dưới", "V", 9, 14, 11.8, 11.8),
        _spec("storage_low_mb", "Bộ nhớ trống dưới", "MB", 1, 100_000, 200, 500),
        _spec("clock_offset_ms", "Đồng hồ lệch quá", "ms", 100, 600_000, 5_000, 2_000),
        _spec("plan_behind_s", "Chưa áp dụng kế hoạch sau", "s", 10, 86_400, 1_800, 900),
        _spec("media_missing_s", "Thiếu tệp âm thanh sau", "s", 10, 86_400, 1_800, 900),
        _spec("plays_missed_per_hour", "Mục lịch bỏ lỡ trong 1 giờ từ", "mục", 1, 1000, 1, 1),
        _spec("unacked_per_hour", "Lệnh không xác nhận trong 1 giờ từ", "lệnh", 1, 1000, 1, 1),
        _spec("clear_hold_s", "Giữ cảnh báo sau khi hết lỗi", "s", 0, 3_600, 120, 120),
    )
}


def defaults_for(kind: StationKind) -> dict[str, float]:
    return {key: spec.defaults[kind] for key, spec in THRESHOLDS.items()}


def validate_thresholds(values: Mapping[str, Any]) -> dict[str, float]:
    """Check keys and ranges of an override (422 with a Vietnamese message if wrong)."""
    checked: dict[str, float] = {}
    for key, value in values.items():
        spec = THRESHOLDS.get(key)
        if spec is None:
            raise InvalidInput(
                f"unknown threshold {key!r} (one of {', '.join(THRESHOLDS)})",
                field=("thresholds", key),
                message_vi=f"Ngưỡng không tồn tại: {key}",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise InvalidInput(
                f"threshold {key} must be a number",
                field=("thresholds", key),
                message_vi=f"{spec.label_vi} phải là một số",
            )
        if not spec.minimum <= value <= spec.maximum:
            raise InvalidInput(
                f"threshold {key} must be within {spec.minimum:g}..{spec.maximum:g} {spec.unit}",
                field=("thresholds", key),
                message_vi=(
                    f"{spec.label_vi} phải nằm trong khoảng {spec.minimum:g}–{spec.maximum:g}"
                    f" {spec.unit}"
                ),
            )
        checked[key] = float(value)
    return checked


def check_consistent(effective: Mapping[str, float]) -> None:
    """Thresholds that only make sense together (warning below critical)."""
    if effective["amp_temp_warning_c"] >= effective["amp_temp_critical_c"]:
        raise InvalidInput(
            "amp_temp_warning_c must be below amp_temp_critical_c",
            field=("thresholds", "amp_temp_warning_c"),
            message_vi="Nhiệt độ cảnh báo phải thấp hơn nhiệt độ nghiêm trọng",
        )


#: The default window of the counted rules (reconnects, missed plays, unacknowledged
#: commands): their thresholds are "per hour" (Settings.alarm_count_window_s).
COUNT_WINDOW_S = 3600.0


def window_vi(seconds: float) -> str:
    """A counting window in words: ``1 giờ``, ``30 phút``, ``45 giây``."""
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} giờ"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} phút"
    return f"{seconds:g} giây"


@dataclass(frozen=True, slots=True)
class Observation:
    """What the server knows of one station now."""

    online: bool
    offline_since: dt.datetime | None
    telemetry: Mapping[str, Any] | None
    faults: frozenset[str]
    enabled: bool = True
    online_since: dt.datetime | None = None
    desired_version: int = 0  # the version last published to the station
    desired_at: dt.datetime | None = None  # when it was published
    applied_version: int | None = None
    missing: int = 0  # media files the station reports missing
    reconnects: int = 0  # connections begun in the last hour
    #: the server lost the broker (``ConnectionCause.SERVER``): not the station's fault
    offline_unvouched: bool = False
    #: from dispatch, when the caller looked (None: not judged in this evaluation)
    plays_missed: int | None = None  # plays found missed in the last hour
    unacknowledged: int | None = None  # commands given up unacknowledged in the last hour
    window_s: float = COUNT_WINDOW_S  # the window of the three counts above


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now."""

    severity: Severity
    detail: str
    value: float | None = None


Rule = Callable[[Observation, Mapping[str, float], dt.datetime], Finding | None]


def _number(telemetry: Mapping[str, Any] | None, key: str) -> float | None:
    value = (telemetry or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _offline(obs: Observation, th: Mapping[str, float], now: dt.datetime) -> Finding | None:
    if obs.online or obs.offline_since is None or obs.offline_unvouched:
        return None
    seconds = (now - obs.offline_since).total_seconds()
    if seconds < th["offline_after_s"]:
        return None
    return Finding(
        Severity.CRITICAL,
        f"mất kết nối {int(seconds // 60)} phút {int(seconds % 60)} giây",
        seconds,
    )


def _flapping(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    if obs.reconnects <= th["flap_reconnects_per_hour"]:
        return None
    return Finding(
        Severity.WARNING,
        f"kết nối lại {obs.reconnects} lần trong {window_vi(obs.window_s)}",
        obs.reconnects,
    )


def _amp(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    temp = _number(obs.telemetry, "amp_temp_c")
    shown = f"{temp:.1f} °C" if temp is not None else "quá nhiệt"
    if (temp is not None and temp >= th["amp_temp_critical_c"]) or _faulted(
        obs, Condition.AMP_TEMPERATURE
    ):
        return Finding(Severity.CRITICAL, f"bộ khuếch đại {shown}", temp)
    if temp is not None and temp >= th["amp_temp_warning_c"]:
        return Finding(Severity.WARNING, f"bộ khuếch đại {shown}", temp)
    return None


def _speaker(obs: Observation, _th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    if (obs.telemetry or {}).get("speaker_ok") is False or _faulted(obs, Condition.SPEAKER_LINE):
        return Finding(Severity.CRITICAL, "đường dây loa hở mạch hoặc chập")
    return None


#: the station faults (``fault.raised``) each condition reads, beside its telemetry: an
#: open alarm of the condition says what the fault would (the overview says it once)
CONDITION_FAULTS: dict[Condition, frozenset[str]] = {
    Condition.SPEAKER_LINE: frozenset({"speaker_line"}),
    Condition.AMP_TEMPERATURE: frozenset({"amp_overheat"}),
    Condition.MAINS_LOST: MAINS_LOST_FAULTS,
    Condition.STORAGE_LOW: frozenset({"storage_low"}),
    Condition.CLOCK_OFFSET: frozenset({"clock_unsynced"}),
}


def _faulted(obs: Observation, condition: Condition) -> bool:
    """Whether the station reports one of the condition's faults."""
    return bool(obs.faults & CONDITION_FAULTS[condition])


def _on_battery(obs: Observation) -> bool:
    return (obs.telemetry or {}).get("on_battery") is True or _faulted(obs, Condition.MAINS_LOST)


def _mains(obs: Observation, _th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    if _on_battery(obs):
        volts = _number(obs.telemetry, "supply_v")
        shown = f", {volts:.2f} V" if volts is not None else ""
        return Finding(Severity.WARNING, f"mất điện lưới{shown}", volts)
    return None


def _battery(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    volts = _number(obs.telemetry, "supply_v")
    if _on_battery(obs) and volts is not None and volts < th["battery_low_v"]:
        return Finding(Severity.CRITICAL, f"ắc quy còn {volts:.2f} V", volts)
    return None


def _storage(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    free = _number(obs.telemetry, "storage_free_mb")
    if (free is not None and free < th["storage_low_mb"]) or _faulted(obs, Condition.STORAGE_LOW):
        shown = f"còn {free:.0f} MB trống" if free is not None else "bộ nhớ sắp đầy"
        return Finding(Severity.WARNING, shown, free)
    return None


def _clock(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    offset = _number(obs.telemetry, "clock_offset_ms")
    if offset is not None and abs(offset) > th["clock_offset_ms"]:
        return Finding(Severity.WARNING, f"lệch {offset / 1000:+.1f} giây", offset)
    if _faulted(obs, Condition.CLOCK_OFFSET):
        return Finding(Severity.WARNING, "không đồng bộ được giờ (NTP)")
    return None


def _waiting_since(obs: Observation) -> dt.datetime | None:
    """Since when the station, online, has had the chance to apply its current plan."""
    if obs.desired_version <= 0 or obs.desired_at is None:
        return None
    return max(filter(None, (obs.desired_at, obs.online_since)))


def _plan(obs: Observation, th: Mapping[str, float], now: dt.datetime) -> Finding | None:
    since = _waiting_since(obs)
    if since is None or (obs.applied_version or 0) >= obs.desired_version:
        return None
    waited = (now - since).total_seconds()
    if waited < th["plan_behind_s"]:
        return None
    applied = obs.applied_version if obs.applied_version is not None else "-"
    detail = f"đang ở phiên bản {applied}, cần {obs.desired_version}"
    return Finding(Severity.WARNING, detail, waited)


def _media(obs: Observation, th: Mapping[str, float], now: dt.datetime) -> Finding | None:
    since = _waiting_since(obs)
    if since is None or not obs.missing or obs.applied_version != obs.desired_version:
        return None
    if (now - since).total_seconds() < th["media_missing_s"]:
        return None
    return Finding(Severity.WARNING, f"thiếu {obs.missing} tệp", float(obs.missing))


def _missed(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    n = obs.plays_missed or 0
    if n < th["plays_missed_per_hour"]:
        return None
    return Finding(
        Severity.WARNING, f"{n} mục lịch không phát trong {window_vi(obs.window_s)} qua", n
    )


def _unacked(obs: Observation, th: Mapping[str, float], _now: dt.datetime) -> Finding | None:
    n = obs.unacknowledged or 0
    if n < th["unacked_per_hour"]:
        return None
    return Finding(
        Severity.WARNING,
        f"{n} lệnh không được xác nhận trong {window_vi(obs.window_s)} qua",
        n,
    )


RULES: dict[Condition, Rule] = {
    Condition.STATION_OFFLINE: _offline,
    Condition.LINK_FLAPPING: _flapping,
    Condition.AMP_TEMPERATURE: _amp,
    Condition.SPEAKER_LINE: _speaker,
    Condition.MAINS_LOST: _mains,
    Condition.BATTERY_LOW: _battery,
    Condition.STORAGE_LOW: _storage,
    Condition.CLOCK_OFFSET: _clock,
    Condition.PLAN_BEHIND: _plan,
    Condition.MEDIA_MISSING: _media,
    Condition.PLAYS_MISSED: _missed,
    Condition.COMMANDS_UNACKED: _unacked,
}

#: Conditions judged from telemetry and fault events: while a station is offline what it
#: last said is stale, so these are neither raised nor cleared until it is back.
FROM_DISPATCH = frozenset({Condition.PLAYS_MISSED, Condition.COMMANDS_UNACKED})
FROM_STATION = (
    frozenset(RULES)
    - FROM_DISPATCH
    - {
        Condition.STATION_OFFLINE,
        Condition.LINK_FLAPPING,
    }
)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The conditions that hold (`found`) and those that were judged (`judged`)."""

    found: dict[Condition, Finding] = field(default_factory=dict)
    judged: frozenset[Condition] = frozenset()


def evaluate(obs: Observation, thresholds: Mapping[str, float], now: dt.datetime) -> Evaluation:
    """Which conditions hold for one station."""
    if not obs.enabled:
        return Evaluation({}, frozenset(RULES))  # a disabled station raises nothing
    judged = frozenset(RULES) if obs.online else frozenset(RULES) - FROM_STATION
    if obs.plays_missed is None:
        judged -= FROM_DISPATCH  # the caller did not look
    found: dict[Condition, Finding] = {}
    for condition in judged:
        finding = RULES[condition](obs, thresholds, now)
        if finding is not None:
            found[condition] = finding
    return Evaluation(found, judged)
