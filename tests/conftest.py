"""Test fixtures shared by every package's tests.

Brokers, recorders, fleets and the whole service come from the test-support plugin,
:mod:`tests.support.fixtures`.

The database under test comes from ``BROADCASTER_TEST_DATABASE_URL`` (default: SQLite).
`make test` runs the suite once on SQLite and once on PostgreSQL.

- SQLite: the migrations run once into a template file; every test gets a fresh copy.
- PostgreSQL: the session gets its own schema (``search_path``), migrated once; every
  test starts from empty tables (TRUNCATE, which also passes the audit log's
  append-only triggers, as they guard UPDATE and DELETE only).
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.settings import Environment, Settings
from kernel.db import Base
from tests.support.postgres import own_schema
from tests.support.service import TEST_SECRET

pytest_plugins = ["tests.support.fixtures"]

TEST_DB_URL = os.environ.get("BROADCASTER_TEST_DATABASE_URL", "sqlite://")
IS_POSTGRES = make_url(TEST_DB_URL).get_backend_name() == "postgresql"


def pytest_report_header() -> str:
    return f"database under test: {make_url(TEST_DB_URL).render_as_string(hide_password=True)}"


@dataclass
class DatabaseUnderTest:
    url_for_test: Callable[[pathlib.Path], str]
    reset: Callable[[], None]


@pytest.fixture(scope="session")
def _database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUnderTest]:
    if not IS_POSTGRES:
        template = tmp_path_factory.mktemp("db") / "template.db"
        engine = db.make_engine(f"sqlite:///{template}")
        db.upgrade(engine)
        engine.dispose()

        def sqlite_url(tmp: pathlib.Path) -> str:
            target = tmp / "broadcaster.db"
            shutil.copyfile(template, target)
            return f"sqlite:///{target}"

        yield DatabaseUnderTest(url_for_test=sqlite_url, reset=lambda: None)
        return

    with own_schema(TEST_DB_URL) as url_text:
        engine = db.make_engine(url_text)
        db.upgrade(engine)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

        def reset() -> None:
            with engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

        try:
            yield DatabaseUnderTest(url_for_test=lambda _tmp: url_text, reset=reset)
        finally:
            engine.dispose()


@pytest.fixture
def database_url(_database: DatabaseUnderTest, tmp_path: pathlib.Path) -> Iterator[str]:
    _database.reset()
    return _database.url_for_test(tmp_path)


@pytest.fixture
def settings(database_url: str, tmp_path: pathlib.Path) -> Settings:
    return make_settings(database_url, tmp_path)


def make_settings(
    database_url: str, tmp: pathlib.Path, public_base_url: str = "http://testserver"
) -> Settings:
    """The app's settings for tests: media under ``tmp``, no broker, no dynsec."""
    return Settings(
        environment=Environment.TEST,
        database_url=database_url,
        media_dir=tmp / "media",
        secret_key=TEST_SECRET,
        mqtt_url="mqtt://127.0.0.1:1",
        mqtt_dynsec=False,
        public_base_url=public_base_url,
        speech_warm_up=False,  # no audio processes for every test app (tested apart)
        route_warm_up=False,  # 0.2-0.5 s per test app (tested apart)
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = db.make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return db.make_sessionmaker(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (BROADCASTER_TEST_DATABASE_URL)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    """The API alone (no MQTT worker); dispatch tests start the whole service."""
    from broadcaster.app import create_app
    from broadcaster.runtime import Role

    return create_app(settings, role=Role.API)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def admin(client, session_factory: sessionmaker[Session]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from kernel.security import Role
    from tests.api import make_user

    return make_user(session_factory, "admin", Role.ADMIN, can_emergency=True)


@pytest.fixture
def tan_an(client, session_factory: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    from stations import tan_an

    with db.session_scope(session_factory) as session:
        tan_an.load(session)


@pytest.fixture
def bulletin(client, admin: dict[str, str], session_factory: sessionmaker[Session]) -> int:  # type: ignore[no-untyped-def]
    """An approved spoken bulletin (media asset id), ready to broadcast."""
    from kernel.security import Role
    from tests.api import make_user, ok

    made = ok(
        client.post("/api/v1/media/tts", json={"text": "Thông báo họp dân."}, headers=admin), 201
    )
    approver = make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])
    ok(client.post(f"/api/v1/media/{made['id']}/approve", headers=approver))
    return int(made["id"])
