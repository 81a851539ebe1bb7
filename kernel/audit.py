"""The append-only audit log: who did what, to which targets, when, from where.

Routers record an entry in the same transaction as the change it describes (so a
change is never committed without its record).  No code path updates or deletes rows;
the migration also installs database triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, cast, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from kernel.db import Base, JSONType, paginate, utcnow
from kernel.security import Principal


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_action", "action"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # No foreign key: the record outlives the account it names.
    actor_id: Mapped[int | None] = mapped_column(nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    targets: Mapped[list[str]] = mapped_column(JSONType, default=list)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


def record(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    target_type: str,
    targets: Sequence[str] = (),
    ip: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor_name: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor_id=actor.user_id if actor else None,
        actor=(actor.username if actor else actor_name) or "system",
        action=action,
        target_type=target_type,
        targets=list(targets),
        ip=ip,
        before=before,
        after=after,
    )
    session.add(entry)
    session.flush()
    return entry


def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Entries matching the filters, newest first, and their number.  `action` may end in
    ``*`` (``station.*``); `target` matches one of the entry's targets exactly."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action.like(action.replace("*", "%")))
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    if target:
        needle = target.replace("\\", "").replace('"', "").replace("%", "").replace("_", "\\_")
        query = query.where(cast(AuditEntry.targets, String).like(f'%"{needle}"%', escape="\\"))
    return paginate(session, query.order_by(AuditEntry.id.desc()), limit, offset)


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def snapshot(obj: object, fields: Sequence[str]) -> dict[str, Any]:
    """Some attributes of `obj`, JSON-ready, for an entry's ``before``/``after``."""
    return {name: _jsonable(getattr(obj, name)) for name in fields}
