"""The alarm delivery queue, read and settled by `notify.Notifier`.

`service` fills it (one pending `AlarmDelivery` per matching subscription, in the
transaction that raised, escalated or cleared the alarm); here the due deliveries are
grouped per subscription (`due`), checked again just before the send (`still_pending`)
and each send's outcome recorded (`record_outcome`).
Services flush; the notifier commits.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.alarms.models import AlarmDelivery, AlarmSubscription, Channel, DeliveryStatus


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Due deliveries of one subscription, sent together (a digest if several)."""

    subscription_id: int
    channel: Channel
    target: str
    secret: str | None
    delivery_ids: tuple[int, ...]
    attempts: int
    events: tuple[dict[str, Any], ...]


def due(session: Session, now: dt.datetime, *, settle_s: float, limit: int = 500) -> list[Outgoing]:
    """Pending deliveries that are due, grouped per subscription.  A subscription's
    deliveries wait until its oldest has waited ``settle_s``; then every pending one of
    it leaves together, so alarms fired together (a commune-wide power cut, whose
    stations' reports arrive over seconds) leave in one message whenever the notifier
    looks (Alertmanager's ``group_wait``)."""
    settled = now - dt.timedelta(seconds=settle_s)
    sendable = (
        AlarmDelivery.status == DeliveryStatus.PENDING,
        AlarmDelivery.next_attempt_at <= now,
    )
    ready = select(AlarmDelivery.subscription_id).where(
        *sendable, AlarmDelivery.created_at <= settled
    )
    rows = session.execute(
        select(AlarmDelivery, AlarmSubscription)
        .join(AlarmSubscription, AlarmSubscription.id == AlarmDelivery.subscription_id)
        .where(*sendable, AlarmDelivery.subscription_id.in_(ready))
        .order_by(AlarmDelivery.id)
        .limit(limit)
    ).all()
    grouped: dict[int, list[tuple[AlarmDelivery, AlarmSubscription]]] = defaultdict(list)
    for delivery, subscription in rows:
        grouped[subscription.id].append((delivery, subscription))
    return [
        Outgoing(
            subscription_id=sub_id,
            channel=items[0][1].channel,
            target=items[0][1].target,
            secret=items[0][1].secret,
            delivery_ids=tuple(d.id for d, _ in items),
            attempts=max(d.attempts for d, _ in items),
            events=tuple(dict(d.snapshot) for d, _ in items),
        )
        for sub_id, items in grouped.items()
    ]


def still_pending(session: Session, out: Outgoing, now: dt.datetime) -> Outgoing | None:
    """`out` without the deliveries settled or put off (a failed attempt's backoff)
    since it was read (None: nothing left).

    The notifier reads what is due while an earlier send to the same target may be
    recording its outcome: read again once that send is over, those deliveries would go
    twice (a technician mailed the same alarm twice)."""
    pending = set(
        session.scalars(
            select(AlarmDelivery.id).where(
                AlarmDelivery.id.in_(list(out.delivery_ids)),
                AlarmDelivery.status == DeliveryStatus.PENDING,
                AlarmDelivery.next_attempt_at <= now,
            )
        )
    )
    if len(pending) == len(out.delivery_ids):
        return out
    if not pending:
        return None
    kept = [(i, e) for i, e in zip(out.delivery_ids, out.events, strict=True) if i in pending]
    return replace(out, delivery_ids=tuple(i for i, _ in kept), events=tuple(e for _, e in kept))


def record_outcome(
    session: Session,
    delivery_ids: Sequence[int],
    *,
    error: str | None,
    now: dt.datetime,
    max_attempts: int,
    backoff_s: float,
) -> None:
    """Mark deliveries sent, or schedule the next attempt (failed after the last)."""
    for delivery in session.scalars(
        select(AlarmDelivery).where(AlarmDelivery.id.in_(list(delivery_ids)))
    ):
        delivery.attempts += 1
        if error is None:
            delivery.status = DeliveryStatus.SENT
            delivery.sent_at = now
            delivery.last_error = None
            continue
        delivery.last_error = error[:2000]
        if delivery.attempts >= max_attempts:
            delivery.status = DeliveryStatus.FAILED
        else:
            delay = min(backoff_s * 2 ** (delivery.attempts - 1), 3600.0)
            delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
    session.flush()
