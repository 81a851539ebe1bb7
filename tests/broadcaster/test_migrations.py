"""The migrations create exactly the tables the models describe, on each database; a
migration that changes a table with data keeps the data."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import broadcaster.models  # noqa: F401 - registers every table
from alembic import command
from broadcaster import db
from broadcaster.dispatch.models import Play, PlayStatus
from kernel.db import Base
from stations import tan_an
from stations.models import Station


def test_models_and_migrations_agree(engine: Engine) -> None:
    db.upgrade(engine)  # idempotent on an up-to-date database
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_0022_keys_a_broadcasts_plays_by_command_and_keeps_them(engine: Engine) -> None:
    """A database from before 0022 keeps its plays; afterwards a broadcast's plays are
    keyed command first (one run of the index, not a page per station), the key still
    refuses a second play of a command at a station, and a read by command alone (a
    stop, the speech that follows) searches the key instead of scanning every play."""
    db.upgrade(engine)
    command.downgrade(db.alembic_config(engine), "0021_h13snd")
    now = dt.datetime(2026, 12, 5, 1, 0, tzinfo=dt.UTC)
    row = {
        "source": "broadcast",
        "title": "Bão số 9",
        "kind": "file",
        "priority": 9,
        "planned_start": now,
        "planned_end": now + dt.timedelta(minutes=1),
        "expected_ms": 60_000,
        "status": PlayStatus.PLANNED,
        "updated_at": now,
    }
    with Session(engine) as session:
        tan_an.load(session)
        session.flush()
        first, second = session.scalars(select(Station.id).order_by(Station.id).limit(2))
        session.execute(
            insert(Play),
            [row | {"station_id": s, "cmd_id": c} for s in (first, second) for c in ("c1", "c2")],
        )
        session.commit()
    keys = {c["name"]: c["column_names"] for c in inspect(engine).get_unique_constraints("plays")}
    assert keys["uq_plays_station_cmd"] == ["station_id", "cmd_id"]

    db.upgrade(engine)

    keys = {c["name"]: c["column_names"] for c in inspect(engine).get_unique_constraints("plays")}
    assert "uq_plays_station_cmd" not in keys
    assert keys["uq_plays_cmd_station"] == ["cmd_id", "station_id"]
    assert keys["uq_plays_station_item"] == ["station_id", "item_id"]
    with Session(engine) as session:
        kept = session.execute(select(Play.cmd_id, Play.station_id).order_by(Play.id)).all()
        assert sorted(kept) == sorted((c, s) for s in (first, second) for c in ("c1", "c2"))
        with pytest.raises(IntegrityError):
            session.execute(insert(Play), [row | {"station_id": first, "cmd_id": "c1"}])
        session.rollback()
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1])
                for r in session.execute(
                    text("EXPLAIN QUERY PLAN SELECT station_id FROM plays WHERE cmd_id = 'c1'")
                )
            )
            assert "SEARCH plays" in plan, plan
            assert "(cmd_id=?)" in plan, plan
