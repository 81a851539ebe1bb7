"""`kernel.db.among`: ``column IN ids`` for long id lists, one bound array on PostgreSQL
and an ``IN`` list elsewhere, selecting the same rows either way (run on both
databases by the suite's two passes)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kernel.db import among
from stations.models import Station


@pytest.mark.usefixtures("tan_an")
def test_selects_exactly_the_ids_given(session: Session) -> None:
    ids = list(session.scalars(select(Station.id).order_by(Station.id)))
    assert len(ids) > 50  # past psycopg's 50 parameters: what the array is for
    gone = [max(ids) + n for n in range(1, 3000)]  # a long list, mostly stations not there
    wanted = [*ids[::2], ids[0], *gone]  # every other station, a repeat
    found = session.scalars(select(Station.id).where(among(session, Station.id, wanted)))
    assert sorted(found) == ids[::2]
    # the same statement again with other ids (a cached compilation, fresh values)
    again = session.scalars(select(Station.id).where(among(session, Station.id, ids[1:4])))
    assert sorted(again) == ids[1:4]
    none = session.scalar(select(func.count()).where(among(session, Station.id, [])))
    assert none == 0


def test_one_parameter_on_postgresql(session: Session) -> None:
    query = select(Station.id).where(among(session, Station.id, list(range(1, 5001))))
    compiled = query.compile(dialect=session.get_bind().dialect)
    if session.get_bind().dialect.name == "postgresql":
        assert "= ANY (" in str(compiled)
        assert len(compiled.params) == 1
    else:
        assert " IN (" in str(compiled)
