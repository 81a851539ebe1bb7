"""SQLite transactions: writers queue for the write lock; a read-only session does not."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import select, text

from broadcaster import db
from stations.models import Area


def test_read_session_does_not_wait_for_a_writer_but_a_write_session_does(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/locks.db")
    db.upgrade(engine)
    factory = db.make_sessionmaker(engine)
    try:
        writer = factory()
        writer.add(
            Area(
                code="tan-an", name="Thành phố Tân An", name_folded="thanh pho tan an", level="city"
            )
        )
        writer.flush()  # holds the write lock (BEGIN IMMEDIATE) until it commits

        with db.read_session(factory) as reader:
            started = time.monotonic()
            seen = reader.scalars(select(Area.code)).all()
            read_s = time.monotonic() - started
        assert seen == []  # the last commit, not the writer's pending row
        assert read_s < 5  # the busy timeout is 30 s: it did not queue behind the writer

        waited = threading.Event()
        done = threading.Event()

        def second_writer() -> None:
            with factory() as session:
                session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: waits for the lock
                waited.set()
            done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not done.wait(1.0), "a write session must queue behind the writer"
        writer.commit()
        writer.close()
        assert done.wait(10)
        thread.join()
        assert waited.is_set()
        with db.read_session(factory) as reader:
            assert reader.scalars(select(Area.code)).all() == ["tan-an"]
    finally:
        engine.dispose()
