"""The loa/v1 topic tree: builders and a strict parser.

Every topic is built from a :class:`Topics` value that carries the prefix (``loa/v1``
unless configured as a whole), so no code formats topic strings by hand. Station and
group ids are checked against the protocol's pattern on the way in and on the way
out, which also keeps MQTT wildcards (``+``, ``#``) out of ids.

::

    {prefix}/server/state
    {prefix}/st/{sid}/state|desired|reported|cmd|ack|event|telemetry
    {prefix}/grp/{gid}/cmd
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from firmware_bridge.errors import ConfigError, TopicError
from firmware_bridge.schema import MessageKind

__all__ = [
    "DEFAULT_PREFIX",
    "STATION_INBOUND",
    "TopicKind",
    "TopicRef",
    "Topics",
    "is_valid_id",
]

DEFAULT_PREFIX = "loa/v1"

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def is_valid_id(value: str) -> bool:
    """True when ``value`` is a valid ``sid`` / ``gid``."""
    return _ID.fullmatch(value) is not None


class TopicKind(StrEnum):
    """A leaf of the topic tree; station kinds use their topic suffix as value."""

    SERVER_STATE = "server/state"
    STATE = "state"
    DESIRED = "desired"
    REPORTED = "reported"
    CMD = "cmd"
    ACK = "ack"
    EVENT = "event"
    TELEMETRY = "telemetry"
    GROUP_CMD = "grp/cmd"

    @property
    def message_kind(self) -> MessageKind:
        """The payload type carried on this topic."""
        return _MESSAGE_KINDS[self]


_MESSAGE_KINDS = {
    TopicKind.SERVER_STATE: MessageKind.SERVER_STATE,
    TopicKind.STATE: MessageKind.STATION_STATE,
    TopicKind.DESIRED: MessageKind.DESIRED,
    TopicKind.REPORTED: MessageKind.REPORTED,
    TopicKind.CMD: MessageKind.COMMAND,
    TopicKind.ACK: MessageKind.ACK,
    TopicKind.EVENT: MessageKind.EVENT,
    TopicKind.TELEMETRY: MessageKind.TELEMETRY,
    TopicKind.GROUP_CMD: MessageKind.COMMAND,
}

_STATION_KINDS = {
    kind.value: kind
    for kind in (
        TopicKind.STATE,
        TopicKind.DESIRED,
        TopicKind.REPORTED,
        TopicKind.CMD,
        TopicKind.ACK,
        TopicKind.EVENT,
        TopicKind.TELEMETRY,
    )
}

#: What stations publish and the server subscribes to.
STATION_INBOUND: tuple[TopicKind, ...] = (
    TopicKind.STATE,
    TopicKind.REPORTED,
    TopicKind.ACK,
    TopicKind.EVENT,
    TopicKind.TELEMETRY,
)


@dataclass(frozen=True, slots=True)
class TopicRef:
    """A parsed topic: its kind and the station or group it names."""

    kind: TopicKind
    sid: str | None = None
    gid: str | None = None


def _check_id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"invalid {what} {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builders and parser for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        prefix = self.prefix
        if (
            not prefix
            or prefix.startswith("/")
            or prefix.endswith("/")
            or "//" in prefix
            or any(ch in prefix for ch in "+#\x00")
        ):
            raise ConfigError(f"invalid topic prefix {prefix!r}")

    def server_state(self) -> str:
        """``{prefix}/server/state``."""
        return f"{self.prefix}/server/state"

    def station(self, sid: str, kind: TopicKind) -> str:
        """``{prefix}/st/{sid}/{kind}`` for a station kind."""
        if kind.value not in _STATION_KINDS:
            raise ValueError(f"{kind} is not a station topic")
        return f"{self.prefix}/st/{_check_id(sid, 'sid')}/{kind.value}"

    def state(self, sid: str) -> str:
        """Birth/death topic of ``sid``."""
        return self.station(sid, TopicKind.STATE)

    def desired(self, sid: str) -> str:
        """Desired-state topic of ``sid``."""
        return self.station(sid, TopicKind.DESIRED)

    def reported(self, sid: str) -> str:
        """Reported-state topic of ``sid``."""
        return self.station(sid, TopicKind.REPORTED)

    def cmd(self, sid: str) -> str:
        """Command topic of ``sid``."""
        return self.station(sid, TopicKind.CMD)

    def ack(self, sid: str) -> str:
        """Ack topic of ``sid``."""
        return self.station(sid, TopicKind.ACK)

    def event(self, sid: str) -> str:
        """Event topic of ``sid``."""
        return self.station(sid, TopicKind.EVENT)

    def telemetry(self, sid: str) -> str:
        """Telemetry topic of ``sid``."""
        return self.station(sid, TopicKind.TELEMETRY)

    def group_cmd(self, gid: str) -> str:
        """``{prefix}/grp/{gid}/cmd``."""
        return f"{self.prefix}/grp/{_check_id(gid, 'gid')}/cmd"

    def station_filter(self, kind: TopicKind) -> str:
        """Subscription filter for ``kind`` across all stations: ``{prefix}/st/+/{kind}``."""
        if kind.value not in _STATION_KINDS:
            raise ValueError(f"{kind} is not a station topic")
        return f"{self.prefix}/st/+/{kind.value}"

    def parse(self, topic: str) -> TopicRef:
        """Parse a concrete topic, or raise :class:`TopicError`."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is outside {self.prefix!r}")
        parts = topic[len(head) :].split("/")
        if parts == ["server", "state"]:
            return TopicRef(TopicKind.SERVER_STATE)
        if len(parts) == 3 and parts[0] == "st":
            _, sid, leaf = parts
            kind = _STATION_KINDS.get(leaf)
            if kind is None:
                raise TopicError(f"unknown station topic {leaf!r} in {topic!r}")
            if not is_valid_id(sid):
                raise TopicError(f"invalid sid {sid!r} in {topic!r}")
            return TopicRef(kind, sid=sid)
        if len(parts) == 3 and parts[0] == "grp" and parts[2] == "cmd":
            if not is_valid_id(parts[1]):
                raise TopicError(f"invalid gid {parts[1]!r} in {topic!r}")
            return TopicRef(TopicKind.GROUP_CMD, gid=parts[1])
        raise TopicError(f"topic {topic!r} is not a loa/v1 topic")
