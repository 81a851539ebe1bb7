"""Alembic environment: migrations run on the engine the service hands over."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import JSON, Engine

import broadcaster.models  # noqa: F401 - registers every table on the shared metadata
from alembic import context
from broadcaster.db import make_engine
from kernel.db import Base, UTCDateTime

target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy ones, so migrations stand alone."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, JSON):
        autogen_context.imports.add("from kernel.migrations import JSONB")
        return "JSONB"
    return False


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        from broadcaster.settings import Settings

        engine = make_engine(Settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
