"""Declarative base, naming convention and column types shared by every domain package.

One `MetaData` for the whole application so foreign keys between packages resolve and
Alembic sees every table.  Timestamps are stored in UTC and always come back timezone
aware (SQLite keeps no offset, so `UTCDateTime` re-attaches it).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Iterable
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Enum,
    MetaData,
    Select,
    TypeDecorator,
    any_,
    bindparam,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Execution option of a session that only reads: on SQLite it begins a deferred
#: transaction (no write lock), so it never queues behind a writer (see `broadcaster.db`).
READ_ONLY = "broadcaster_read_only"

#: Execution option of a session a person is waiting on (an API request that writes: an
#: operator's emergency above all): on SQLite its write turn comes before those of the
#: background writers (the ack ingest, the workers) asking at the same time.
WRITE_FIRST = "broadcaster_write_first"


def utcnow() -> dt.datetime:
    """The current time, timezone aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC; naive values are refused, results are always aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# JSON everywhere, JSONB on PostgreSQL.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


def str_enum(cls: type[StrEnum], name: str) -> Enum:
    """A `StrEnum` column stored as its values in a VARCHAR(16) (no native enum type, so a
    new member needs no migration of the type)."""
    return Enum(
        cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}  # noqa: RUF012


M = TypeVar("M")
T = TypeVar("T")


def among(session: Session, column: Any, ids: Collection[int]) -> ColumnElement[bool]:
    """``column IN ids`` for a list of integer ids that may be long (the stations of a
    province-wide broadcast, a batch of acks).

    On PostgreSQL the list is one bound array (``column = ANY(%(ids)s::INTEGER[])``): an
    ``IN`` list is one placeholder per id, and psycopg converts a statement with more than
    50 parameters afresh on each execution, in Python, placeholder by placeholder (with
    SQLAlchemy rendering each one before it): for a city-wide emergency to 10,000 stations
    that was over half of the API call.  Elsewhere (SQLite has no arrays) it is ``IN``.
    """
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(None, list(ids), type_=postgresql.ARRAY(column.type))
        return cast(ColumnElement[bool], column == any_(array))
    return cast(ColumnElement[bool], column.in_(list(ids)))


def release(session: Session) -> None:
    """End the boundary's read transaction before long work (speech, ingest, decoding,
    a network call), so no transaction (on SQLite: no write lock) is held while it runs.

    For a session that has only read so far: one holding unflushed changes is refused.
    The transaction is committed rather than rolled back so the objects it loaded stay
    as read (sessions do not expire on commit): touching them starts no new transaction
    until the boundary queries or writes again.
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("release() of a session holding unsaved changes")
    session.commit()


def paginate(session: Session, query: Select[M], limit: int, offset: int) -> tuple[list[M], int]:
    """One page of `query` and the total number of rows it matches."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list(session.scalars(query.limit(limit).offset(offset)).unique())
    return items, int(total or 0)


def delete_unless_used(
    session: Session,
    row: object,
    users: Select[int, str],
    refuse: Callable[[str], Exception],
) -> None:
    """Delete `row`, unless `users` (``id, title`` rows) finds what still uses it: then
    raise ``refuse(names)``, the first five named ``'title' (#id)``."""
    found = list(session.execute(users))
    if found:
        raise refuse(", ".join(f"'{title}' (#{user_id})" for user_id, title in found[:5]))
    session.delete(row)
    session.flush()


def columns_of(row: object, fields: Iterable[str]) -> dict[str, Any]:
    """The values of `row`'s mapped columns among `fields` (e.g. a read model's fields),
    for building what an API returns from a row plus what it computes."""
    names = set(inspect(type(row)).column_attrs.keys())
    return {name: getattr(row, name) for name in fields if name in names}


#: PostgreSQL's SQLSTATEs for a transaction it aborted to let another one go on
#: (deadlock_detected, serialization_failure): the transaction may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def new_row(obj: Base) -> dict[str, Any]:
    """The row a new ORM object (not added to a session) would insert, by column name,
    without its primary key: the values set on it, else its columns' Python defaults,
    else None; the defaults and Nones are set on the object too, so that, once
    `attach_inserted`, it holds what was inserted and reads nothing back.  For a row
    inserted by a statement of its own (`broadcaster.dispatch.outbox`'s one-statement
    store); a column with a server-side default is refused (the object could not know
    its value)."""
    values: dict[str, Any] = {}
    for attr in inspect(type(obj)).column_attrs:
        column = attr.columns[0]
        if column.primary_key:
            continue
        if column.server_default is not None:
            raise TypeError(f"{column} has a server default: not for `new_row`")
        if attr.key not in obj.__dict__:
            default = column.default
            if default is None:
                value = None
            elif default.is_callable:
                value = default.arg(None)
            elif default.is_scalar:
                value = default.arg
            else:
                raise TypeError(f"{column} has a SQL default: not for `new_row`")
            setattr(obj, attr.key, value)
        values[column.name] = obj.__dict__[attr.key]
    return values


def attach_inserted(session: Session, obj: Base, pk: int) -> None:
    """Put a new ORM object whose row a statement inserted (`new_row`) in ``session`` as
    that row, with its primary key ``pk``, as a flush would have left it."""
    key = inspect(type(obj)).primary_key[0].key
    assert key is not None
    setattr(obj, key, pk)
    make_transient_to_detached(obj)
    session.add(obj)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure the database resolved by aborting us."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or getattr(
        getattr(exc, "orig", None), "sqlstate", None
    )
    return code in RETRYABLE_SQLSTATES


def commit_retrying(session: Session, work: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``work`` (which reads and writes through ``session``) and commit, again from
    the start when the database aborted it as a deadlock victim (e.g. stopping a
    broadcast while the ack ingest updates the same targets in another order): the
    boundary's unit of work, so an operator's click never fails on a lock race."""
    for attempt in range(1, attempts + 1):
        try:
            result = work()
            session.commit()
            return result
        except DBAPIError as exc:
            session.rollback()
            if attempt == attempts or not is_retryable(exc):
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
