"""A schema of its own on a PostgreSQL server: the test session's database (the suite's
PostgreSQL pass) and a benchmark's (``bench_broadcast.py --database-url``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from broadcaster import db

__all__ = ["own_schema"]


@contextmanager
def own_schema(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new, empty schema on the server of ``server_url`` (named ``{prefix}_`` and 12 hex
    digits) and the URL whose connections use it (``search_path``); dropped, with all it
    holds, on leaving."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(db.normalise_url(server_url)).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
