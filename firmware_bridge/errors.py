"""Exceptions raised by the firmware bridge.

::

    FirmwareBridgeError
     ├── ProtocolError (ValueError)   a payload or topic that violates loa/v1
     │    └── TopicError              a topic outside the loa/v1 topic tree
     ├── ConfigError (ValueError)     a malformed MQTT URL or bridge/simulator setting
     └── RetryLater                   an inbound handler that cannot store now (busy DB)

Library errors (paho return codes, ``OSError``, httpx errors) are wrapped once at
the boundary with ``raise ... from exc`` or counted and logged where the caller
must keep running (the MQTT callbacks, the simulator's stations).
"""

from __future__ import annotations

from typing import Literal

#: Why a message was refused; used as a bounded label for counters.
ProtocolErrorCategory = Literal["topic", "oversize", "encoding", "json", "schema", "model"]
# (the bridge also counts "internal" (our own bug caught by its barrier) and "handler"
# (a message the server's handler failed on) when it quarantines a message)


class FirmwareBridgeError(Exception):
    """Base class of every error raised by :mod:`firmware_bridge`."""


class ProtocolError(FirmwareBridgeError, ValueError):
    """A message or topic that is not valid loa/v1.

    ``reason`` is a short human sentence ("telemetry: 'seq' is a required property");
    ``category`` is one of a few fixed labels, fit for a metrics counter.
    """

    def __init__(self, reason: str, *, category: ProtocolErrorCategory = "schema") -> None:
        super().__init__(reason)
        self.reason = reason
        self.category: ProtocolErrorCategory = category


class TopicError(ProtocolError):
    """A topic that does not belong to the loa/v1 tree (or has an invalid id)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, category="topic")


class ConfigError(FirmwareBridgeError, ValueError):
    """A malformed configuration value (MQTT URL, fault spec, station list...)."""


class RetryLater(FirmwareBridgeError):
    """Raised by an inbound handler that cannot take a batch now (a busy database).

    The bridge offers the same batch again later, with exponential backoff, and does
    not acknowledge it meanwhile: nothing is lost, nothing is stored twice.
    """
