"""Vietnamese calendars: public holidays and the lunar (âm lịch) calendar.

Public holidays come from the ``holidays`` package (country ``VN``): New Year, the Tết
days (eve to the 4th/5th day as the government sets them), Hùng Kings' day, 30 April,
1 May, National Day, and the observed/substituted days off it knows about.

Lunar dates come from ``lunar-vn`` (Hồ Ngọc Đức's astronomical algorithm computed for
UTC+7), **not** from ``lunardate``: ``lunardate`` implements the Chinese calendar, whose
months are computed for UTC+8.  The two disagree whenever a new moon falls between
16:00 and 17:00 UTC, i.e. after midnight in Beijing but before it in Hà Nội.  Tết shows
it: Vietnamese Tết 2007 was 17 Feb 2007 (Chinese New Year 18 Feb) and Vietnamese Tết
1985 was 21 Jan 1985, a whole month before the Chinese one (20 Feb), because the
month-11 / leap-month computation differs too.  ``lunar-vn`` gives the Vietnamese
dates, agrees with the Tết dates the ``holidays`` package carries for VN, is typed
(``py.typed``) and dependency-free, and covers solar years 1900..2100; outside that
range the functions here raise :class:`~schedules.exceptions.InvalidRecurrence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import lunar_vn

from schedules.exceptions import InvalidRecurrence

#: Solar years the lunar conversion supports (inclusive).
LUNAR_YEAR_RANGE: tuple[int, int] = lunar_vn.SUPPORTED_YEAR_RANGE
#: Vietnam's legal time zone offset, in hours, used for the lunar calendar.
VIETNAM_UTC_OFFSET_H = 7.0


@dataclass(frozen=True, slots=True)
class LunarDate:
    """A Vietnamese lunar date; ``leap`` marks a day of the leap (nhuận) month."""

    year: int
    month: int
    day: int
    leap: bool = False

    def __str__(self) -> str:
        suffix = " (nhuận)" if self.leap else ""
        return f"{self.day:02d}/{self.month:02d}{suffix}/{self.year} ÂL"


@lru_cache(maxsize=256)
def _holidays_of(year: int, language: str) -> dict[date, str]:
    import holidays  # 0.1 s of imports (every country's tables): only when asked

    table = holidays.country_holidays("VN", years=year, language=language)
    return {day: str(name) for day, name in sorted(table.items()) if day.year == year}


def vietnam_holidays(year: int, *, language: str = "vi") -> dict[date, str]:
    """Vietnamese public holidays of ``year`` (dates -> names), Tết included.

    ``language`` is one the ``holidays`` package knows for VN: ``"vi"`` (default),
    ``"en_US"`` or ``"th"``.  The result is a fresh dict, sorted by date.
    """
    return dict(_holidays_of(year, language))


def is_vietnam_holiday(day: date) -> bool:
    """True when ``day`` is a Vietnamese public holiday (or a day off replacing one)."""
    return day in _holidays_of(day.year, "vi")


def _check_year(year: int, field: str) -> None:
    low, high = LUNAR_YEAR_RANGE
    if not low <= year <= high:
        raise InvalidRecurrence(
            f"Year {year} is outside the supported lunar calendar range {low}..{high}",
            field=field,
            message_vi=f"Năm {year} nằm ngoài phạm vi lịch âm hỗ trợ ({low}..{high})",
        )


def solar_to_lunar(day: date) -> LunarDate:
    """The Vietnamese lunar date of the solar (Gregorian) ``day``."""
    _check_year(day.year, "date")
    return _solar_to_lunar(day)


@lru_cache(maxsize=8192)
def _solar_to_lunar(day: date) -> LunarDate:
    lunar = lunar_vn.convert_solar_to_lunar(
        day.day, day.month, day.year, time_zone=VIETNAM_UTC_OFFSET_H
    )
    return LunarDate(year=lunar.year, month=lunar.month, day=lunar.day, leap=lunar.leap)


def lunar_to_solar(year: int, month: int, day: int, leap: bool = False) -> date:
    """The solar date of lunar ``day``/``month``/``year`` (``leap`` for the leap month).

    Raises :class:`InvalidRecurrence` when the lunar date does not exist: a month outside
    1..12, a day outside 1..30, day 30 of a 29-day ("thiếu") month, or ``leap=True`` for
    a month that is not that year's leap month.
    """
    if not 1 <= month <= 12:
        raise InvalidRecurrence(
            f"Lunar month must be 1..12, got {month}",
            field="month",
            message_vi=f"Tháng âm lịch phải từ 1 đến 12 (nhận {month})",
        )
    if not 1 <= day <= 30:
        raise InvalidRecurrence(
            f"Lunar day must be 1..30, got {day}",
            field="day",
            message_vi=f"Ngày âm lịch phải từ 1 đến 30 (nhận {day})",
        )
    _check_year(year, "year")
    wanted = LunarDate(year=year, month=month, day=day, leap=leap)
    try:
        solar = lunar_vn.convert_lunar_to_solar(
            day, month, year, 1 if leap else 0, time_zone=VIETNAM_UTC_OFFSET_H
        )
    except ValueError as exc:
        raise InvalidRecurrence(
            f"Lunar date {wanted} does not exist: {exc}",
            field="leap" if leap else "day",
            message_vi=f"Ngày âm lịch {wanted} không tồn tại",
        ) from exc
    # lunar-vn silently rolls day 30 of a 29-day month over into the next month, and
    # reads a leap flag for a year without a leap month as the ordinary month.
    got = solar_to_lunar(solar) if solar.year >= LUNAR_YEAR_RANGE[0] else None
    if got is None or got.leap != leap:
        raise InvalidRecurrence(
            f"Lunar date {wanted} does not exist: month {month} of {year} is not a leap month",
            field="leap",
            message_vi=f"Ngày âm lịch {wanted} không tồn tại: tháng {month} năm {year} "
            "không phải tháng nhuận",
        )
    if got != wanted:
        raise InvalidRecurrence(
            f"Lunar date {wanted} does not exist (that month has 29 days)",
            field="day",
            message_vi=f"Ngày âm lịch {wanted} không tồn tại (tháng thiếu 29 ngày)",
        )
    return solar


def tet(year: int) -> date:
    """The solar date of Tết Nguyên Đán (lunar 1/1) of ``year``."""
    return lunar_to_solar(year, 1, 1)
