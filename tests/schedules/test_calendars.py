"""Vietnamese holidays and the Vietnamese (UTC+7) lunar calendar."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedules.calendars import (
    LunarDate,
    is_vietnam_holiday,
    lunar_to_solar,
    solar_to_lunar,
    tet,
    vietnam_holidays,
)
from schedules.exceptions import InvalidRecurrence


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2026, date(2026, 2, 17)),
        (2027, date(2027, 2, 6)),
        (2024, date(2024, 2, 10)),
        (2025, date(2025, 1, 29)),
    ],
)
def test_tet_dates(year: int, expected: date) -> None:
    assert tet(year) == expected
    assert lunar_to_solar(year, 1, 1) == expected
    assert solar_to_lunar(expected) == LunarDate(year, 1, 1)


@pytest.mark.parametrize(
    ("year", "vietnamese", "chinese"),
    [
        (2007, date(2007, 2, 17), date(2007, 2, 18)),
        (1985, date(1985, 1, 21), date(1985, 2, 20)),
    ],
)
def test_vietnamese_new_year_differs_from_chinese(
    year: int, vietnamese: date, chinese: date
) -> None:
    """The reason for lunar-vn over lunardate: Chinese months are computed for UTC+8."""
    chinese_calendar = pytest.importorskip("lunardate")

    assert tet(year) == vietnamese
    assert chinese_calendar.LunarDate(year, 1, 1).to_solar_date() == chinese
    assert solar_to_lunar(vietnamese) == LunarDate(year, 1, 1)


def test_lunar_tet_agrees_with_the_holidays_package() -> None:
    for year in range(2000, 2036):
        names = vietnam_holidays(year, language="en_US")
        assert names[tet(year)] == "Lunar New Year", year


def test_holidays_include_tet_and_national_day() -> None:
    days = vietnam_holidays(2026)
    assert date(2026, 2, 17) in days
    assert "Tết" in days[date(2026, 2, 17)]
    assert date(2026, 9, 2) in days
    assert date(2026, 4, 30) in days
    assert all(day.year == 2026 for day in days)
    assert is_vietnam_holiday(date(2026, 2, 18))
    assert not is_vietnam_holiday(date(2026, 3, 10))


def test_leap_month_2025() -> None:
    # 2025 has a leap 6th month (nhuận tháng 6): 25 Jul 2025 is 1/6 nhuận.
    leap_first = lunar_to_solar(2025, 6, 1, leap=True)
    assert leap_first == date(2025, 7, 25)
    assert solar_to_lunar(leap_first) == LunarDate(2025, 6, 1, leap=True)
    assert lunar_to_solar(2025, 6, 1) == date(2025, 6, 25)


def test_nonexistent_lunar_dates_are_refused() -> None:
    with pytest.raises(InvalidRecurrence) as leap:
        lunar_to_solar(2026, 3, 1, leap=True)
    assert leap.value.loc == ("leap",)
    # Find a 29-day month in 2026 and ask for its 30th.
    short = next(
        month
        for month in range(1, 12)
        if lunar_to_solar(2026, month + 1, 1) - lunar_to_solar(2026, month, 1) == timedelta(days=29)
    )
    with pytest.raises(InvalidRecurrence) as day30:
        lunar_to_solar(2026, short, 30)
    assert day30.value.loc == ("day",)
    with pytest.raises(InvalidRecurrence):
        lunar_to_solar(2026, 13, 1)
    with pytest.raises(InvalidRecurrence):
        solar_to_lunar(date(1800, 1, 1))


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31)))
def test_solar_lunar_round_trip(day: date) -> None:
    lunar = solar_to_lunar(day)
    assert lunar_to_solar(lunar.year, lunar.month, lunar.day, lunar.leap) == day
