"""The migrations create exactly the tables the models describe, on each database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import broadcaster.models  # noqa: F401 - registers every table
from broadcaster import db
from kernel.db import Base


def test_models_and_migrations_agree(engine: Engine) -> None:
    db.upgrade(engine)  # idempotent on an up-to-date database
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
