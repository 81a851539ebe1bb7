"""The protocol layer: topics, strict parsing, serialisation, vendored schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from firmware_bridge.errors import ConfigError, ProtocolError, TopicError
from firmware_bridge.messages import (
    EMERGENCY,
    FILLER,
    LIVE,
    MAX_PAYLOAD_BYTES,
    NORMAL,
    PRIORITY,
    Ack,
    Command,
    Desired,
    EmptyBody,
    Event,
    PlayBody,
    Reported,
    ServerState,
    StationState,
    StopBody,
    Telemetry,
    VolumeBody,
    dump_ack,
    dump_message,
    parse_message,
)
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.schema import SCHEMA_FILES, MessageKind, schema_errors
from firmware_bridge.topics import STATION_INBOUND, TopicKind, TopicRef, Topics
from tests.support.protocol import SHARED_SCHEMAS, VENDORED_SCHEMAS, SchemaValidator

EXAMPLES = SHARED_SCHEMAS.parent / "examples"
EXAMPLE_KINDS = {
    "ack": MessageKind.ACK,
    "command-play-emergency": MessageKind.COMMAND,
    "desired": MessageKind.DESIRED,
    "event": MessageKind.EVENT,
    "reported": MessageKind.REPORTED,
    "server-state": MessageKind.SERVER_STATE,
    "station-state-birth": MessageKind.STATION_STATE,
    "station-state-death": MessageKind.STATION_STATE,
    "telemetry": MessageKind.TELEMETRY,
}
NOW = datetime(2026, 11, 26, 5, 0, tzinfo=timezone(timedelta(hours=7)))


# ---------------------------------------------------------------------------- topics


@pytest.mark.parametrize("prefix", ["loa/v1", "tan-an/loa/v1"])
def test_every_topic_round_trips(prefix: str) -> None:
    topics = Topics(prefix)
    assert topics.server_state() == f"{prefix}/server/state"
    assert topics.parse(topics.server_state()) == TopicRef(TopicKind.SERVER_STATE)
    station_kinds = set(TopicKind) - {TopicKind.SERVER_STATE, TopicKind.GROUP_CMD}
    assert len(station_kinds) == 7
    for kind in sorted(station_kinds):
        topic = topics.station("lbn-03", kind)
        assert topic == f"{prefix}/st/lbn-03/{kind.value}"
        assert topics.parse(topic) == TopicRef(kind, sid="lbn-03")
    assert topics.group_cmd("tan-an") == f"{prefix}/grp/tan-an/cmd"
    assert topics.parse(topics.group_cmd("tan-an")) == TopicRef(TopicKind.GROUP_CMD, gid="tan-an")
    assert topics.state("a") == topics.station("a", TopicKind.STATE)
    assert topics.telemetry("a").endswith("/telemetry")
    assert topics.station_filter(TopicKind.ACK) == f"{prefix}/st/+/ack"


def test_topic_kinds_map_to_schemas() -> None:
    assert TopicKind.GROUP_CMD.message_kind is MessageKind.COMMAND
    assert TopicKind.STATE.message_kind is MessageKind.STATION_STATE
    assert {k.value for k in STATION_INBOUND} == {"state", "reported", "ack", "event", "telemetry"}


@pytest.mark.parametrize(
    "topic",
    [
        "loa/v2/st/a/state",
        "loa/v1/st/a/unknown",
        "loa/v1/st/UPPER/state",
        "loa/v1/st/-bad/state",
        "loa/v1/st/a/b/state",
        "loa/v1/st/+/state",
        "loa/v1/grp/g/ack",
        "loa/v1/grp/#/cmd",
        "loa/v1/server",
        "loa/v1/server/state/x",
        "loa/v1",
        "",
    ],
)
def test_topics_outside_the_tree_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError) as caught:
        Topics().parse(topic)
    assert caught.value.category == "topic"


def test_builders_refuse_invalid_ids_and_prefixes() -> None:
    with pytest.raises(ValueError, match="invalid sid"):
        Topics().state("Bad Sid")
    with pytest.raises(ValueError, match="invalid gid"):
        Topics().group_cmd("+")
    with pytest.raises(ValueError, match="not a station topic"):
        Topics().station("a", TopicKind.GROUP_CMD)
    for prefix in ("", "/loa", "loa/", "loa//v1", "loa/+", "loa/#"):
        with pytest.raises(ConfigError):
            Topics(prefix)


# ---------------------------------------------------------------------------- schemas


def test_vendored_schemas_are_byte_identical_to_shared() -> None:
    if not SHARED_SCHEMAS.is_dir():
        pytest.skip("../shared/protocol/schemas is not present")
    shared = sorted(p.name for p in SHARED_SCHEMAS.glob("*.json"))
    vendored = sorted(p.name for p in VENDORED_SCHEMAS.glob("*.json"))
    assert shared == vendored == sorted(SCHEMA_FILES)
    for name in shared:
        if name in PROPOSED:
            continue
        assert (SHARED_SCHEMAS / name).read_bytes() == (VENDORED_SCHEMAS / name).read_bytes(), name


_PLAY_BODY = ("allOf", 0, "then", "properties", "body")

#: what the vendored schemas add ahead of the shared contract, each from a proposal in
#: docs/protocol-proposals: (file, path to an object or a list, the key or item added).
#: Each only widens what is valid (an optional field, an enum value, a ``oneOf`` branch,
#: the rules of a new command type), so whatever the shared contract accepts stays valid.
PROPOSED: dict[str, list[tuple[tuple[str | int, ...], object]]] = {
    "command.json": [
        # 0003-emergency-volume-and-attention-signal.md: play.attention
        ((*_PLAY_BODY, "properties"), "attention"),
        # 0005-spoken-play-before-its-audio.md: play.media_follows instead of media ...
        ((*_PLAY_BODY, "properties"), "media_follows"),
        ((*_PLAY_BODY, "oneOf"), {"required": ["media_follows"]}),
        # ... and the media command that brings the audio
        (("properties", "type", "enum"), "media"),
        (
            ("allOf",),
            {
                "if": {"properties": {"type": {"const": "media"}}},
                "then": {
                    "properties": {
                        "body": {
                            "type": "object",
                            "required": ["for", "media"],
                            "properties": {
                                "for": {"$ref": "common.json#/$defs/id"},
                                "media": {"$ref": "common.json#/$defs/media"},
                            },
                        }
                    }
                },
            },
        ),
    ],
    "station-state.json": [
        # 0005: the capability that announces it
        (("properties", "capabilities", "items", "enum"), "media_follows"),
    ],
}


def test_vendored_schemas_differ_from_shared_only_by_proposed_additions() -> None:
    if not SHARED_SCHEMAS.is_dir():
        pytest.skip("../shared/protocol/schemas is not present")
    for name, additions in PROPOSED.items():
        vendored = json.loads((VENDORED_SCHEMAS / name).read_bytes())
        for path, added in additions:
            node = vendored
            for step in path:
                node = node[step]
            if isinstance(node, list):
                assert added in node, (name, path, added)
                node.remove(added)
            else:
                assert isinstance(added, str)
                assert added in node, (name, path, added)
                del node[added]
        assert vendored == json.loads((SHARED_SCHEMAS / name).read_bytes()), name


@pytest.mark.parametrize("name", sorted(EXAMPLE_KINDS))
def test_shared_examples_parse_and_round_trip(name: str) -> None:
    path = EXAMPLES / f"{name}.json"
    if not path.exists():
        pytest.skip("shared examples are not present")
    kind = EXAMPLE_KINDS[name]
    message = parse_message(kind, path.read_bytes())
    payload = dump_message(message)
    assert parse_message(kind, payload) == message
    assert SchemaValidator().errors(kind.value, payload) == []


# ---------------------------------------------------------------------------- strict parsing


@pytest.mark.parametrize(
    ("payload", "category", "reason"),
    [
        (b"{", "json", "telemetry: invalid JSON"),
        (b"[1, 2]", "json", "telemetry: payload is not a JSON object"),
        (b'"text"', "json", "not a JSON object"),
        (b"\xff\xfe{}", "encoding", "telemetry: payload is not UTF-8"),
        (b'{"seq": NaN}', "json", "invalid JSON"),
        (
            b'{"at": "2026-11-26T05:00:00+07:00", "uptime_s": 1, "volume": 5, "playing": null}',
            "schema",
            "telemetry: 'seq' is a required property",
        ),
        (
            b'{"seq": "1", "at": "2026-11-26T05:00:00+07:00", "uptime_s": 1, "volume": 5,'
            b' "playing": null}',
            "schema",
            "telemetry: seq: '1' is not of type 'integer'",
        ),
        (
            b'{"seq": 1, "at": "2026-11-26 05:00", "uptime_s": 1, "volume": 5, "playing": null}',
            "schema",
            "telemetry: at:",
        ),
        (
            b'{"seq": 1, "at": "2026-11-26T05:00:00", "uptime_s": 1, "volume": 5, "playing": null}',
            "schema",
            "telemetry: at:",
        ),
        (
            b'{"seq": 1, "at": "2026-13-26T05:00:00Z", "uptime_s": 1, "volume": 5,'
            b' "playing": null}',
            "model",
            "telemetry: at:",
        ),
        (
            b'{"seq": 1, "at": "2026-11-26T05:00:00Z", "uptime_s": 1, "volume": 101,'
            b' "playing": null}',
            "schema",
            "telemetry: volume:",
        ),
    ],
)
def test_parse_rejects_with_a_reason(payload: bytes, category: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(MessageKind.TELEMETRY, payload)
    assert caught.value.category == category
    assert reason in caught.value.reason
    assert len(caught.value.reason) <= 300


def test_oversized_payload_is_rejected_before_parsing() -> None:
    padding = "x" * MAX_PAYLOAD_BYTES
    payload = json.dumps({"online": True, "pad": padding}).encode()
    with pytest.raises(ProtocolError) as caught:
        parse_message(MessageKind.SERVER_STATE, payload)
    assert caught.value.category == "oversize"
    assert "too large" in caught.value.reason


def test_unknown_fields_are_ignored() -> None:
    message = parse_message(MessageKind.SERVER_STATE, b'{"online": true, "future_field": {"x": 1}}')
    assert message == ServerState(online=True)
    assert dump_message(message) == b'{"online":true}'


def test_command_bodies_are_typed_and_checked() -> None:
    play = Command.new(
        "play",
        PlayBody(
            priority=EMERGENCY,
            media={"url": "http://m/a.mp3", "sha256": "a" * 64, "bytes": 10},
        ),
        now=NOW,
    )
    parsed = parse_message(MessageKind.COMMAND, dump_message(play))
    assert isinstance(parsed, Command)
    assert isinstance(parsed.body, PlayBody)
    assert parsed.body.media is not None
    assert parsed.body.media.bytes == 10
    assert isinstance(Command.new("stop", now=NOW).body, StopBody)
    assert isinstance(Command.new("ping", now=NOW).body, EmptyBody)
    with pytest.raises(ValueError, match="needs a VolumeBody"):
        Command(cmd_id="c-1", type="volume", issued_at=NOW, not_after=NOW, body=StopBody())
    bad_play = {
        "cmd_id": "c-1",
        "type": "play",
        "issued_at": "2026-11-26T05:00:00+07:00",
        "not_after": "2026-11-26T05:00:30+07:00",
        "body": {"priority": 9},
    }
    with pytest.raises(ProtocolError, match="command: body"):
        parse_message(MessageKind.COMMAND, json.dumps(bad_play).encode())
    bad_play["type"] = "dance"
    with pytest.raises(ProtocolError, match="command: type"):
        parse_message(MessageKind.COMMAND, json.dumps(bad_play).encode())


# ---------------------------------------------------------------------------- dumping


def test_dump_renders_rfc3339_with_offset_and_milliseconds() -> None:
    ack = Ack(cmd_id="c-1", status="RECEIVED", at=datetime(2026, 11, 26, 7, 0, 1, 123456, UTC))
    assert json.loads(dump_message(ack))["at"] == "2026-11-26T07:00:01.123+00:00"
    ack = Ack(cmd_id="c-1", status="RECEIVED", at=NOW)
    assert json.loads(dump_message(ack))["at"] == "2026-11-26T05:00:00.000+07:00"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Ack(cmd_id="c-1", status="RECEIVED", at=datetime(2026, 11, 26, 5, 0))


def test_dump_keeps_nullable_required_fields() -> None:
    birth = StationState(
        online=True, bdseq=3, at=NOW, firmware="1", capabilities=["file"], desired_version=None
    )
    assert json.loads(dump_message(birth))["desired_version"] is None
    death = json.loads(dump_message(StationState(online=False, bdseq=3)))
    assert death == {"online": False, "bdseq": 3}
    reported = json.loads(dump_message(Reported(desired_version=None, at=NOW, missing=[])))
    assert reported["desired_version"] is None
    telemetry = Telemetry(seq=0, at=NOW, uptime_s=0, volume=1, playing=None)
    assert json.loads(dump_message(telemetry))["playing"] is None


def test_dump_refuses_schema_invalid_messages() -> None:
    with pytest.raises(ProtocolError, match="station-state"):
        dump_message(StationState(online=True, bdseq=1))  # a birth needs at, firmware...
    with pytest.raises(ProtocolError, match="ack: cmd_id"):
        dump_message(Ack(cmd_id="bad id with spaces", status="RECEIVED", at=NOW))
    with pytest.raises(ProtocolError, match="event"):
        dump_message(Event(event_id="e-1", type="play.started", at=NOW))  # no item/cmd id
    with pytest.raises(ProtocolError, match="telemetry: seq"):
        dump_message(Telemetry(seq=-1, at=NOW, uptime_s=0, volume=1, playing=None))


@pytest.mark.parametrize(
    "fields",
    [
        {"cmd_id": "c-1", "status": "RECEIVED"},
        {"cmd_id": "c-3f9a0c1d2e4b5a69", "status": "IN_PROGRESS"},
        {"cmd_id": "c-1", "status": "SUCCEEDED", "station_time": NOW + timedelta(seconds=3)},
        {"cmd_id": "c-1", "status": "REJECTED", "reason": 'busy: Bản tin "khẩn" at 9'},
        {"cmd_id": "c-1", "status": "EXPIRED", "reason": "", "station_time": NOW},
    ],
)
def test_dump_ack_is_dump_message_of_an_ack(fields: dict[str, object]) -> None:
    """The simulator's fast ack writer: byte for byte what the model writes."""
    at = datetime(2026, 11, 26, 7, 0, 1, 123456, timezone(timedelta(hours=7)))
    expected = dump_message(Ack(at=at, **fields))  # type: ignore[arg-type]
    assert dump_ack(at=at, **fields) == expected  # type: ignore[arg-type]


def test_dump_ack_refuses_what_the_model_refuses() -> None:
    with pytest.raises(ProtocolError, match="ack: cmd_id"):
        dump_ack("bad id with spaces", "RECEIVED", NOW)
    with pytest.raises(ProtocolError, match="ack: status"):
        dump_ack("c-1", "DONE", NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        dump_ack("c-1", "RECEIVED", datetime(2026, 11, 26, 5, 0))
    with pytest.raises(ProtocolError, match="ack: reason"):  # over the schema's length
        dump_ack("c-1", "FAILED", NOW, reason="x" * MAX_PAYLOAD_BYTES)


def test_schema_errors_lists_every_violation() -> None:
    errors = schema_errors(MessageKind.ACK, {"status": "NOPE"})
    assert len(errors) == 3
    assert all(e.startswith("ack: ") for e in errors)


def test_priority_constants() -> None:
    assert (FILLER, NORMAL, PRIORITY, LIVE, EMERGENCY) == (0, 3, 5, 7, 9)


def test_desired_example_is_fully_typed() -> None:
    path = EXAMPLES / "desired.json"
    if not path.exists():
        pytest.skip("shared examples are not present")
    desired = parse_message(MessageKind.DESIRED, path.read_bytes())
    assert isinstance(desired, Desired)
    relay, file = desired.playlist
    assert relay.kind == "relay"
    assert relay.fallback is not None
    assert file.media is not None
    assert file.media.duration_ms == 600000
    assert desired.window.from_ < desired.window.to
    assert desired.config.groups == ["tan-an", "xa-loi-binh-nhon"]
    assert isinstance(VolumeBody(level=3).level, int)


# ---------------------------------------------------------------------------- URLs


def test_mqtt_urls() -> None:
    url = MqttUrl.parse("mqtt://srv%40x:p%3Ass@broker.local:1884")
    assert (url.host, url.port, url.tls, url.username, url.password) == (
        "broker.local",
        1884,
        False,
        "srv@x",
        "p:ss",
    )
    assert "p:ss" not in url.redacted()
    assert MqttUrl.parse("mqtts://h").port == 8883
    assert MqttUrl.parse("mqtt://h").port == 1883
    for bad in ("http://h", "mqtt://", "mqtt://h/path", "mqtt://h:notaport"):
        with pytest.raises(ConfigError):
            MqttUrl.parse(bad)


def test_schema_dir_resolution() -> None:
    assert Path(SchemaValidator().directory).is_dir()
