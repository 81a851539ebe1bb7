"""SQLite's single write lock, seen from outside the service: is it free right now?"""

from __future__ import annotations

import sqlite3

from sqlalchemy.orm import Session, sessionmaker


def db_path(factory: sessionmaker[Session]) -> str:
    """The SQLite file ``factory``'s sessions use."""
    return str(factory.kw["bind"].url.database)


def try_write_now(database: str) -> bool:
    """Can a writer take the lock at once (nobody holds it)?"""
    other = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()
