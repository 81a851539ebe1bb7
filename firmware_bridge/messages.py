"""Typed loa/v1 payloads and strict (de)serialisation.

The JSON Schemas are normative; the pydantic models give the rest of the code typed
access. Parsing is therefore two-staged and all-or-nothing: size, UTF-8, a JSON object,
the schema, then the model. Any failure raises :class:`ProtocolError` with a short
reason and nothing is returned, so a half-valid message can never be used. Unknown
fields are ignored (forward compatibility) and dropped from the model.

:func:`dump_message` is the only way the bridge and the simulator serialise a payload:
it renders timestamps as RFC 3339 with an explicit offset and millisecond precision,
omits absent optional fields (but keeps the nullable-required ones such as
``reported.desired_version`` and ``telemetry.playing``), and validates the result
against the schema before returning, so nothing invalid is ever published.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from firmware_bridge.errors import ProtocolError
from firmware_bridge.schema import MessageKind, validate_payload

__all__ = [
    "EMERGENCY",
    "FILLER",
    "LIVE",
    "MAX_PAYLOAD_BYTES",
    "MEDIA_FOLLOWS",
    "NORMAL",
    "PRIORITY",
    "SMART_CAPABILITIES",
    "Ack",
    "AckStatus",
    "Capability",
    "Command",
    "CommandBody",
    "CommandType",
    "Config",
    "Desired",
    "DesiredPlan",
    "EmptyBody",
    "Event",
    "EventType",
    "FaultKind",
    "Media",
    "MediaBody",
    "MediaFollows",
    "Message",
    "MessageKind",
    "PlayBody",
    "Playing",
    "PlaylistItem",
    "Priority",
    "Reported",
    "ServerState",
    "StationState",
    "StopBody",
    "Stream",
    "Telemetry",
    "VolumeBody",
    "Window",
    "dump_ack",
    "dump_message",
    "format_timestamp",
    "new_id",
    "parse_message",
    "utcnow",
]

#: Largest payload accepted or produced (256 KiB).
MAX_PAYLOAD_BYTES = 256 * 1024


class Priority(IntEnum):
    """Named priority levels (TT 39/2020 bulletin tiers); any int 0..9 is valid."""

    FILLER = 0
    NORMAL = 3
    PRIORITY = 5
    LIVE = 7
    EMERGENCY = 9


FILLER = Priority.FILLER
NORMAL = Priority.NORMAL
PRIORITY = Priority.PRIORITY
LIVE = Priority.LIVE
EMERGENCY = Priority.EMERGENCY


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 with an explicit offset and millisecond precision."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    """A fresh id matching the protocol's id pattern, e.g. ``c-3f9a0c1d2e4b5a69``."""
    return f"{prefix}-{secrets.token_hex(8)}"


Timestamp = Annotated[AwareDatetime, PlainSerializer(format_timestamp, return_type=str)]

AckStatus = Literal["RECEIVED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "EXPIRED"]
CommandType = Literal["play", "stop", "volume", "ping", "rebirth", "sync", "reboot", "media"]
EventType = Literal[
    "play.started",
    "play.finished",
    "play.failed",
    "play.preempted",
    "play.skipped",
    "relay.fallback",
    "media.corrupt",
    "fault.raised",
    "fault.cleared",
]
FaultKind = Literal[
    "power_lost",
    "on_battery",
    "amp_overheat",
    "speaker_line",
    "storage_low",
    "clock_unsynced",
    "relay_down",
    "other",
]
Capability = Literal[
    "file",
    "relay",
    "sync_start",
    "fm",
    "telemetry_power",
    "telemetry_amp",
    "telemetry_speaker",
    # proposal 0005: a ``play`` may come before its audio (``media_follows``), the audio
    # then comes in a ``media`` command
    "media_follows",
]
#: What a smart speaker controller (and the simulator) announces in its birth.
SMART_CAPABILITIES: tuple[Capability, ...] = (
    "file",
    "relay",
    "sync_start",
    "telemetry_power",
    "telemetry_amp",
    "telemetry_speaker",
)
#: Proposal 0005: what a station that takes a ``play`` before its audio adds to its birth
#: (not announced by default: today's firmware contract does not have it).
MEDIA_FOLLOWS: Capability = "media_follows"


class _Model(BaseModel):
    """Frozen, ignores unknown fields, omits absent optional fields when dumped."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def _keep_null(self) -> frozenset[str]:
        """Keys (by alias) whose ``None`` is meaningful and must be serialised."""
        return frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        keep = self._keep_null()
        return {key: value for key, value in data.items() if value is not None or key in keep}


class Message(_Model):
    """A top-level loa/v1 payload; ``KIND`` names its schema."""

    KIND: ClassVar[MessageKind]


class Media(_Model):
    """A media file: signed URL, SHA-256, size and optional duration."""

    url: str
    sha256: str
    bytes: int
    duration_ms: int | None = None
    content_type: str | None = None


class Stream(_Model):
    """A live stream with an optional fallback media file."""

    url: str
    fallback: Media | None = None


class Config(_Model):
    """Station configuration carried in ``desired``."""

    volume: int
    telemetry_interval_s: int
    groups: list[str]
    timezone: str


class Window(_Model):
    """The time span the playlist covers."""

    from_: Timestamp = Field(alias="from")
    to: Timestamp


class PlaylistItem(_Model):
    """One scheduled playback (``file`` needs ``media``, ``relay`` needs ``url``)."""

    item_id: str
    kind: Literal["file", "relay"]
    title: str
    start_at: Timestamp
    end_at: Timestamp
    priority: int
    volume: int | None = None
    media: Media | None = None
    loop: bool | None = None
    url: str | None = None
    fallback: Media | None = None


class ServerState(Message):
    """``server/state``: the central service's birth (or its will)."""

    KIND: ClassVar[MessageKind] = MessageKind.SERVER_STATE
    online: bool
    at: Timestamp | None = None


class StationState(Message):
    """``st/{sid}/state``: a station's birth (online) or death (will)."""

    KIND: ClassVar[MessageKind] = MessageKind.STATION_STATE
    online: bool
    bdseq: int
    at: Timestamp | None = None
    firmware: str | None = None
    model: str | None = None
    capabilities: list[Capability] | None = None
    desired_version: int | None = None

    def _keep_null(self) -> frozenset[str]:
        return frozenset({"desired_version"}) if self.online else frozenset()


class Desired(Message):
    """``st/{sid}/desired`` (retained): config and the rolling playlist."""

    KIND: ClassVar[MessageKind] = MessageKind.DESIRED
    version: int
    generated_at: Timestamp
    config: Config
    window: Window
    playlist: list[PlaylistItem]


class Reported(Message):
    """``st/{sid}/reported`` (retained): applied desired version and missing media."""

    KIND: ClassVar[MessageKind] = MessageKind.REPORTED
    desired_version: int | None
    at: Timestamp
    missing: list[str]
    cache_bytes: int | None = None
    volume: int | None = None

    def _keep_null(self) -> frozenset[str]:
        return frozenset({"desired_version"})


class MediaFollows(_Model):
    """Proposal 0005: the play's audio comes later, in a ``media`` command, by ``ready_by``."""

    ready_by: Timestamp


class PlayBody(_Model):
    """Body of a ``play`` command: exactly one of ``media``, ``stream`` or (proposal 0005,
    to stations that announce ``media_follows``) ``media_follows``."""

    priority: int
    title: str | None = None
    media: Media | None = None
    stream: Stream | None = None
    start_at: Timestamp | None = None
    until: Timestamp | None = None
    volume: int | None = None
    repeat: int | None = None
    #: proposal 0003: an attention signal played once before the content, at the same
    #: priority and volume (stations that do not know it ignore it)
    attention: Media | None = None
    media_follows: MediaFollows | None = None


class MediaBody(_Model):
    """Body of a ``media`` command (proposal 0005): the audio of the ``play`` ``for`` names,
    sent before it existed (``media_follows``)."""

    for_: str = Field(alias="for")
    media: Media


class StopBody(_Model):
    """Body of a ``stop`` command."""

    max_priority: int | None = None
    cmd_id: str | None = None


class VolumeBody(_Model):
    """Body of a ``volume`` command."""

    level: int


class EmptyBody(_Model):
    """Body of ``ping``, ``rebirth``, ``sync`` and ``reboot`` (fields ignored)."""


CommandBody: TypeAlias = PlayBody | StopBody | VolumeBody | MediaBody | EmptyBody

_BODY_TYPES: dict[str, type[_Model]] = {
    "play": PlayBody,
    "stop": StopBody,
    "volume": VolumeBody,
    "media": MediaBody,
}


class Command(Message):
    """``st/{sid}/cmd`` or ``grp/{gid}/cmd``: an expiring command."""

    KIND: ClassVar[MessageKind] = MessageKind.COMMAND
    cmd_id: str
    type: CommandType
    issued_at: Timestamp
    not_after: Timestamp
    body: CommandBody

    @model_validator(mode="before")
    @classmethod
    def _typed_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("body"), dict):
            body_type = _BODY_TYPES.get(str(data.get("type")), EmptyBody)
            data = {**data, "body": body_type.model_validate(data["body"])}
        return data

    @model_validator(mode="after")
    def _body_matches_type(self) -> Command:
        expected = _BODY_TYPES.get(self.type, EmptyBody)
        if type(self.body) is not expected:
            raise ValueError(f"a {self.type!r} command needs a {expected.__name__}")
        return self

    @classmethod
    def new(
        cls,
        type: CommandType,
        body: CommandBody | None = None,
        *,
        ttl_s: float = 30.0,
        cmd_id: str | None = None,
        now: datetime | None = None,
    ) -> Command:
        """A command issued ``now`` that expires ``ttl_s`` seconds later."""
        issued = now or utcnow()
        return cls(
            cmd_id=cmd_id or new_id("c"),
            type=type,
            issued_at=issued,
            not_after=issued + timedelta(seconds=ttl_s),
            body=body if body is not None else _BODY_TYPES.get(type, EmptyBody)(),
        )


class Ack(Message):
    """``st/{sid}/ack``: one step of a command's lifecycle."""

    KIND: ClassVar[MessageKind] = MessageKind.ACK
    cmd_id: str
    status: AckStatus
    at: Timestamp
    reason: str | None = None
    station_time: Timestamp | None = None


class Event(Message):
    """``st/{sid}/event``: proof of play or a fault."""

    KIND: ClassVar[MessageKind] = MessageKind.EVENT
    event_id: str
    type: EventType
    at: Timestamp
    item_id: str | None = None
    cmd_id: str | None = None
    desired_version: int | None = None
    position_ms: int | None = None
    reason: str | None = None
    fault: FaultKind | None = None
    sha256: str | None = None


class Playing(_Model):
    """What a station is playing, as reported in telemetry."""

    priority: int
    item_id: str | None = None
    cmd_id: str | None = None


class Telemetry(Message):
    """``st/{sid}/telemetry`` (QoS 0): periodic health."""

    KIND: ClassVar[MessageKind] = MessageKind.TELEMETRY
    seq: int
    at: Timestamp
    uptime_s: int
    volume: int
    playing: Playing | None
    clock_offset_ms: float | None = None
    rssi_dbm: float | None = None
    amp_temp_c: float | None = None
    supply_v: float | None = None
    on_battery: bool | None = None
    speaker_ok: bool | None = None
    storage_free_mb: float | None = None
    fm_on: bool | None = None

    def _keep_null(self) -> frozenset[str]:
        return frozenset({"playing"})


MODELS: dict[MessageKind, type[Message]] = {
    model.KIND: model
    for model in (
        ServerState,
        StationState,
        Desired,
        Reported,
        Command,
        Ack,
        Event,
        Telemetry,
    )
}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf, which no database stores
        raise ValueError(f"number {text[:32]} is out of range")
    return value


#: Deepest nesting of arrays and objects accepted (the deepest loa/v1 document, a
#: ``desired`` playlist item's relay fallback, is 5 levels deep).
MAX_DEPTH = 32
_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


def nesting_depth(payload: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in ``payload`` (scanning stops past ``limit``).

    A cheap pre-scan before ``json.loads``: a document nested 100,000 levels deep makes
    the parser (and every recursive walker after it) raise ``RecursionError``.  Strings
    are skipped, so brackets inside them do not count.  Ordinary payloads hold fewer
    brackets than ``limit`` and are not scanned at all.
    """
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for match in _STRUCTURE.finditer(payload):
        char = match.group()
        if in_string:
            if escaped:
                escaped = False
            elif char == b"\\":
                # an escape only matters right before a quote or another backslash
                escaped = match.end() < len(payload) and payload[match.end()] in b'"\\'
            elif char == b'"':
                in_string = False
            continue
        if char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def _summarise(kind: MessageKind, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = "/".join(str(part) for part in first["loc"])
    return f"{kind.value}: {where + ': ' if where else ''}{first['msg']}"


def parse_message(kind: MessageKind, payload: bytes) -> Message:
    """Validate ``payload`` strictly and return its model, or raise :class:`ProtocolError`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"{kind.value}: payload too large ({len(payload)} > {MAX_PAYLOAD_BYTES} bytes)",
            category="oversize",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{kind.value}: payload is not UTF-8", category="encoding") from exc
    if nesting_depth(payload) > MAX_DEPTH:
        raise ProtocolError(
            f"{kind.value}: JSON nested deeper than {MAX_DEPTH} levels", category="json"
        )
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{kind.value}: invalid JSON ({exc})", category="json") from exc
    if not isinstance(document, dict):
        raise ProtocolError(f"{kind.value}: payload is not a JSON object", category="json")
    validate_payload(kind, document)
    try:
        return MODELS[kind].model_validate(document)
    except ValidationError as exc:
        raise ProtocolError(_summarise(kind, exc), category="model") from exc


def dump_message(message: Message) -> bytes:
    """Serialise ``message`` to compact UTF-8 JSON, validated against its schema."""
    return _encode(message.KIND, message.model_dump(mode="json", by_alias=True))


def dump_ack(
    cmd_id: str,
    status: AckStatus,
    at: datetime,
    *,
    reason: str | None = None,
    station_time: datetime | None = None,
) -> bytes:
    """``dump_message(Ack(...))`` without building the model: the same bytes, checked
    against the same schema.  A station sends one per step of every command (a simulated
    fleet thousands per broadcast, in the window the broadcast is measured in), and the
    model's serialisation is most of an ack's cost."""
    document: dict[str, Any] = {"cmd_id": cmd_id, "status": status, "at": format_timestamp(at)}
    if reason is not None:
        document["reason"] = reason
    if station_time is not None:
        document["station_time"] = format_timestamp(station_time)
    return _encode(MessageKind.ACK, document)


def _encode(kind: MessageKind, document: dict[str, Any]) -> bytes:
    validate_payload(kind, document)
    payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"{kind.value}: payload too large ({len(payload)} bytes)", category="oversize"
        )
    return payload


class DesiredPlan:
    """One playlist and window shared by many stations' ``desired`` documents.

    The shared part (the playlist, however long) is serialised and schema-validated once,
    in the constructor; :meth:`payload` adds one station's version, generation time and
    config, validating only that small remainder, and splices the two. The bytes are the
    same as ``dump_message(Desired(...))`` for that station, and :attr:`canonical`
    is the plan's part of the desired digest (sorted keys, compact).
    """

    def __init__(self, window: Window, playlist: Sequence[PlaylistItem]) -> None:
        self.window = window
        self.playlist = tuple(playlist)
        entries = [entry.model_dump(mode="json", by_alias=True) for entry in self.playlist]
        self._window_doc = window.model_dump(mode="json", by_alias=True)
        validate_payload(
            MessageKind.DESIRED,
            {
                "version": 1,
                "generated_at": "2000-01-01T00:00:00Z",
                "config": {
                    "volume": 0,
                    "telemetry_interval_s": 60,
                    "groups": [],
                    "timezone": "UTC",
                },
                "window": self._window_doc,
                "playlist": entries,
            },
        )
        self._playlist_json = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
        self.canonical_window = json.dumps(
            self._window_doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        self.canonical_playlist = json.dumps(
            entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    def payload(self, version: int, generated_at: datetime, config: Config) -> bytes:
        """One station's ``desired`` payload (validated; as ``dump_message`` builds it)."""
        head = Desired(
            version=version,
            generated_at=generated_at,
            config=config,
            window=self.window,
            playlist=[],
        ).model_dump(mode="json", by_alias=True)
        validate_payload(MessageKind.DESIRED, head)
        text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
        if not text.endswith(_EMPTY_PLAYLIST_TAIL):  # pragma: no cover - field order changed
            raise ProtocolError("desired: playlist is not the last field", category="schema")
        text = text[: -len(_EMPTY_PLAYLIST_TAIL)] + '"playlist":' + self._playlist_json + "}"
        payload = text.encode("utf-8")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"desired: payload too large ({len(payload)} bytes)", category="oversize"
            )
        return payload


_EMPTY_PLAYLIST_TAIL = '"playlist":[]}'
