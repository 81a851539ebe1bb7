"""What the database can hold, as validation: integers and timestamps in range.

Every integer and timestamp that comes from outside (query and path parameters, JSON
bodies, station messages) is checked against these bounds before it reaches a query,
so an out-of-range value is a 422 (or a quarantined station message) and never a
database error.  One module, one rule:

- ``MAX_INT32`` for ``integer`` columns: row ids the API addresses, versions;
  ``MAX_INT64``: offsets and the ``bigint`` counters (PostgreSQL's limits: SQLite's
  integers are all 64-bit, which is how an id past 2^31 once reached PostgreSQL);
- timestamps from ``EARLIEST`` to ``LATEST`` (2000-01-01 .. 2100-01-01 UTC): the
  planning horizon of a broadcast scheduler, and well inside what Python, SQLite and
  PostgreSQL convert without overflow (``9999-12-31T23:59:59-01:00`` is year 10000 in UTC);
- text without the characters no text column can hold (`text_problem`): NUL, which
  PostgreSQL refuses in any string, even a query parameter, and lone UTF-16 surrogates
  (JSON's ``"\\ud800"``), which cannot be encoded as UTF-8 for either database.  Every
  string of an API request (path, query, form, JSON body) is checked once, by
  `broadcaster.web.validation`, before a route runs.

The pydantic types below carry the Vietnamese message with them, so routers and schemas
use them instead of bare ``int`` and ``datetime``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
EARLIEST_DATE = EARLIEST.date()
LATEST_DATE = dt.date(2099, 12, 31)

RANGE_VI = "Giá trị nằm ngoài phạm vi cho phép"
DATE_RANGE_VI = "Thời gian phải nằm trong khoảng năm 2000 đến 2099"
TEXT_VI = "Văn bản chứa ký tự không được phép (ví dụ ký tự NUL); hãy xoá ký tự đó"

#: NUL and the UTF-16 surrogate range: what neither database can store as text.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (NUL, a lone surrogate), or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return f"text contains the character U+{ord(found.group()):04X} at {found.start()}"


Loc = tuple[str | int, ...]


def find_text_problem(value: Any, loc: Loc = ()) -> tuple[Loc, str] | None:
    """The location and reason of the first unstorable string inside ``value`` (strings,
    dict keys and values, lists), or None."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (loc, problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                return (*loc, key), f"key: {problem}"
            found = find_text_problem(item, (*loc, str(key)))
            if found:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_text_problem(item, (*loc, index))
            if found:
                return found
    return None


def datetime_problem(value: dt.datetime) -> str | None:
    """Why ``value`` is not a storable timestamp, or None."""
    try:
        utc = value.astimezone(dt.UTC) if value.tzinfo is not None else value
    except (OverflowError, ValueError):
        return f"timestamp {value.isoformat()} is out of range"
    naive = utc.replace(tzinfo=None)
    if not EARLIEST.replace(tzinfo=None) <= naive < LATEST.replace(tzinfo=None):
        return f"timestamp {value.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}"
    return None


def int_problem(
    value: int, *, maximum: int = MAX_INT64, minimum: int = -MAX_INT64 - 1
) -> str | None:
    """Why ``value`` does not fit its column, or None."""
    if not minimum <= value <= maximum:
        return f"integer {str(value)[:40]} is out of range"
    return None


def in_range(value: dt.datetime) -> dt.datetime:
    """A pydantic after-validator: ``value`` within 2000..2099 (see `BoundedDatetime`)."""
    return _in_range_datetime(value)


def in_range_date(value: dt.date) -> dt.date:
    """A pydantic after-validator for dates (see `BoundedDate`)."""
    return _in_range_date(value)


def in_years(value: dt.date) -> dt.date:
    """A pydantic after-validator for a date or a (naive or aware) datetime: 2000..2099."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return in_range(value)
        if not EARLIEST.year <= value.year < LATEST.year:
            raise ValueError(f"{value.isoformat()} is outside 2000..2099 ({DATE_RANGE_VI})")
        return value
    return _in_range_date(value)


def _in_range_datetime(value: dt.datetime) -> dt.datetime:
    problem = datetime_problem(value)
    if problem is not None:
        raise ValueError(f"{problem} ({DATE_RANGE_VI})")
    return value


def _in_range_date(value: dt.date) -> dt.date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"date {value.isoformat()} is outside 2000..2099 ({DATE_RANGE_VI})")
    return value


#: Any id of a row (a path parameter, a reference in a body): the primary keys the API
#: addresses are ``integer`` columns (32-bit on PostgreSQL).
Id = Annotated[int, Field(ge=1, le=MAX_INT32)]
#: A non-negative 64-bit count or offset.
Count64 = Annotated[int, Field(ge=0, le=MAX_INT64)]
#: A value stored in a 32-bit ``integer`` column.
Int32 = Annotated[int, Field(ge=-MAX_INT32 - 1, le=MAX_INT32)]
#: A timestamp within 2000..2099 (any offset; naive ones are refused elsewhere).
BoundedDatetime = Annotated[dt.datetime, AfterValidator(_in_range_datetime)]
#: A calendar date within 2000..2099.
BoundedDate = Annotated[dt.date, AfterValidator(_in_range_date)]

PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _plain_date(value: Any) -> Any:
    """``2026-12-01`` stays a date (pydantic would read it as a naive midnight)."""
    if isinstance(value, str) and PLAIN_DATE.fullmatch(value.strip()):
        return dt.date.fromisoformat(value.strip())
    return value


#: A filter bound: a timestamp (``2026-12-01T05:00:00+07:00``) or a plain date
#: (``2026-12-01``: the whole day, read in the site's time zone by the caller).
DayOrInstant = Annotated[BoundedDatetime | BoundedDate, BeforeValidator(_plain_date)]


def walk_problem(value: Any, *, path: str = "") -> str | None:
    """The first integer or timestamp out of range, or string that cannot be stored,
    inside ``value`` (models, dicts, lists), as ``"where: why"``.

    Every station message goes through here before it is stored, so the walk itself
    builds nothing: the place (``at``, ``data.volume``, ``items[2].start``) is put together
    only for the value that has a problem."""
    found = _walk(value)
    if found is None:
        return None
    steps, problem = found
    where = path + "".join(reversed(steps))
    if not path and where.startswith("."):
        where = where[1:]
    return f"{where or 'value'}: {problem}"


def _walk(value: Any) -> tuple[list[str], str] | None:
    """`walk_problem`'s walk: the steps to the value with a problem, innermost first,
    and the problem; None when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | dt.datetime):
        if isinstance(value, str):
            problem = text_problem(value)
        elif isinstance(value, int):
            problem = int_problem(value)
        elif value.tzinfo is not None and EARLIEST <= value < LATEST:
            # the common case without a conversion: an aware timestamp inside the bounds
            # (comparing aware timestamps does not overflow; converting one may)
            return None
        else:
            problem = datetime_problem(value)
        return ([], problem) if problem else None
    if isinstance(value, BaseModel):
        # its fields as they are (not serialised): what ``dict(model)`` gives, without
        # the cost of iterating a model
        extra = value.__pydantic_extra__
        value = {**value.__dict__, **extra} if extra else value.__dict__
    if isinstance(value, dict):
        for key, item in value.items():
            found = _walk(item)
            if found:
                found[0].append(f".{key}")
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _walk(item)
            if found:
                found[0].append(f"[{index}]")
                return found
    return None
