"""After a boundary (a route, a live session's task) commits commands or a change of a
broadcast: publish them now and refresh the broadcasts' progress streams.  The one
place every router that stores commands does it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from broadcaster.dispatch import outbox, staged
from broadcaster.dispatch.models import Command
from kernel.errors import InvalidInput

log = logging.getLogger(__name__)

#: How long a request waits for the publisher to be through with the commands it
#: handed over before it writes their rows anyway (`write_staged`).
SENT_WAIT_S = 0.5


def ready_to_send(app: Any, session: Session, command: Command) -> list[outbox.Outgoing]:
    """What to hand the outbox publisher with the wake-up, read (`outbox.outgoing`) in
    the transaction that stores ``command``; nothing when the publisher is not in this
    process (an API replica, a standby worker): the active worker's own read sends it,
    and the read here would be thrown away."""
    runtime = getattr(app.state, "runtime", None)
    if runtime is None or not runtime.publishing:
        return []
    return [outbox.outgoing(session, command)]


def wake(app: Any, ready: Iterable[outbox.Outgoing] = ()) -> None:
    """Publish what was just committed now (the outbox publisher; ``ready``: commands
    read for it before the commit, `outbox.outgoing`, sent without another read), and
    refresh the progress streams (otherwise each refreshes on its next poll)."""
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None:
        runtime.wake(ready)
    _refresh_progress(app)


def _refresh_progress(app: Any) -> None:
    hub = getattr(app.state, "progress_hub", None)
    if hub is not None:
        hub.notify()


def write_staged(
    app: Any, session: Session, on_phase: Callable[[str], object] | None = None
) -> None:
    """After the commit and `wake`: once the publisher is through with the commands
    just handed over (at most `SENT_WAIT_S`) and the quiet moment after their fan-out is
    over (`Settings.fanout_quiet_for`), write the per-station rows they left
    staged (`broadcaster.dispatch.staged`), in a transaction of their own, and refresh
    the progress streams.  The command is out whatever happens here: should the
    write fail, the rows stay staged and the worker writes them (recording the publish,
    or storing the first acknowledgement), so the error is logged, not answered.

    ``on_phase`` is called with the name of each phase as it ends (the route's
    Server-Timing, `broadcaster.web.timing`): ``publish`` (until the publisher in this
    process was through: the broker acknowledged the command) and ``quiet`` (the quiet
    moment), only where the publisher runs in this process, then ``rows``."""
    mark = on_phase or (lambda _name: None)
    ids = staged.taken(session)
    if not ids:
        return
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None:
        # the publish first: the rows' write would take the GIL (and on SQLite the
        # write turn the publisher's record of it needs) while the command leaves;
        # then the broker's fan-out of it (a quiet moment: `firmware_bridge.quiet`)
        runtime.wait_sent(ids, SENT_WAIT_S)
        if runtime.publishing:
            mark("publish")
        runtime.wait_quiet()
        if runtime.publishing:
            mark("quiet")
    try:
        staged.write(session, ids)
        session.commit()
    except Exception:
        session.rollback()
        log.exception("writing the rows of commands %s after their publish failed", ids)
        return
    mark("rows")
    _refresh_progress(app)


def commit_following(app: Any, session: Session, follow: Callable[[], object]) -> None:
    """Run ``follow`` (a spoken emergency's speech and audio, once its play was
    committed and published: `broadcasts.follow_with_speech`) and commit and publish
    what it stored.  When the text cannot be spoken (`InvalidInput`), what ``follow``
    stored on its way out (the broadcast's stop) is committed and published too, then
    the error goes on for the route to answer."""
    try:
        follow()
    except InvalidInput:
        session.commit()
        wake(app)
        raise
    session.commit()
    wake(app)
