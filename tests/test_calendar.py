"""The tests whose outcome could depend on today's date or the time of day (marker
``calendar``) pass with the clock a year ahead, and a year ahead just after midnight in
Tân An (when "today" has only just begun and "half an hour ago" was yesterday).

The inner run is an ordinary ``pytest -m calendar`` on the same database backend, with
``TESTS_CLOCK_AT`` set: the test-support plugin then moves the wall clock of the whole
test process (see :mod:`tests.support.fixtures`).  The tests so marked run the app in
process (the API, the worker and simulated stations on threads), so the service and the
stations see the moved clock too.

libfaketime (``LD_PRELOAD``) would move child processes as well, but libfaketime 0.9.10
and Python 3.11 do not work together: with the monotonic clock faked, a thread's timed
wait (``threading.Event().wait(0.3)``, ``sem_clockwait``) blocks for the whole shift in
real time; without it, ``time.sleep`` fails with EINVAL (``clock_nanosleep``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.fixtures import CLOCK_AT
from tests.support.process import ChildProcess, python_argv

VN = ZoneInfo("Asia/Ho_Chi_Minh")
YEAR = dt.timedelta(days=365)
REAL_NOW = "CALENDAR_RUN_REAL_NOW"  # the real time when the calendar run started

pytestmark = pytest.mark.slow


def a_year_ahead_just_after_local_midnight() -> str:
    """00:10 in Tân An, a year from now."""
    day = (dt.datetime.now(VN) + YEAR).date()
    return dt.datetime.combine(day, dt.time(0, 10), VN).isoformat()


@pytest.mark.parametrize(
    "clock_at",
    [
        pytest.param("+365d", id="a-year-ahead"),
        pytest.param(a_year_ahead_just_after_local_midnight(), id="a-year-ahead-00h10-local"),
    ],
)
def test_date_sensitive_tests_pass_on_another_day(clock_at: str, tmp_path: Path) -> None:
    env = {**os.environ, CLOCK_AT: clock_at, REAL_NOW: str(dt.datetime.now(dt.UTC).timestamp())}
    run = ChildProcess(
        python_argv(
            *("-m", "pytest", "-m", "calendar", "-q", "-p", "no:cacheprovider"),
            *("--basetemp", str(tmp_path / "inner")),
        ),
        env=env,
        log_path=tmp_path / "pytest-calendar.log",
    )
    # fails with the inner run's output unless every marked test passed; the inner run
    # checks that its clock really moved (the marked test below)
    output = run.run(timeout_s=1800).output()
    assert " passed" in output, output[-3000:]


@pytest.mark.calendar
def test_the_clock_is_where_the_calendar_run_put_it() -> None:
    """Inside the calendar run, the clock is most of a year ahead of the real one (a
    guard that the run above really moved it); outside it, there is nothing to check."""
    if REAL_NOW not in os.environ:
        pytest.skip("only meaningful inside the calendar run")
    real = dt.datetime.fromtimestamp(float(os.environ[REAL_NOW]), dt.UTC)
    assert dt.datetime.now(dt.UTC) - real > YEAR - dt.timedelta(days=2)
    assert dt.date.today() - real.date() > YEAR - dt.timedelta(days=2)
