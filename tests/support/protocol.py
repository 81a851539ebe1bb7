"""An independent loa/v1 oracle for tests: schema validation and a recording subscriber.

The validator loads the normative schemas from ``../shared/protocol/schemas`` when that
folder exists (else the copy vendored in ``firmware_bridge/schemas``) and maps topics to
schemas with its own small parser, so it checks the implementation instead of
repeating it. :class:`Recorder` subscribes to ``{prefix}/#`` with a persistent session
(so it misses nothing across a broker restart when persistence is on), records every
message with its topic and validates it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from jsonschema import Draft202012Validator
from paho.mqtt.enums import CallbackAPIVersion
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from firmware_bridge import paho_loop

__all__ = ["Recorded", "Recorder", "SchemaValidator", "schema_dir"]

SHARED_SCHEMAS = Path(__file__).resolve().parents[3] / "shared/protocol/schemas"
VENDORED_SCHEMAS = Path(__file__).resolve().parents[2] / "firmware_bridge/schemas"

_STATION_LEAVES = {
    "state": "station-state",
    "desired": "desired",
    "reported": "reported",
    "cmd": "command",
    "ack": "ack",
    "event": "event",
    "telemetry": "telemetry",
}
_ID = r"[a-z0-9][a-z0-9-]{0,63}"


def schema_dir() -> Path:
    """The shared schemas when present, else the vendored copy."""
    return SHARED_SCHEMAS if SHARED_SCHEMAS.is_dir() else VENDORED_SCHEMAS


class SchemaValidator:
    """Validates payloads by topic against the loa/v1 schemas."""

    def __init__(self, directory: Path | None = None, prefix: str = "loa/v1") -> None:
        self.directory = directory or schema_dir()
        schemas = {
            path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.directory.glob("*.json"))
        }
        registry: Registry[Any] = Registry().with_resources(
            (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
            for s in schemas.values()
        )
        self._validators = {
            name: Draft202012Validator(schema, registry=registry)
            for name, schema in schemas.items()
            if name != "common"
        }
        p = re.escape(prefix)
        self._server = re.compile(rf"^{p}/server/state$")
        self._station = re.compile(rf"^{p}/st/({_ID})/([a-z]+)$")
        self._group = re.compile(rf"^{p}/grp/({_ID})/cmd$")

    def classify(self, topic: str) -> tuple[str, str | None, str | None] | None:
        """``(schema, sid, gid)`` for a loa/v1 topic, or None."""
        if self._server.match(topic):
            return "server-state", None, None
        m = self._station.match(topic)
        if m and m.group(2) in _STATION_LEAVES:
            return _STATION_LEAVES[m.group(2)], m.group(1), None
        m = self._group.match(topic)
        if m:
            return "command", None, m.group(1)
        return None

    def errors(self, schema: str, payload: bytes) -> list[str]:
        """Every violation of ``payload`` against ``schema`` (empty when valid)."""
        if len(payload) > 256 * 1024:
            return ["payload larger than 256 KiB"]
        try:
            document = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return [f"not UTF-8 JSON: {exc}"]
        if not isinstance(document, dict):
            return ["not a JSON object"]
        return [e.message for e in self._validators[schema].iter_errors(document)]

    def check(self, topic: str, payload: bytes) -> list[str]:
        """Violations of a message on ``topic`` (an empty payload clears a retained one)."""
        kind = self.classify(topic)
        if kind is None:
            return [f"unknown topic {topic!r}"]
        if not payload:
            return []
        return self.errors(kind[0], payload)


@dataclass(frozen=True)
class Recorded:
    """One message seen on the broker."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float
    schema: str | None
    sid: str | None
    gid: str | None
    errors: tuple[str, ...]

    @property
    def data(self) -> Any:
        """The decoded JSON payload (None for an empty one)."""
        return json.loads(self.payload) if self.payload else None


@dataclass
class Recorder:
    """Subscribes to ``{prefix}/#`` and records + validates every message."""

    host: str
    port: int
    prefix: str = "loa/v1"
    client_id: str = "test-recorder"
    username: str | None = None
    password: str | None = None
    validator: SchemaValidator | None = None
    messages: list[Recorded] = field(default_factory=list)
    expected_invalid: list[Callable[[Recorded], bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validator = self.validator or SchemaValidator(prefix=self.prefix)
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        client.reconnect_delay_set(1, 1)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    def start(self, timeout_s: float = 10.0) -> Recorder:
        """Connect and wait until the subscription is active."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError("recorder did not subscribe")
        return self

    def stop(self) -> None:
        """Disconnect."""
        paho_loop.close(self._client)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"{self.prefix}/#", qos=1)

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        assert self.validator is not None
        payload = bytes(msg.payload)
        kind = self.validator.classify(msg.topic)
        record = Recorded(
            topic=msg.topic,
            payload=payload,
            retain=bool(msg.retain),
            qos=msg.qos,
            at=time.monotonic(),
            schema=kind[0] if kind else None,
            sid=kind[1] if kind else None,
            gid=kind[2] if kind else None,
            errors=tuple(self.validator.check(msg.topic, payload)),
        )
        with self._lock:
            self.messages.append(record)
            self._lock.notify_all()

    # ------------------------------------------------------------------ queries

    def snapshot(self) -> list[Recorded]:
        """A copy of everything recorded so far."""
        with self._lock:
            return list(self.messages)

    def select(
        self,
        schema: str | None = None,
        sid: str | None = None,
        where: Callable[[Any], bool] | None = None,
    ) -> list[Recorded]:
        """Recorded messages by schema name, station and a predicate on the decoded data."""
        return [
            r
            for r in self.snapshot()
            if (schema is None or r.schema == schema)
            and (sid is None or r.sid == sid)
            and (where is None or (r.payload and where(r.data)))
        ]

    def wait_for(
        self,
        schema: str | None = None,
        sid: str | None = None,
        where: Callable[[Any], bool] | None = None,
        *,
        count: int = 1,
        timeout_s: float = 15.0,
    ) -> list[Recorded]:
        """Block until at least ``count`` matching messages were recorded; return them."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.select(schema, sid, where)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting for {count} x {schema} from {sid}; got {len(found)}:\n"
                    + "\n".join(f"{r.topic} {r.payload[:300]!r}" for r in self.snapshot()[-30:])
                )
            with self._lock:
                self._lock.wait(min(remaining, 0.2))

    def expect_invalid(self, predicate: Callable[[Recorded], bool]) -> None:
        """Tolerate invalid messages matching ``predicate`` (a test's deliberate garbage)."""
        self.expected_invalid.append(predicate)

    def invalid(self) -> list[Recorded]:
        """Recorded messages that violate the schemas, minus the expected ones."""
        return [
            r
            for r in self.snapshot()
            if r.errors and not any(allow(r) for allow in self.expected_invalid)
        ]

    def assert_all_valid(self) -> None:
        """Fail with the offending messages if any recorded message was invalid."""
        bad = self.invalid()
        assert not bad, "schema violations:\n" + "\n".join(
            f"{r.topic}: {r.errors} {r.payload[:300]!r}" for r in bad
        )
