"""A deadlock victim is run again (`kernel.db.commit_retrying`): on PostgreSQL a stop
clicked while the ack ingest updates the same targets must not fail (issue 13, seen by
the live paging tests). Two real transactions lock two rows in opposite orders."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from kernel.db import commit_retrying, is_retryable

pytestmark = pytest.mark.postgres_only


def test_the_deadlock_victim_is_run_again_and_both_commit(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as setup:
        setup.execute(text("CREATE TABLE IF NOT EXISTS lock_race (id int PRIMARY KEY, v int)"))
        setup.execute(text("DELETE FROM lock_race"))
        setup.execute(text("INSERT INTO lock_race VALUES (1, 0), (2, 0)"))
    other_has_row_1 = threading.Event()
    we_wait_for_row_1 = threading.Event()
    other_error: list[BaseException] = []

    def other() -> None:  # like the ingest: row 1, then row 2
        try:
            with session_factory.begin() as session:
                session.execute(text("UPDATE lock_race SET v = v + 10 WHERE id = 1"))
                other_has_row_1.set()
                we_wait_for_row_1.wait(10)
                time.sleep(0.3)  # we are blocked on row 1 by now, and waited first
                session.execute(text("UPDATE lock_race SET v = v + 10 WHERE id = 2"))
        except BaseException as exc:
            other_error.append(exc)

    attempts: list[int] = []
    errors: list[bool] = []
    thread = threading.Thread(target=other)
    thread.start()
    other_has_row_1.wait(10)
    with session_factory() as session:

        def work() -> int:  # like the stop: row 2, then row 1
            attempts.append(1)
            session.execute(text("UPDATE lock_race SET v = v + 1 WHERE id = 2"))
            we_wait_for_row_1.set()
            try:
                session.execute(text("UPDATE lock_race SET v = v + 1 WHERE id = 1"))
            except DBAPIError as exc:
                errors.append(is_retryable(exc))
                raise
            return len(attempts)

        assert commit_retrying(session, work) == 2
    thread.join(10)
    assert other_error == []
    assert errors == [True]  # the first attempt was the deadlock victim
    with session_factory() as session:
        rows = {int(r[0]): int(r[1]) for r in session.execute(text("SELECT id, v FROM lock_race"))}
        assert rows == {1: 11, 2: 11}  # both units of work, each once
        session.execute(text("DROP TABLE lock_race"))
        session.commit()
