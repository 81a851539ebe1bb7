"""Recurrence rules: when a schedule rule fires, expanded to exact, time-zone-aware instants.

A :class:`Recurrence` holds one ``when`` (a pydantic discriminated union on ``kind``)
plus a validity window and skip lists::

    {"when": {"kind": "daily", "times": ["05:00", "17:00"]},
     "valid_from": "2026-01-01", "valid_until": "2026-12-31",
     "skip_dates": ["2026-09-02"], "skip_holidays": true}

Forms of ``when`` (every local time is wall-clock time in the zone passed to
:func:`occurrences`, Asia/Ho_Chi_Minh in production):

``once``          ``at``: one date-time (naive = local wall time; with an offset = that instant)
``daily``         ``times``: one or more ``HH:MM`` (``HH:MM:SS`` accepted)
``weekly``        ``weekdays`` (RFC 5545 codes ``MO``..``SU``) + ``times``
``monthly``       ``days`` (1..31, or -1 for the last day) + ``times``.  A day that a month
                  does not have is skipped in that month (day 31 skips April, day 30 and
                  31 skip February); use -1 for "the last day of every month".
``every_n_days``  ``n`` >= 1 and ``anchor`` (the first day) + ``times``
``rrule``         any RFC 5545 RRULE value (``FREQ=WEEKLY;BYDAY=MO;BYHOUR=5;BYMINUTE=0``,
                  with or without the ``RRULE:`` prefix), checked with python-dateutil's
                  ``rrulestr``.  Times come from BYHOUR/BYMINUTE/BYSECOND or from an
                  explicit ``times`` list (not both).  DTSTART is ``anchor``, else the date
                  of ``valid_from``; a rule whose meaning depends on DTSTART (INTERVAL > 1,
                  COUNT, or a WEEKLY/MONTHLY/YEARLY rule without the BYxxx part that would
                  otherwise default from DTSTART) needs one of them.  UNTIL is read as local
                  wall time (a trailing ``Z`` is ignored).
``lunar``         ``days`` of the Vietnamese lunar month (1..30; 30 is skipped in 29-day
                  months), optional lunar ``months`` (1..12), ``include_leap_months``
                  (default true: the 1st and 15th of a leap month count too) + ``times``.

Every form is expanded by a python-dateutil ``rrule`` (one per time of day, merged in an
``rruleset``) over naive local wall time; the lunar form filters a daily rule by the lunar
date (see :mod:`schedules.calendars`).  Naive wall times are then made aware in the zone:
a wall time that does not exist (a DST gap) moves forward by the gap, an ambiguous one
(DST fall-back) takes the first instant, and two wall times landing on one instant count
once.  Asia/Ho_Chi_Minh has no DST, so none of this happens there.

The validity window: a ``valid_from``/``valid_until`` *date* covers that whole local day
(both ends inclusive); a *date-time* is an inclusive instant bound (naive = local wall
time).  ``skip_dates`` and ``skip_holidays`` (Vietnamese public holidays, Tết included,
from the ``holidays`` package) apply to the local date of the occurrence.

Validation: the models raise pydantic's ``ValidationError`` (so FastAPI answers 422 with a
``loc``); :func:`parse_recurrence` turns that into
:class:`~schedules.exceptions.InvalidRecurrence` (an ``InvalidInput``) naming the field,
with a Vietnamese message where one is given.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from dateutil.rrule import (
    DAILY,
    FR,
    MO,
    MONTHLY,
    SA,
    SU,
    TH,
    TU,
    WE,
    WEEKLY,
    rrule,
    rruleset,
    rrulestr,
    weekday,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kernel.bounds import in_years
from schedules.calendars import LUNAR_YEAR_RANGE, is_vietnam_holiday, solar_to_lunar
from schedules.exceptions import InvalidRecurrence

__all__ = [
    "Daily",
    "EveryNDays",
    "Lunar",
    "Monthly",
    "Once",
    "RRuleWhen",
    "Recurrence",
    "Times",
    "Weekday",
    "Weekly",
    "When",
    "invalid_recurrence",
    "localize",
    "occurrences",
    "parse_recurrence",
]

Weekday = Literal["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_WEEKDAYS: dict[str, weekday] = {
    "MO": MO,
    "TU": TU,
    "WE": WE,
    "TH": TH,
    "FR": FR,
    "SA": SA,
    "SU": SU,
}
_WEEK_ORDER = tuple(_WEEKDAYS)
#: DTSTART of RRULEs that do not depend on it; any date works, a fixed one keeps caching.
_NEUTRAL_DTSTART = datetime(2000, 1, 3)  # noqa: DTZ001 - naive local wall time on purpose


def _fail(message: str, message_vi: str, field: str = "") -> PydanticCustomError:
    """A pydantic error carrying the Vietnamese text and the field for InvalidInput."""
    return PydanticCustomError(
        "invalid_recurrence", message, {"message_vi": message_vi, "field": field}
    )


def _check_times(value: tuple[time, ...]) -> tuple[time, ...]:
    if not value:
        raise _fail("At least one time of day is required", "Cần ít nhất một giờ phát")
    for item in value:
        if item.tzinfo is not None:
            raise _fail(
                f"Times of day are local wall-clock times without an offset, got {item}",
                f"Giờ phát là giờ địa phương, không kèm múi giờ (nhận {item})",
            )
        if item.microsecond:
            raise _fail(
                f"Times of day have a precision of one second, got {item}",
                f"Giờ phát chỉ chính xác tới giây (nhận {item})",
            )
    return tuple(sorted(set(value)))


Times = Annotated[tuple[time, ...], AfterValidator(_check_times)]


class _When(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Naive local wall times of this form within ``[lo, hi]`` (both naive)."""
        raise NotImplementedError


def _per_time(rules: Iterable[rrule], lo: datetime, hi: datetime) -> list[datetime]:
    merged = rruleset()
    for rule in rules:
        merged.rrule(rule)
    found: list[datetime] = merged.between(lo, hi, inc=True)
    return found


def _day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), time())


def _at_times(
    freq: Literal[0, 1, 2, 3, 4, 5, 6],
    times: Iterable[time],
    lo: datetime,
    hi: datetime,
    *,
    start: datetime | None = None,
    **by: Any,
) -> list[datetime]:
    """The instants within ``[lo, hi]`` of one `rrule` per time of day (``freq`` with
    the ``by*``/``interval`` parts given), from ``start`` (default: the day of ``lo``)."""
    first = _day_start(lo) if start is None else start
    return _per_time(
        (
            rrule(
                freq,
                dtstart=first,
                until=hi,
                byhour=t.hour,
                byminute=t.minute,
                bysecond=t.second,
                **by,
            )
            for t in times
        ),
        lo,
        hi,
    )


class Once(_When):
    """One broadcast at ``at``."""

    kind: Literal["once"] = "once"
    at: Annotated[datetime, AfterValidator(in_years)]

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        # An aware `at` is first converted to wall time by `Recurrence.expand_wall`.
        wall = self.at.replace(tzinfo=None)
        return [wall] if lo <= wall <= hi else []


class Daily(_When):
    """Every day at each of ``times``."""

    kind: Literal["daily"] = "daily"
    times: Times

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        return _at_times(DAILY, self.times, lo, hi)


class Weekly(_When):
    """Every week on ``weekdays`` at each of ``times``."""

    kind: Literal["weekly"] = "weekly"
    weekdays: tuple[Weekday, ...] = Field(min_length=1)
    times: Times

    @field_validator("weekdays")
    @classmethod
    def _unique_weekdays(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        return tuple(sorted(set(value), key=_WEEK_ORDER.index))

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        days = tuple(_WEEKDAYS[code] for code in self.weekdays)
        return _at_times(WEEKLY, self.times, lo, hi, byweekday=days)


class Monthly(_When):
    """Every month on ``days`` (1..31, -1 = last day) at each of ``times``.

    A day a month does not have is skipped in that month (RFC 5545 BYMONTHDAY semantics).
    """

    kind: Literal["monthly"] = "monthly"
    days: tuple[int, ...] = Field(min_length=1)
    times: Times

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for day in value:
            if not (1 <= day <= 31 or day == -1):
                raise _fail(
                    f"Day of month must be 1..31 or -1 (the last day), got {day}",
                    f"Ngày trong tháng phải từ 1 đến 31 hoặc -1 (ngày cuối tháng), nhận {day}",
                )
        return tuple(sorted(set(value)))

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        return _at_times(MONTHLY, self.times, lo, hi, bymonthday=self.days)


class EveryNDays(_When):
    """Every ``n`` days counted from ``anchor`` (the first day), at each of ``times``."""

    kind: Literal["every_n_days"] = "every_n_days"
    n: int = Field(ge=1, le=3660)
    anchor: Annotated[date, AfterValidator(in_years)]
    times: Times

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        # Start the rule at the last anchor-phase day on or before `lo` (a whole number
        # of periods after the anchor): same dates, without iterating from the anchor.
        periods = max(0, (lo.date() - self.anchor).days // self.n)
        first = self.anchor + timedelta(days=periods * self.n)
        start = datetime.combine(first, time())
        return _at_times(DAILY, self.times, lo, hi, start=start, interval=self.n)


_TIME_PARTS = frozenset({"BYHOUR", "BYMINUTE", "BYSECOND"})
_SUBDAILY = frozenset({"HOURLY", "MINUTELY", "SECONDLY"})
#: BYxxx parts that stop WEEKLY/MONTHLY/YEARLY from taking the day from DTSTART.
_DAY_PARTS = {
    "WEEKLY": frozenset({"BYDAY"}),
    "MONTHLY": frozenset({"BYMONTHDAY", "BYDAY", "BYYEARDAY", "BYWEEKNO"}),
    "YEARLY": frozenset({"BYMONTHDAY", "BYDAY", "BYYEARDAY", "BYWEEKNO", "BYEASTER"}),
}


def _rrule_parts(rule: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in rule.split(";"):
        key, sep, value = chunk.partition("=")
        if not sep or not key.strip():
            raise _fail(
                f"Malformed RRULE part {chunk!r} (expected NAME=VALUE)",
                f"Phần RRULE {chunk!r} sai dạng (cần TÊN=GIÁ_TRỊ)",
                "rule",
            )
        parts[key.strip().upper()] = value.strip().upper()
    return parts


def _normalise_rrule_text(value: str) -> str:
    """Upper-case, without the ``RRULE:`` prefix and trailing semicolons."""
    text = value.strip().upper()
    text = text.removeprefix("RRULE:").strip()
    return text.rstrip(";").strip()


@lru_cache(maxsize=1024)
def _compile_rrule(text: str, dtstart: datetime, times: tuple[time, ...]) -> rrule | rruleset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        base = rrulestr(text, dtstart=dtstart, ignoretz=True, cache=True)
    if not times:
        return base
    assert isinstance(base, rrule)
    merged = rruleset(cache=True)
    for t in times:
        merged.rrule(base.replace(byhour=t.hour, byminute=t.minute, bysecond=t.second))
    return merged


class RRuleWhen(_When):
    """Any RFC 5545 RRULE (one rule, no DTSTART/RDATE/EXDATE lines)."""

    kind: Literal["rrule"] = "rrule"
    rule: str = Field(min_length=1, max_length=1000)
    times: Times | None = None
    anchor: Annotated[date, AfterValidator(in_years)] | None = None

    @field_validator("rule")
    @classmethod
    def _parse(cls, value: str) -> str:
        text = _normalise_rrule_text(value)
        if "\n" in text or "\r" in text or ":" in text:
            raise _fail(
                "Give one RRULE value (e.g. FREQ=DAILY;BYHOUR=5), without DTSTART, RDATE "
                "or EXDATE lines; use anchor, valid_from and skip_dates for those",
                "Chỉ nhập một giá trị RRULE (ví dụ FREQ=DAILY;BYHOUR=5), không kèm DTSTART, "
                "RDATE hay EXDATE",
            )
        parts = _rrule_parts(text)
        if "FREQ" not in parts:
            raise _fail("RRULE needs FREQ", "RRULE thiếu FREQ")
        if parts["FREQ"] == "SECONDLY":
            raise _fail(
                "FREQ=SECONDLY is not supported for broadcasts",
                "Không hỗ trợ FREQ=SECONDLY cho lịch phát",
            )
        if "DTSTART" in parts:
            raise _fail("Give DTSTART as anchor, not in the RRULE", "Nhập DTSTART ở anchor")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                rrulestr(text, dtstart=_NEUTRAL_DTSTART, ignoretz=True)
        except (ValueError, TypeError, IndexError, KeyError, Warning) as exc:
            raise _fail(
                f"Invalid RRULE: {exc}",
                f"RRULE không hợp lệ: {exc}",
            ) from exc
        return text

    @model_validator(mode="after")
    def _times_from_one_place(self) -> Self:
        parts = _rrule_parts(self.rule)
        has_time_parts = bool(_TIME_PARTS & parts.keys())
        subdaily = parts["FREQ"] in _SUBDAILY
        if self.times is not None and (has_time_parts or subdaily):
            raise _fail(
                "Give the times of day either in the RRULE (BYHOUR/BYMINUTE, or an hourly "
                "frequency) or in times, not both",
                "Chỉ nhập giờ phát ở một nơi: trong RRULE (BYHOUR/BYMINUTE) hoặc ở times",
                "times",
            )
        if self.times is None and not has_time_parts and not subdaily:
            raise _fail(
                "The RRULE gives no time of day: add BYHOUR (and BYMINUTE) or a times list",
                "RRULE chưa có giờ phát: thêm BYHOUR (và BYMINUTE) hoặc danh sách times",
                "times",
            )
        return self

    def needs_anchor(self) -> bool:
        """True when the rule's dates depend on DTSTART (so an anchor date is needed)."""
        parts = _rrule_parts(self.rule)
        if "COUNT" in parts or parts.get("INTERVAL", "1") not in ("", "1"):
            return True
        if parts["FREQ"] in _SUBDAILY:
            # Times of day counted from DTSTART's midnight: fine unless INTERVAL > 1
            # (checked above) or BYxxx day parts are missing (they are daily anyway).
            return False
        day_parts = _DAY_PARTS.get(parts["FREQ"])
        return day_parts is not None and not (day_parts & parts.keys())

    def dtstart(self, fallback: date | None, lo: datetime | None = None) -> datetime:
        """The naive DTSTART: ``anchor``, else ``fallback``, else a fixed neutral date.

        For a rule that does not depend on DTSTART, starting it later (at the day of
        ``lo``) yields the same instants from ``lo`` on, without iterating from the anchor.
        """
        first = self.anchor or fallback
        start = datetime.combine(first, time()) if first else _NEUTRAL_DTSTART
        if lo is not None and not self.needs_anchor():
            start = max(start, _day_start(lo))
        return start

    def expand_from(self, dtstart: datetime, lo: datetime, hi: datetime) -> list[datetime]:
        """Naive wall times in ``[lo, hi]`` of the rule started at ``dtstart``."""
        compiled = _compile_rrule(self.rule, dtstart, self.times or ())
        found: list[datetime] = compiled.between(lo, hi, inc=True)
        return found

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        return self.expand_from(self.dtstart(None, lo), lo, hi)


class Lunar(_When):
    """On ``days`` of the Vietnamese lunar month (optionally only in ``months``)."""

    kind: Literal["lunar"] = "lunar"
    days: tuple[int, ...] = Field(min_length=1)
    months: tuple[int, ...] | None = None
    include_leap_months: bool = True
    times: Times

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for day in value:
            if not 1 <= day <= 30:
                raise _fail(
                    f"Lunar day must be 1..30, got {day}",
                    f"Ngày âm lịch phải từ 1 đến 30 (nhận {day})",
                )
        return tuple(sorted(set(value)))

    @field_validator("months")
    @classmethod
    def _check_months(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise _fail(
                "Give at least one lunar month, or leave months out for every month",
                "Cần ít nhất một tháng âm lịch, hoặc bỏ trống để áp dụng mọi tháng",
            )
        for month in value:
            if not 1 <= month <= 12:
                raise _fail(
                    f"Lunar month must be 1..12, got {month}",
                    f"Tháng âm lịch phải từ 1 đến 12 (nhận {month})",
                )
        return tuple(sorted(set(value)))

    def _matches(self, day: date) -> bool:
        if not LUNAR_YEAR_RANGE[0] <= day.year <= LUNAR_YEAR_RANGE[1]:
            return False
        lunar = solar_to_lunar(day)
        if lunar.day not in self.days:
            return False
        if lunar.leap and not self.include_leap_months:
            return False
        return self.months is None or lunar.month in self.months

    def expand(self, lo: datetime, hi: datetime) -> list[datetime]:
        every_day = _at_times(DAILY, self.times, lo, hi)
        return [moment for moment in every_day if self._matches(moment.date())]


When = Annotated[
    Once | Daily | Weekly | Monthly | EveryNDays | RRuleWhen | Lunar,
    Field(discriminator="kind"),
]


def _wall_bounds(
    value: datetime | date, *, upper: bool
) -> tuple[datetime, bool]:  # (comparable datetime, is_aware)
    if isinstance(value, datetime):
        return value, value.tzinfo is not None
    return datetime.combine(value, time.max if upper else time.min), False


class Recurrence(BaseModel):
    """When a rule fires: one ``when`` form, a validity window and skip lists."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: When
    valid_from: Annotated[date | datetime, AfterValidator(in_years)] | None = None
    valid_until: Annotated[date | datetime, AfterValidator(in_years)] | None = None
    skip_dates: tuple[Annotated[date, AfterValidator(in_years)], ...] = ()
    skip_holidays: bool = False

    @field_validator("skip_dates")
    @classmethod
    def _sorted_skips(cls, value: tuple[date, ...]) -> tuple[date, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.valid_from is not None and self.valid_until is not None:
            start, start_aware = _wall_bounds(self.valid_from, upper=False)
            end, end_aware = _wall_bounds(self.valid_until, upper=True)
            if start_aware != end_aware:  # compare wall-clock readings
                start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
            if end < start:
                raise _fail(
                    f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})",
                    f"Ngày kết thúc hiệu lực ({self.valid_until}) trước ngày bắt đầu "
                    f"({self.valid_from})",
                    "valid_until",
                )
        when = self.when
        if (
            isinstance(when, RRuleWhen)
            and when.anchor is None
            and self.valid_from is None
            and when.needs_anchor()
        ):
            raise _fail(
                "This RRULE depends on its start date (INTERVAL, COUNT, or a missing "
                "BYDAY/BYMONTHDAY): give when.anchor or valid_from",
                "RRULE này phụ thuộc ngày bắt đầu: hãy nhập anchor hoặc valid_from",
                "when.anchor",
            )
        return self

    def _dtstart_fallback(self) -> date | None:
        if self.valid_from is None:
            return None
        if isinstance(self.valid_from, datetime):
            return self.valid_from.date()
        return self.valid_from

    def expand_wall(self, lo: datetime, hi: datetime, tz: tzinfo) -> list[datetime]:
        """Naive local wall times of ``when`` within ``[lo, hi]``, before any filtering."""
        when = self.when
        if isinstance(when, RRuleWhen):
            return when.expand_from(when.dtstart(self._dtstart_fallback(), lo), lo, hi)
        if isinstance(when, Once) and when.at.tzinfo is not None:
            # Wall time in the zone; `fold` survives replace() so the instant is kept.
            return Once(at=when.at.astimezone(tz).replace(tzinfo=None)).expand(lo, hi)
        return when.expand(lo, hi)


def localize(wall: datetime, tz: tzinfo) -> datetime:
    """Make naive local wall time ``wall`` aware in ``tz`` (aware input: converted).

    A wall time inside a DST gap moves forward by the gap; an ambiguous one takes the
    first instant (fold=0) unless ``wall.fold`` says otherwise.
    """
    if wall.tzinfo is not None:
        return wall.astimezone(tz)
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _bound_instant(value: datetime | date, tz: tzinfo, *, upper: bool) -> datetime:
    """The UTC bound of the window: [from, until) as instants."""
    if isinstance(value, datetime):
        instant = localize(value, tz).astimezone(UTC)
        return instant + timedelta(microseconds=1) if upper else instant
    day = value + timedelta(days=1) if upper else value
    return localize(datetime.combine(day, time()), tz).astimezone(UTC)


def occurrences(
    recurrence: Recurrence, start: datetime, end: datetime, tz: tzinfo
) -> list[datetime]:
    """The instants ``recurrence`` fires in ``[start, end)``, aware in ``tz``, sorted.

    ``start``/``end`` may be aware (instants) or naive (local wall time in ``tz``).
    """
    start_utc = localize(start, tz).astimezone(UTC)
    end_utc = localize(end, tz).astimezone(UTC)
    if recurrence.valid_from is not None:
        start_utc = max(start_utc, _bound_instant(recurrence.valid_from, tz, upper=False))
    if recurrence.valid_until is not None:
        end_utc = min(end_utc, _bound_instant(recurrence.valid_until, tz, upper=True))
    if end_utc <= start_utc:
        return []
    # Wall-clock bounds widened by a day: DST shifts and odd offsets stay inside.
    lo = start_utc.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    hi = end_utc.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
    skip = frozenset(recurrence.skip_dates)
    found: dict[datetime, datetime] = {}
    for wall in recurrence.expand_wall(lo, hi, tz):
        local_day = wall.date()
        if local_day in skip:
            continue
        if recurrence.skip_holidays and is_vietnam_holiday(local_day):
            continue
        instant = localize(wall, tz).astimezone(UTC)
        if start_utc <= instant < end_utc:
            found[instant] = instant
    return [instant.astimezone(tz) for instant in sorted(found)]


def _field_of(error: Mapping[str, Any]) -> tuple[str | int, ...]:
    loc: list[str | int] = list(error.get("loc", ()))
    # Drop the discriminator tag pydantic puts after "when" ("when", "rrule", "rule").
    if len(loc) >= 2 and loc[0] == "when" and isinstance(loc[1], str):
        tags = {"once", "daily", "weekly", "monthly", "every_n_days", "rrule", "lunar"}
        if loc[1] in tags:
            del loc[1]
    ctx = error.get("ctx") or {}
    extra = str(ctx.get("field", "")) if isinstance(ctx, Mapping) else ""
    if extra:
        parts = extra.split(".")
        if parts[0] == "when" and loc[:1] == ["when"]:
            parts = parts[1:]
        loc.extend(part for part in parts if part not in loc)
    return tuple(loc)


def invalid_recurrence(
    exc: ValidationError, *, prefix: tuple[str | int, ...] = ()
) -> InvalidRecurrence:
    """Turn pydantic's error into :class:`InvalidRecurrence` naming the first bad field."""
    error = exc.errors(include_url=False)[0]
    loc = prefix + _field_of(error)
    ctx = error.get("ctx") or {}
    message_vi = ctx.get("message_vi") if isinstance(ctx, Mapping) else None
    where = ".".join(str(part) for part in loc) or "recurrence"
    return InvalidRecurrence(
        f"{where}: {error['msg']}",
        field=loc,
        message_vi=str(message_vi) if message_vi else f"Lịch lặp không hợp lệ ({where})",
    )


def parse_recurrence(data: Mapping[str, Any] | Recurrence) -> Recurrence:
    """Validate ``data`` (e.g. the JSON stored with a rule) into a :class:`Recurrence`.

    Raises :class:`~schedules.exceptions.InvalidRecurrence` (``InvalidInput``) with the
    offending field in ``loc``.
    """
    if isinstance(data, Recurrence):
        return data
    try:
        return Recurrence.model_validate(data)
    except ValidationError as exc:
        raise invalid_recurrence(exc) from exc
