"""The one change helper: write the audit entry, bump the plan signal, commit.

Every write at a boundary (an API route, a CLI command, a seed or import job) ends with
`commit_change`, so a change is never committed without its audit entry, and a change
that may alter what a station plays always moves the plan signal
(`kernel.signals.plan_changed`) in the same transaction: the worker then rebuilds the
stations' plans.  The few writes that cannot alter a plan (a new draft asset, a new
empty area) say so with ``plan=False``; the test of every mutating route lists them.

Routes reach it through `kernel.dependencies.AuditTrail.commit_change`, which knows the
signed-in account and its address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from kernel import audit
from kernel.security import Principal
from kernel.signals import plan_changed

__all__ = ["Actor", "commit_change"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a signed-in account (and its address), or a named job."""

    principal: Principal | None = None
    name: str | None = None
    ip: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """A job acting on its own (seed, import from the command line...)."""
        return cls(name=name[:64])


def commit_change(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    targets: Sequence[str] = (),
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    plan: bool = True,
) -> None:
    """Record the audit entry, bump the plan signal (unless ``plan=False``) and commit."""
    audit.record(
        session,
        actor=actor.principal,
        actor_name=actor.name,
        action=action,
        target_type=target_type,
        targets=targets,
        ip=actor.ip,
        before=before,
        after=after,
    )
    if plan:
        plan_changed(session, action)
    session.commit()
