"""Receivers for alarm notifications in tests: a real SMTP server (aiosmtpd) and a
webhook endpoint, both on 127.0.0.1 in background threads, recording what they get.

``SmtpSink().start()`` accepts mail (``refuse=True``: answers 550 to every message);
``.messages`` holds the parsed `EmailMessage` objects.  ``WebhookSink().start()``
records each POST (headers and body); ``statuses`` is a queue of status codes to answer
with first (then 200), for retry tests; ``WebhookSink(hang=True)`` reads each request and
then hangs without answering until ``release()`` (a webhook that never responds).
"""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from http.server import BaseHTTPRequestHandler
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.media_server import LocalHTTPServer
from tests.support.mosquitto import free_port

__all__ = ["Hook", "SmtpSink", "WebhookSink"]


class SmtpSink:
    """An SMTP server that keeps every message it accepts."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.messages: list[EmailMessage] = []
        self.refused = 0
        self.refuse = refuse
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refused += 1
            return "550 mailbox unavailable"
        message = email.message_from_bytes(envelope.content, policy=default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookSink(LocalHTTPServer):
    """Records POSTed webhooks; answers with queued statuses first, then 200."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hooks: list[Hook] = []
        self.statuses: list[int] = []
        self.hanging = 0  # requests held without an answer right now
        self._released = threading.Event()
        if not hang:
            self._released.set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = sink.statuses.pop(0) if sink.statuses else 200
                sink.hooks.append(Hook(self.path, dict(self.headers.items()), body))
                if not sink._released.is_set():
                    sink.hanging += 1
                    sink._released.wait(120)
                    sink.hanging -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def release(self) -> None:
        """Let held requests (and later ones) be answered."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        super().stop()
