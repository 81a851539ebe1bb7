"""The enabled fleet a broadcast resolves its targets in is kept in memory between
broadcasts (`stations.targets.FLEETS`) and read again whenever the registry changed:
through the change helper (the plan signal moves) or behind its back (a script's rows,
a new empty area), which the database's own fingerprint of the fleet catches.  Every
resolution is checked against a fresh read.  On both databases (the suite's passes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.engine.default import CacheStats
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.dispatch import broadcasts
from broadcaster.dispatch.schemas import BroadcastCreate, BroadcastTargets
from kernel.changes import Actor, commit_change
from kernel.errors import InvalidInput
from stations import targets
from stations.models import Area, AreaLevel, Station, StationKind, StationState
from stations.targets import FLEETS, Reached, TargetNames, TargetResolver

pytestmark = pytest.mark.usefixtures("tan_an")

NAMES = [
    TargetNames(areas=["tan-an"]),
    TargetNames(areas=["xa-loi-binh-nhon"]),
    TargetNames(stations=["htp-1", "lbn-cau-tre"]),
    TargetNames(groups=["xa-loi-binh-nhon"], stations=["htp-1"]),
]


def _fresh(session: Session, names: TargetNames) -> list[Reached]:
    """What the names reach, read from the database with no cache involved."""
    rows = targets.look_up(session, names)
    resolver = TargetResolver(session, with_sids=True)
    ids = resolver.resolve(*rows.ids())
    return sorted((Reached(i, resolver.sid_of[i], resolver.area_of[i]) for i in ids), key=str)


def _resolved(session: Session, names: TargetNames) -> list[Reached]:
    return sorted(targets.resolve_names(session, names).stations, key=str)


def _check_all(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        for names in NAMES:
            assert _resolved(session, names) == _fresh(session, names), names


def _hamlets(session: Session) -> list[int]:
    return list(session.scalars(select(Area.id).where(Area.level == AreaLevel.HAMLET)))


def _add_station(session: Session, sid: str, area_id: int) -> None:
    session.execute(
        insert(Station).values(
            sid=sid,
            name=sid,
            name_folded=sid,
            kind=StationKind.SMART,
            area_id=area_id,
            capabilities=["file"],
            enabled=True,
        )
    )


def test_a_fleet_read_once_serves_the_next_broadcasts(
    session_factory: sessionmaker[Session],
) -> None:
    _check_all(session_factory)
    with session_factory() as session:
        first, _ = FLEETS.current(session)
    _check_all(session_factory)
    with session_factory() as session:
        again, _ = FLEETS.current(session)
    assert again is first  # nothing changed: not read again


def _through_the_helper(session: Session) -> None:
    _add_station(session, "moi-1", _hamlets(session)[0])
    commit_change(session, Actor.system("test"), "station.create", "station", ["moi-1"])


def _inserted_behind_its_back(session: Session) -> None:
    _add_station(session, "moi-2", _hamlets(session)[-1])
    session.commit()


def _disabled(session: Session) -> None:
    session.execute(update(Station).where(Station.sid == "lbn-cau-tre").values(enabled=False))
    session.commit()


def _two_stations_trade_hamlets(session: Session) -> None:
    """The same stations, the same areas, only who is where: a sum of ids or of areas
    alone would not change."""
    a, b = session.execute(
        select(Station.id, Station.area_id).where(Station.sid.in_(["lbn-cau-tre", "htp-1"]))
    ).all()
    assert a[1] != b[1]
    session.execute(update(Station).where(Station.id == a[0]).values(area_id=b[1]))
    session.execute(update(Station).where(Station.id == b[0]).values(area_id=a[1]))
    session.commit()


def _new_empty_area_then_a_station(session: Session) -> None:
    """A new area is recorded without moving the plan signal (it reaches nobody yet);
    a station put there by a script does not move it either."""
    parent = session.scalar(select(Area).where(Area.code == "xa-loi-binh-nhon"))
    assert parent is not None
    session.execute(
        insert(Area).values(
            code="ap-moi", name="Ấp Mới", name_folded="ap moi", level=AreaLevel.HAMLET,
            parent_id=parent.id,
        )
    )  # fmt: skip
    session.commit()
    area_id = session.scalar(select(Area.id).where(Area.code == "ap-moi"))
    assert area_id is not None
    _add_station(session, "moi-3", area_id)
    session.commit()


@pytest.mark.parametrize(
    "change",
    [
        _through_the_helper,
        _inserted_behind_its_back,
        _disabled,
        _two_stations_trade_hamlets,
        _new_empty_area_then_a_station,
    ],
)
def test_a_changed_registry_is_read_again(
    session_factory: sessionmaker[Session], change: Callable[[Session], None]
) -> None:
    _check_all(session_factory)  # the fleet as seeded is now in memory
    with session_factory() as session:
        before, _ = FLEETS.current(session)
        change(session)
    with session_factory() as session:
        after, _ = FLEETS.current(session)
    assert after is not before
    _check_all(session_factory)


#: the city-wide emergency (only its targets matter to the route)
CITY_WIDE = BroadcastCreate.model_validate(
    {"targets": {"areas": ["tan-an"]}, "content": {"text": "Thử"}, "tier": "emergency"}
)


def test_a_group_broadcast_copies_directly_to_stations_not_in_step(
    session_factory: sessionmaker[Session],
) -> None:
    """The group route's direct copies: a station with no state yet, one never sent a
    plan, one that has applied none, one behind; a station that applied the plan it was
    sent gets the group's copy only."""
    with session_factory() as session:
        ids = {sid: i for sid, i in session.execute(select(Station.sid, Station.id))}
        session.query(StationState).delete()
        now = dt.datetime.now(dt.UTC)
        for sid, published, applied in [
            ("htp-1", 3, 3),  # in step
            ("lbn-cau-tre", 0, None),  # never sent a plan
            ("lbn-ngai-loi-a", 2, None),  # applied none
            ("lbn-ngai-loi-b", 4, 3),  # behind
        ]:
            session.add(
                StationState(
                    station_id=ids[sid],
                    desired_published_version=published,
                    applied_version=applied,
                    desired_at=now,
                )
            )
        session.commit()
        plan = broadcasts.plan_route(session, CITY_WIDE.targets)
    assert plan.route.value == "groups"
    by_id = {i: s for s, i in ids.items()}
    direct = {by_id[i] for i in plan.direct}
    assert "htp-1" not in direct
    assert {"lbn-cau-tre", "lbn-ngai-loi-a", "lbn-ngai-loi-b"} <= direct
    # every other station has no state row at all: a direct copy each
    assert direct == set(ids) - {"htp-1"}


@contextmanager
def _statements(session: Session, *, built_only: bool = False) -> Iterator[list[str]]:
    """The statements ``session``'s engine runs inside the block (``built_only``: only
    those it had to build, not found in its compiled cache)."""
    seen: list[str] = []
    engine = session.get_bind().engine

    def record(*args: object) -> None:
        built = getattr(args[4], "cache_hit", None) is CacheStats.CACHE_MISS
        if built or not built_only:
            seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_city_wide_route_reads_the_stations_not_in_step_with_the_registry_key(
    session_factory: sessionmaker[Session],
) -> None:
    """Once the fleet is in memory, a broadcast to the whole city reads its direct
    copies in the registry's statement, not in one of their own, and finds the same
    stations as the statement of their own does (whatever the fleet last read said)."""
    with session_factory() as session:
        ids = {sid: i for sid, i in session.execute(select(Station.sid, Station.id))}
        session.query(StationState).delete()
        now = dt.datetime.now(dt.UTC)
        for sid, station_id in ids.items():
            behind = sid in {"htp-1", "lbn-cau-tre"}
            session.add(
                StationState(
                    station_id=station_id,
                    desired_published_version=4,
                    applied_version=3 if behind else 4,
                    desired_at=now,
                )
            )
        session.commit()
        first = broadcasts.plan_route(session, CITY_WIDE.targets)  # the fleet is read here
        session.rollback()
        with _statements(session) as seen:
            again = broadcasts.plan_route(session, CITY_WIDE.targets)
    assert first.direct == again.direct == {ids["htp-1"], ids["lbn-cau-tre"]}
    assert again.route.value == "groups"
    assert again.groups == ["all"]
    queries = [q for q in seen if q.lstrip().upper().startswith("SELECT")]  # not BEGIN
    assert len(queries) == 1, queries  # the registry's key, the area, the direct copies
    assert "plan_signal" in queries[0]
    assert "station_states" in queries[0]


def test_the_way_out_prepared_at_start_up_reads_nothing_more_and_builds_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    """What the API's start-up does (`broadcasts.prepare_way_out`): the fleet is then in
    memory and the city-wide route's statement built, so the first emergency's route
    runs the registry's key alone, from the compiled cache, as every later one does.
    Without it the first read the fleet and the second built the statement."""
    with session_factory() as session:
        assert FLEETS.peek(session) is None
        planned = broadcasts.prepare_way_out(session)
        session.rollback()
        assert planned == 2  # the city (its one root area) and the ``all`` group
        assert FLEETS.peek(session) is not None
        for named in [CITY_WIDE.targets, BroadcastTargets(groups=["all"])]:
            with _statements(session) as seen, _statements(session, built_only=True) as built:
                plan = broadcasts.plan_route(session, named)
            session.rollback()
            assert plan.groups == ["all"]
            queries = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
            assert "plan_signal" in queries[0], queries  # the registry's key first
            if named.areas:
                assert len(queries) == 1, queries  # and alone (a group's members are read)
            assert built == [], built


def test_an_empty_registry_prepares_no_route(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        session.execute(update(Station).values(enabled=False))
        session.commit()
        assert broadcasts.prepare_way_out(session) == 0
        session.rollback()


def test_every_station_in_step_gets_no_direct_copy(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        session.query(StationState).delete()
        now = dt.datetime.now(dt.UTC)
        for station_id in session.scalars(select(Station.id)):
            session.add(
                StationState(
                    station_id=station_id,
                    desired_published_version=2,
                    applied_version=2,
                    desired_at=now,
                )
            )
        session.commit()
        for _ in range(2):
            plan = broadcasts.plan_route(session, CITY_WIDE.targets)
            session.rollback()
            assert plan.direct == set()
            assert plan.groups == ["all"]


def test_an_area_renamed_behind_the_helpers_back_is_found_by_its_new_code(
    session_factory: sessionmaker[Session],
) -> None:
    """The area codes a broadcast names are read with the registry's key, each time,
    not taken from the fleet in memory."""
    ward = TargetNames(areas=["xa-loi-binh-nhon"])
    with session_factory() as session:
        before = _resolved(session, ward)
        session.execute(
            update(Area).where(Area.code == "xa-loi-binh-nhon").values(code="xa-lbn-moi")
        )
        session.commit()
        after = _resolved(session, TargetNames(areas=["xa-lbn-moi"]))
        with pytest.raises(InvalidInput) as caught:
            targets.resolve_names(session, TargetNames(areas=["tan-an", "xa-loi-binh-nhon"]))
    assert after == before
    assert caught.value.loc == ("targets", "areas", 1)


def test_more_area_codes_than_are_read_with_the_key(
    session_factory: sessionmaker[Session],
) -> None:
    """Past `KEYED_AREAS` codes the areas are read by a statement of their own, with the
    same answer and the same error on an unknown code."""
    with session_factory() as session:
        codes = list(session.scalars(select(Area.code).order_by(Area.code)))
        assert len(codes) > targets.KEYED_AREAS
        many = TargetNames(areas=codes[: targets.KEYED_AREAS + 1])
        assert _resolved(session, many) == _fresh(session, many)
        unknown = TargetNames(areas=[*codes[: targets.KEYED_AREAS + 1], "khong-co"])
        with pytest.raises(InvalidInput) as caught:
            targets.resolve_names(session, unknown)
    assert caught.value.loc == ("targets", "areas", targets.KEYED_AREAS + 1)
