"""The active worker's job: apply the reorganisations whose effective date has come.

Run at local midnight (`Asia/Ho_Chi_Minh` by default) and every few minutes after, so a
worker that was down at midnight, or a standby that took over, catches up.  Each plan
is its own boundary: applied (or marked failed with every error) and committed through
the change helper with its audit entry, so the plan signal makes the worker rebuild the
stations' playlists.  Idempotent: an applied plan is no longer scheduled.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.reorg import service
from kernel.changes import Actor, commit_change
from kernel.db import utcnow

log = logging.getLogger(__name__)
ACTOR = Actor.system("worker:reorganisation")


def apply_due(factory: sessionmaker[Session], tz: ZoneInfo) -> list[service.Outcome]:
    """Apply every scheduled plan due by today (local date of `tz`); answer the outcomes."""
    today = utcnow().astimezone(tz).date()
    outcomes: list[service.Outcome] = []
    with factory() as session:
        while (outcome := service.apply_next_due(session, today=today)) is not None:
            record = outcome.record
            if outcome.effect is not None:
                log.info("reorganisation %d (%s) applied", record.id, record.name)
                action, after, plan = "area.reorganise", outcome.effect, True
            else:
                log.warning("reorganisation %d (%s) refused on its date", record.id, record.name)
                errors = [{"error": e, "message_vi": v} for e, v in outcome.errors]
                action, after, plan = "area.reorganise.failed", {"errors": errors}, False
            commit_change(
                session, ACTOR, action, "area_reorganisation", [str(record.id)],
                after=after, plan=plan,
            )  # fmt: skip
            outcomes.append(outcome)
    return outcomes
