"""Issue 12, notifications: e-mail to a real local SMTP server (aiosmtpd) and signed
webhooks; a digest per subscription; retries with backoff, failures recorded (never
lost silently); nothing sent while a transaction is open."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alarms import service
from broadcaster.alarms.models import AlarmDelivery, Channel, DeliveryStatus
from broadcaster.alarms.notify import Notifier, NotifyConfig
from broadcaster.alarms.rules import Severity
from kernel.db import utcnow
from stations import tan_an
from stations.models import Area, Station
from stations.service import subtree_ids
from tests.alarms.helpers import report
from tests.support.loa import wait_until
from tests.support.notify import SmtpSink, WebhookSink


def config(smtp: SmtpSink, **kw: float) -> NotifyConfig:
    settings: dict[str, float] = {"timeout_s": 5} | kw
    return NotifyConfig(smtp_host="127.0.0.1", smtp_port=smtp.port, settle_s=0, **settings)


def statuses(factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    with factory() as session:
        return [
            (d.status.value, d.attempts)
            for d in session.scalars(select(AlarmDelivery).order_by(AlarmDelivery.id))
        ]


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_factory() as session:
        tan_an.load(session)
        session.commit()
    return session_factory


def subscribe(factory: sessionmaker[Session], channel: Channel, target: str) -> str | None:
    with factory() as session:
        sub = service.create_subscription(
            session,
            name="kt",
            channel=channel,
            target=target,
            area_id=None,
            min_severity=Severity.WARNING,
        )
        session.commit()
        return sub.secret


def test_email_digest_and_signed_webhook(
    seeded: sessionmaker[Session], smtp: SmtpSink, hooks: WebhookSink
) -> None:
    subscribe(seeded, Channel.EMAIL, "kythuat@example.vn")
    secret = subscribe(seeded, Channel.WEBHOOK, hooks.url)
    assert secret is not None
    report(seeded, ["p2-kp-1", "p3-kp-1", "p4-kp-1"], faults=["speaker_line"])
    notifier = Notifier(seeded, config(smtp))
    assert notifier.run_once() == 2  # one digest e-mail, one webhook
    assert notifier.run_once() == 0  # nothing twice

    (mail,) = smtp.to("kythuat@example.vn")
    assert mail["Subject"] == "[Cảnh báo] 3 sự kiện tại 3 trạm"
    text = mail.get_content()
    assert text.count("Lỗi đường dây loa") == 3
    assert "p3-kp-1" in text

    (hook,) = hooks.hooks
    timestamp = hook.headers["X-Broadcaster-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + hook.body, hashlib.sha256
    ).hexdigest()
    assert hook.headers["X-Broadcaster-Signature"] == f"sha256={expected}"
    payload = json.loads(hook.body)
    assert payload["count"] == 3
    assert {e["sid"] for e in payload["events"]} == {"p2-kp-1", "p3-kp-1", "p4-kp-1"}
    assert {e["event"] for e in payload["events"]} == {"raised"}
    assert statuses(seeded) == [("sent", 1)] * 6


def test_failures_are_retried_with_backoff_then_recorded(
    seeded: sessionmaker[Session], hooks: WebhookSink
) -> None:
    with SmtpSink(refuse=True) as refusing:
        subscribe(seeded, Channel.EMAIL, "kythuat@example.vn")
        subscribe(seeded, Channel.WEBHOOK, hooks.url)
        hooks.statuses = [500]
        report(seeded, ["p2-kp-1"], faults=["speaker_line"])
        notifier = Notifier(seeded, config(refusing, max_attempts=2, backoff_s=0.01))
        notifier.run_once()
        assert statuses(seeded) == [("pending", 1), ("pending", 1)]
        assert refusing.refused == 1
        with seeded() as session:
            errors = [
                d.last_error or ""
                for d in session.scalars(select(AlarmDelivery).order_by(AlarmDelivery.id))
            ]
        assert "550" in errors[0]
        assert "HTTP 500" in errors[1]

        # due again after the backoff: the webhook now answers 200, SMTP still refuses
        with seeded() as session:
            for d in session.scalars(select(AlarmDelivery)):
                d.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
            session.commit()
        notifier.run_once()
        assert statuses(seeded) == [("failed", 2), ("sent", 2)]
        assert len(hooks.hooks) == 2


def test_a_hanging_webhook_times_out(seeded: sessionmaker[Session], smtp: SmtpSink) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        subscribe(seeded, Channel.WEBHOOK, f"http://127.0.0.1:{silent.getsockname()[1]}/x")
        report(seeded, ["p2-kp-1"], faults=["speaker_line"])
        notifier = Notifier(seeded, NotifyConfig(timeout_s=0.5, settle_s=0, max_attempts=1))
        notifier.run_once()
        with seeded() as session:
            (delivery,) = session.scalars(select(AlarmDelivery))
            assert delivery.status is DeliveryStatus.FAILED
            assert "Timeout" in (delivery.last_error or "")
    finally:
        silent.close()


def test_a_hanging_webhook_delays_no_other_delivery(
    seeded: sessionmaker[Session], smtp: SmtpSink, hooks: WebhookSink
) -> None:
    """A real HTTP server that takes the request and never answers: the e-mail and the
    other webhook go out meanwhile, alarm after alarm; the hanging target gets one
    request at a time and its queued deliveries leave once it answers."""
    with WebhookSink(hang=True) as hanging:
        subscribe(seeded, Channel.WEBHOOK, hanging.url)
        subscribe(seeded, Channel.EMAIL, "kythuat@example.vn")
        subscribe(seeded, Channel.WEBHOOK, hooks.url)
        notifier = Notifier(seeded, config(smtp, timeout_s=120))
        notifier.start()
        try:
            report(seeded, ["p2-kp-1"], faults=["speaker_line"])
            wait_until(lambda: hanging.hanging == 1, what="the webhook to hang")
            wait_until(lambda: len(hooks.hooks) == 1, what="the other webhook")
            wait_until(lambda: len(smtp.to("kythuat@example.vn")) == 1, what="the e-mail")
            wait_until(
                lambda: statuses(seeded) == [("pending", 0), ("sent", 1), ("sent", 1)],
                what="the two sent, the hanging one pending",
            )

            report(seeded, ["p3-kp-1"], faults=["speaker_line"])  # while it still hangs
            wait_until(lambda: len(hooks.hooks) == 2, what="the second webhook")
            wait_until(lambda: len(smtp.to("kythuat@example.vn")) == 2, what="the e-mail")
            assert len(hanging.hooks) == 1  # one request at a time to the hanging target
            # the other sends end (their outcome recorded); only the hanging one is left
            wait_until(lambda: notifier.in_flight() == 1, what="the other sends to end")
            assert hanging.hanging == 1

            hanging.release()
            wait_until(lambda: len(hanging.hooks) == 2, what="the queued delivery")
            wait_until(lambda: all(s == "sent" for s, _ in statuses(seeded)), what="all sent")
        finally:
            notifier.stop()
    sids = [json.loads(h.body)["events"][0]["sid"] for h in hanging.hooks]
    assert sids == ["p2-kp-1", "p3-kp-1"]


def test_a_commune_wide_power_cut_is_one_digest(
    seeded: sessionmaker[Session], smtp: SmtpSink
) -> None:
    with seeded() as session:
        commune = session.scalar(select(Area.id).where(Area.code == "xa-loi-binh-nhon"))
        sids = list(
            session.scalars(
                select(Station.sid).where(Station.area_id.in_(subtree_ids(session, [commune])))
            )
        )
        for area_id, to in ((commune, "ktx@example.vn"), (None, "trucban@example.vn")):
            service.create_subscription(
                session,
                name=to,
                channel=Channel.EMAIL,
                target=to,
                area_id=area_id,
                min_severity=Severity.WARNING,
            )
        service.create_subscription(
            session,
            name="p2",
            channel=Channel.EMAIL,
            target="kt2@example.vn",
            area_id=session.scalar(select(Area.id).where(Area.code == "phuong-2")),
            min_severity=Severity.INFO,
        )
        session.commit()
    assert len(sids) == 7
    report(seeded, sids, on_battery=True, supply_v=12.6)  # mains lost everywhere
    Notifier(seeded, config(smtp)).run_once()
    (mail,) = smtp.to("ktx@example.vn")
    assert mail["Subject"] == "[Cảnh báo] 7 sự kiện tại 7 trạm"
    assert mail.get_content().count("Mất điện lưới, đang chạy ắc quy") == 7
    assert len(smtp.to("trucban@example.vn")) == 1
    assert smtp.to("kt2@example.vn") == []
