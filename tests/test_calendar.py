"""The tests whose outcome could depend on today's date or the time of day (marker
``calendar``) pass with the clock a year ahead, and a year ahead just after midnight in
Tân An (where "today" has only just begun).

The clock is moved with libfaketime (``LD_PRELOAD``, Debian package ``faketime``,
installed by ``scripts/system-deps.sh``): it moves the time of the test process and of
every process it starts (the service, Mosquitto, ffmpeg) alike, so no code needs a
clock of its own for this.  The inner run is an ordinary ``pytest -m calendar`` on the
same database backend.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.process import ChildProcess, python_argv

LIBFAKETIME_PATHS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
LIBFAKETIME = next((p for p in LIBFAKETIME_PATHS if Path(p).exists()), None)
VN = ZoneInfo("Asia/Ho_Chi_Minh")
YEAR = dt.timedelta(days=365)
REAL_NOW = "CALENDAR_RUN_REAL_NOW"  # the real time when the calendar run started

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed (faketime)"),
]


def a_year_ahead_just_after_local_midnight() -> str:
    """libfaketime's absolute start time (UTC): 00:10 in Tân An, a year from now."""
    day = (dt.datetime.now(VN) + YEAR).date()
    start = dt.datetime.combine(day, dt.time(0, 10), VN).astimezone(dt.UTC)
    return f"@{start:%Y-%m-%d %H:%M:%S}"


@pytest.mark.parametrize(
    "faketime",
    [
        pytest.param("+365d", id="a-year-ahead"),
        pytest.param(a_year_ahead_just_after_local_midnight(), id="a-year-ahead-00h10-local"),
    ],
)
def test_date_sensitive_tests_pass_on_another_day(faketime: str, tmp_path: Path) -> None:
    assert LIBFAKETIME is not None
    env = {
        **os.environ,
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME": faketime,
        "TZ": "UTC",  # the absolute start time above is in UTC
        REAL_NOW: str(dt.datetime.now(dt.UTC).timestamp()),
    }
    run = ChildProcess(
        python_argv(
            *("-m", "pytest", "-m", "calendar", "-q", "-p", "no:cacheprovider"),
            *("-o", "addopts=--strict-markers -ra", "--basetemp", str(tmp_path / "inner")),
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
    """Inside the libfaketime run, the clock is most of a year ahead of the real one (a
    guard that the run above really moved it); outside it, there is nothing to check."""
    if REAL_NOW not in os.environ:
        pytest.skip("only meaningful inside the calendar run")
    real = dt.datetime.fromtimestamp(float(os.environ[REAL_NOW]), dt.UTC)
    assert dt.datetime.now(dt.UTC) - real > YEAR - dt.timedelta(days=2)
