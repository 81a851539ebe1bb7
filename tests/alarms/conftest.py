"""Local receivers of alarm notifications (see :mod:`support.notify`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.notify import SmtpSink, WebhookSink


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def hooks() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink
