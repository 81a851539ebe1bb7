"""Area codes for asset ownership, read straight from the ``areas`` table.

The library must not import the `stations` package (the two are peers), yet the API
speaks area *codes*.  These two lookups read the registry's table through SQLAlchemy
Core, which is all the library needs of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import column, select, table
from sqlalchemy.orm import Session

_areas = table("areas", column("id"), column("code"))


def codes_for(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(_areas.c.id, _areas.c.code).where(_areas.c.id.in_(wanted)))
    return {int(i): str(c) for i, c in rows}


def id_for(session: Session, code: str) -> int | None:
    found = session.scalar(select(_areas.c.id).where(_areas.c.code == code))
    return None if found is None else int(found)
