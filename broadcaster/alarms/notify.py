"""Sending alarm notifications: e-mail over SMTP and signed JSON webhooks.

The `Notifier` thread of the active worker reads due deliveries (`queue.due`) in a
short read, closes the session, sends (each channel with its own timeout), then records
the outcome in a new transaction: no transaction is ever held across a network call,
and a hanging webhook or a refusing SMTP server never blocks the worker's ingest or jobs.
A failed delivery is retried with exponential backoff and recorded as failed after the
last attempt, never lost silently.  Deliveries of one subscription that are due together
leave as one message (a digest).

Each subscription (target) is a queue of its own: its sends run on a small thread pool,
at most one at a time per target, so a webhook that hangs until its timeout holds back
only its own later deliveries, never another technician's e-mail or webhook.

Webhook requests carry ``X-Broadcaster-Timestamp`` (Unix seconds) and
``X-Broadcaster-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed with
the subscription's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.alarms import queue
from broadcaster.alarms.models import Channel
from broadcaster.alarms.rules import EVENT_LABELS_VI
from broadcaster.db import read_session
from broadcaster.settings import Settings
from kernel.db import utcnow

log = logging.getLogger(__name__)

POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "broadcaster@localhost"
    timeout_s: float = 10.0
    settle_s: float = 10.0
    max_attempts: int = 6
    backoff_s: float = 30.0
    concurrency: int = 8  # targets sent to at once

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        password = settings.alarm_smtp_password
        return cls(
            smtp_host=settings.alarm_smtp_host,
            smtp_port=settings.alarm_smtp_port,
            smtp_user=settings.alarm_smtp_user,
            smtp_password=password.get_secret_value() if password else None,
            smtp_starttls=settings.alarm_smtp_starttls,
            mail_from=settings.alarm_mail_from,
            timeout_s=settings.alarm_notify_timeout_s,
            settle_s=settings.alarm_settle_s,
            max_attempts=settings.alarm_notify_max_attempts,
            backoff_s=settings.alarm_notify_backoff_s,
        )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header value."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def webhook_body(out: queue.Outgoing, sent_at: str) -> bytes:
    payload: dict[str, Any] = {
        "type": "broadcaster.alarms",
        "sent_at": sent_at,
        "count": len(out.events),
        "events": list(out.events),
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


def _line(event: dict[str, Any]) -> str:
    label = EVENT_LABELS_VI.get(str(event.get("event")), str(event.get("event")))
    area = f", {event['area']}" if event.get("area") else ""
    note = f" {event['note_vi']}" if event.get("note_vi") else ""
    return (
        f"[{label}] {event['severity_vi']}: {event['title_vi']} — {event['station']}"
        f" ({event['sid']}{area}): {event['detail']} (từ {event['raised_at']}){note}"
    )


def email_message(out: queue.Outgoing, mail_from: str) -> EmailMessage:
    message = EmailMessage()
    first = out.events[0]
    if len(out.events) == 1:
        label = EVENT_LABELS_VI.get(str(first.get("event")), "")
        subject = f"[{label}] {first['title_vi']} — {first['station']} ({first['sid']})"
    else:
        stations = sorted({str(e["sid"]) for e in out.events})
        subject = f"[Cảnh báo] {len(out.events)} sự kiện tại {len(stations)} trạm"
    message["Subject"] = subject
    message["From"] = mail_from
    message["To"] = out.target
    lines = [_line(e) for e in out.events]
    message.set_content(
        "Hệ thống truyền thanh cơ sở — thông báo cảnh báo kỹ thuật\n\n" + "\n".join(lines) + "\n"
    )
    return message


class Notifier:
    """The delivery thread (started and stopped by the active worker)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: NotifyConfig,
        *,
        http: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.factory = factory
        self.config = config
        self._http = http or (lambda: httpx.Client(timeout=config.timeout_s))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, config.concurrency), thread_name_prefix="alarm-send"
        )
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # subscriptions with a send in flight
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alarm-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.config.timeout_s + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            try:
                self.run_once(wait_s=0)
            except Exception:
                log.exception("alarm notifications failed; retrying")

    def in_flight(self) -> int:
        """Targets with a send under way."""
        with self._lock:
            return len(self._busy)

    def run_once(self, *, wait_s: float | None = None) -> int:
        """Start sending what is due, one send per target at a time (a target with a
        send still in flight is skipped: its deliveries wait for the next round); wait
        up to ``wait_s`` for the sends (None: until they end) and return how many of
        those that ended were sent."""
        with self.factory() as session:
            batch = queue.due(session, utcnow(), settle_s=self.config.settle_s)
        started: list[Future[bool]] = []
        for out in batch:
            if self._stopping.is_set():
                break
            with self._lock:
                if out.subscription_id in self._busy:
                    continue
                self._busy.add(out.subscription_id)
            try:
                started.append(self._pool.submit(self._deliver, out))
            except RuntimeError:  # the pool is shut down: stopping
                with self._lock:
                    self._busy.discard(out.subscription_id)
                break
        if wait_s is None or wait_s > 0:
            wait(started, timeout=wait_s)
        return sum(1 for f in started if f.done() and not f.exception() and f.result())

    def _deliver(self, due: queue.Outgoing) -> bool:
        """Send one message and record its outcome (True: sent).  This target's previous
        send has recorded its outcome (one send per target at a time): what it settled is
        left out, so nothing goes twice."""
        out = due
        try:
            with read_session(self.factory) as session:
                left = queue.still_pending(session, due, utcnow())
            if left is None:
                return False
            out = left
            error = self._send(out)
            try:
                with self.factory() as session:
                    queue.record_outcome(
                        session,
                        out.delivery_ids,
                        error=error,
                        now=utcnow(),
                        max_attempts=self.config.max_attempts,
                        backoff_s=self.config.backoff_s,
                    )
                    session.commit()
            except Exception:
                # the deliveries stay pending and go again: said, not lost in the future
                log.exception(
                    "alarm notification to %s %s: its outcome (%s) was not recorded",
                    out.channel.value,
                    out.target,
                    "sent" if error is None else "failed",
                )
                raise
        finally:
            with self._lock:
                self._busy.discard(out.subscription_id)
            self._wake.set()  # this target's deliveries that waited can go now
        with self._lock:
            if error is None:
                self.sent += 1
            else:
                self.failed += 1
        if error is None:
            return True
        log.warning(
            "alarm notification to %s %s failed (attempt %d): %s",
            out.channel.value,
            out.target,
            out.attempts + 1,
            error,
        )
        return False

    def _send(self, out: queue.Outgoing) -> str | None:
        try:
            if out.channel is Channel.EMAIL:
                self._email(out)
            else:
                self._webhook(out)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:2000]
        return None

    def _email(self, out: queue.Outgoing) -> None:
        config = self.config
        if not config.smtp_host:
            raise RuntimeError("no SMTP server configured (BROADCASTER_ALARM_SMTP_HOST)")
        message = email_message(out, config.mail_from)
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout_s) as smtp:
            if config.smtp_starttls:
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password or "")
            smtp.send_message(message)

    def _webhook(self, out: queue.Outgoing) -> None:
        timestamp = str(int(time.time()))
        body = webhook_body(out, utcnow().isoformat())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Broadcaster-Timestamp": timestamp,
            "X-Broadcaster-Signature": sign(out.secret or "", timestamp, body),
        }
        with self._http() as client:
            response = client.post(out.target, content=body, headers=headers)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
