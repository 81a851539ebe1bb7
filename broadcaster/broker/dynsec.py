"""A small typed client for Mosquitto's dynamic-security plugin.

The plugin takes JSON commands published on ``$CONTROL/dynamic-security/v1``::

    {"commands": [{"command": "createClient", "username": "...", "correlationData": "7"}]}

and answers on ``$CONTROL/dynamic-security/v1/response`` with one entry per command,
``{"command", "correlationData", "error"?, "data"?}`` (no ``error`` means success).

:class:`DynsecClient` sends batches of commands over one MQTT 5 connection (paho-mqtt 2,
``CallbackAPIVersion.VERSION2``) and waits for the correlated answers.  The paho
callbacks only parse and hand the results over (a condition variable); nothing blocks in
them.  Every library failure is wrapped once into a :mod:`.exceptions` domain error.

Command builders (:func:`create_client`, :func:`add_role_acl`...) return plain dicts, so
callers can plan a whole batch first (see :mod:`.provisioning`) and send it in one go.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broadcaster.broker.exceptions import (
    BrokerAuthError,
    BrokerConnectionLost,
    BrokerUnavailable,
    DynsecCommandError,
)
from firmware_bridge import paho_loop
from firmware_bridge.errors import ConfigError
from firmware_bridge.mqtt_url import MqttUrl

__all__ = [
    "CONTROL_TOPIC",
    "RESPONSE_TOPIC",
    "Acl",
    "AclType",
    "ClientInfo",
    "Command",
    "Dynsec",
    "DynsecClient",
    "Reply",
    "RoleInfo",
    "anonymous_allowed",
]

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

Command = dict[str, Any]

_NOT_FOUND = ("Client not found", "Role not found")


class AclType(StrEnum):
    """The plugin's ACL types."""

    PUBLISH_SEND = "publishClientSend"
    PUBLISH_RECEIVE = "publishClientReceive"
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    SUBSCRIBE_PATTERN = "subscribePattern"
    UNSUBSCRIBE_LITERAL = "unsubscribeLiteral"
    UNSUBSCRIBE_PATTERN = "unsubscribePattern"


@dataclass(frozen=True, order=True, slots=True)
class Acl:
    """One ACL of a role.  Within a role, higher ``priority`` is checked first."""

    acltype: AclType
    topic: str
    allow: bool = True
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype.value,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Acl:
        return cls(
            acltype=AclType(str(data["acltype"])),
            topic=str(data["topic"]),
            allow=bool(data.get("allow", False)),
            priority=int(data.get("priority", 0)),
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A dynamic-security client (an MQTT account) as the plugin reports it."""

    username: str
    clientid: str | None = None
    disabled: bool = False
    roles: tuple[str, ...] = ()
    textname: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientInfo:
        return cls(
            username=str(data["username"]),
            clientid=data.get("clientid") or None,
            disabled=bool(data.get("disabled", False)),
            roles=tuple(sorted(str(r["rolename"]) for r in data.get("roles") or ())),
            textname=data.get("textname"),
        )


@dataclass(frozen=True, slots=True)
class RoleInfo:
    """A dynamic-security role and its ACLs."""

    rolename: str
    acls: frozenset[Acl] = frozenset()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoleInfo:
        return cls(
            rolename=str(data["rolename"]),
            acls=frozenset(Acl.from_json(a) for a in data.get("acls") or ()),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """The plugin's answer to one command."""

    command: str
    error: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


# --- command builders --------------------------------------------------------------------


def _with_set(command: Command, **optional: str | None) -> Command:
    """``command`` with each optional field that is set (not None, not empty)."""
    command.update({key: value for key, value in optional.items() if value})
    return command


def create_client(
    username: str,
    password: str,
    *,
    clientid: str | None = None,
    roles: Iterable[str] = (),
    textname: str | None = None,
) -> Command:
    command: Command = {
        "command": "createClient",
        "username": username,
        "password": password,
        "roles": [{"rolename": r, "priority": -1} for r in roles],
    }
    return _with_set(command, clientid=clientid, textname=textname)


def delete_client(username: str) -> Command:
    return {"command": "deleteClient", "username": username}


def set_client_password(username: str, password: str) -> Command:
    return {"command": "setClientPassword", "username": username, "password": password}


def set_client_id(username: str, clientid: str | None) -> Command:
    return {"command": "setClientId", "username": username, "clientid": clientid or ""}


def enable_client(username: str) -> Command:
    return {"command": "enableClient", "username": username}


def disable_client(username: str) -> Command:
    return {"command": "disableClient", "username": username}


def add_client_role(username: str, rolename: str) -> Command:
    return {"command": "addClientRole", "username": username, "rolename": rolename, "priority": -1}


def remove_client_role(username: str, rolename: str) -> Command:
    return {"command": "removeClientRole", "username": username, "rolename": rolename}


def create_role(rolename: str, acls: Iterable[Acl], *, textname: str | None = None) -> Command:
    command: Command = {
        "command": "createRole",
        "rolename": rolename,
        "acls": [a.to_json() for a in sorted(acls)],
    }
    return _with_set(command, textname=textname)


def delete_role(rolename: str) -> Command:
    return {"command": "deleteRole", "rolename": rolename}


def add_role_acl(rolename: str, acl: Acl) -> Command:
    return {"command": "addRoleACL", "rolename": rolename, **acl.to_json()}


def remove_role_acl(rolename: str, acl: Acl) -> Command:
    return {
        "command": "removeRoleACL",
        "rolename": rolename,
        "acltype": acl.acltype.value,
        "topic": acl.topic,
    }


def get_client(username: str) -> Command:
    return {"command": "getClient", "username": username}


def get_role(rolename: str) -> Command:
    return {"command": "getRole", "rolename": rolename}


def list_clients() -> Command:
    return {"command": "listClients", "verbose": True, "count": -1, "offset": 0}


def list_roles() -> Command:
    return {"command": "listRoles", "verbose": True, "count": -1, "offset": 0}


def role_diff(rolename: str, have: frozenset[Acl], want: frozenset[Acl]) -> list[Command]:
    """Commands turning a role's ACLs from ``have`` into ``want``.

    The plugin keys ACLs by (type, topic), so a changed ``allow``/``priority`` is a
    remove followed by an add.
    """
    commands = [remove_role_acl(rolename, acl) for acl in sorted(have - want)]
    return commands + [add_role_acl(rolename, acl) for acl in sorted(want - have)]


# --- the interface and the MQTT client ---------------------------------------------------


class Dynsec(Protocol):
    """What provisioning needs from a dynamic-security endpoint."""

    @property
    def username(self) -> str | None:
        """The account this endpoint acts as (None when anonymous)."""

    def execute(self, commands: Sequence[Command]) -> list[Reply]:
        """Send ``commands`` and return one reply per command, in order."""

    def reconnect(self) -> None:
        """Make sure a working connection exists again (after being kicked)."""


def raise_for_errors(
    commands: Sequence[Command], replies: Sequence[Reply], *, tolerate: Iterable[str] = ()
) -> None:
    """Raise :class:`DynsecCommandError` for the first failed command."""
    allowed = set(tolerate)
    for command, reply in zip(commands, replies, strict=True):
        if reply.error is not None and reply.error not in allowed:
            target = command.get("username") or command.get("rolename")
            raise DynsecCommandError(reply.command, reply.error, target=target)


def run(dynsec: Dynsec, commands: Sequence[Command]) -> list[Reply]:
    """Execute ``commands``; raise :class:`DynsecCommandError` if any failed."""
    replies = dynsec.execute(commands)
    raise_for_errors(commands, replies)
    return replies


def fetch_clients(dynsec: Dynsec) -> dict[str, ClientInfo]:
    """Every client, by username."""
    (reply,) = run(dynsec, [list_clients()])
    return {
        c.username: c for c in (ClientInfo.from_json(d) for d in reply.data.get("clients") or ())
    }


def fetch_roles(dynsec: Dynsec) -> dict[str, RoleInfo]:
    """Every role with its ACLs, by name."""
    (reply,) = run(dynsec, [list_roles()])
    return {r.rolename: r for r in (RoleInfo.from_json(d) for d in reply.data.get("roles") or ())}


def fetch_client(dynsec: Dynsec, username: str) -> ClientInfo | None:
    commands = [get_client(username)]
    (reply,) = dynsec.execute(commands)
    raise_for_errors(commands, [reply], tolerate=_NOT_FOUND)
    return ClientInfo.from_json(reply.data["client"]) if reply.ok else None


def fetch_role(dynsec: Dynsec, rolename: str) -> RoleInfo | None:
    commands = [get_role(rolename)]
    (reply,) = dynsec.execute(commands)
    raise_for_errors(commands, [reply], tolerate=_NOT_FOUND)
    return RoleInfo.from_json(reply.data["role"]) if reply.ok else None


class DynsecClient:
    """Administers a Mosquitto broker through the dynamic-security plugin.

    The connection is opened lazily by the first :meth:`execute` (or explicitly with
    :meth:`connect`) and reused; :meth:`close` ends it.  Thread-safe: commands from
    several threads are serialised.

    >>> with DynsecClient("mqtt://broadcaster:secret@127.0.0.1:1883") as dynsec:
    ...     fetch_clients(dynsec)
    """

    def __init__(
        self,
        url: str | MqttUrl,
        *,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        batch_size: int = 100,
        client_id: str | None = None,
    ) -> None:
        try:
            self.url = url if isinstance(url, MqttUrl) else MqttUrl.parse(url)
        except ConfigError as exc:
            raise BrokerUnavailable(f"invalid broker URL: {exc}") from exc
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.batch_size = max(1, batch_size)
        self.client_id = client_id or f"broadcaster-admin-{secrets.token_hex(4)}"
        self._lock = threading.RLock()
        self._cond = threading.Condition()
        self._client: mqtt.Client | None = None
        self._connected = False
        self._subscribed = False
        self._connect_error: str | None = None
        self._auth_refused = False
        self._disconnects = 0
        self._denied_mids: set[int] = set()
        self._replies: dict[str, Reply] = {}
        self._tag = secrets.token_hex(3)
        self._seq = itertools.count(1)

    @property
    def username(self) -> str | None:
        return self.url.username

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect (if not yet connected) and subscribe to the plugin's answers."""
        with self._lock:
            if self._client is not None and self._ready():
                return
            if self._client is not None:
                self._wait_ready(self.timeout_s)
                return
            self._open()

    def reconnect(self) -> None:
        """Wait for paho's automatic reconnect (or start over if it gave up)."""
        with self._lock:
            if self._client is None:
                self._open()
                return
            try:
                self._wait_ready(self.timeout_s)
            except BrokerUnavailable:
                self.close()
                self._open()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is None:
                return
            paho_loop.close(client)
            with self._cond:
                self._connected = self._subscribed = False

    def _open(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set(ca_certs=self.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(1, 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        with self._cond:
            self._connected = self._subscribed = self._auth_refused = False
            self._connect_error = None
        try:
            client.connect(self.url.host, self.url.port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnavailable(
                f"cannot reach the MQTT broker at {self.url.redacted()}: {exc}"
            ) from exc
        client.loop_start()
        self._client = client
        try:
            self._wait_ready(self.timeout_s)
        except BaseException:
            self._client = None
            paho_loop.close(client)
            raise

    def _ready(self) -> bool:
        return self._connected and self._subscribed

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._ready():
                if self._auth_refused:
                    raise BrokerAuthError(
                        f"the broker at {self.url.redacted()} refused the service account: "
                        f"{self._connect_error}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = f" ({self._connect_error})" if self._connect_error else ""
                    raise BrokerUnavailable(
                        f"no working connection to the MQTT broker at "
                        f"{self.url.redacted()} within {timeout_s:g} s{reason}"
                    )
                self._cond.wait(min(remaining, 0.2))

    # --- commands ----------------------------------------------------------------------

    def execute(self, commands: Sequence[Command]) -> list[Reply]:
        """Send ``commands`` in batches and return one reply per command, in order.

        Errors reported by the plugin come back in the replies (see :func:`run` and
        :func:`raise_for_errors`); transport problems raise :class:`BrokerUnavailable`.
        """
        if not commands:
            return []
        with self._lock:
            self.connect()
            replies: list[Reply] = []
            for start in range(0, len(commands), self.batch_size):
                replies += self._batch(commands[start : start + self.batch_size])
            return replies

    def _batch(self, commands: Sequence[Command]) -> list[Reply]:
        client = self._client
        assert client is not None
        ids = [f"{self._tag}-{next(self._seq)}" for _ in commands]
        payload = json.dumps(
            {
                "commands": [
                    {**c, "correlationData": cid} for c, cid in zip(commands, ids, strict=True)
                ]
            }
        )
        with self._cond:
            disconnects = self._disconnects
        info = client.publish(CONTROL_TOPIC, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"cannot send to the MQTT broker: {mqtt.error_string(info.rc)}")
        # The plugin saves its whole file after every command: allow time per command.
        deadline = time.monotonic() + self.timeout_s + 0.05 * len(commands)
        with self._cond:
            while not all(cid in self._replies for cid in ids):
                if info.mid in self._denied_mids:
                    self._denied_mids.discard(info.mid)
                    raise BrokerAuthError(
                        f"the account {self.username!r} may not administer the broker "
                        f"(publishing to {CONTROL_TOPIC} was refused)"
                    )
                if self._disconnects != disconnects:
                    raise BrokerConnectionLost(
                        "the broker closed the connection before answering "
                        f"{commands[0]['command']}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailable(
                        f"the broker did not answer {commands[0]['command']} within "
                        f"{self.timeout_s:g} s; is the dynamic-security plugin loaded?"
                    )
                self._cond.wait(min(remaining, 0.2))
            return [self._replies.pop(cid) for cid in ids]

    # --- paho callbacks: parse and hand over, nothing else -----------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._connect_error = str(reason_code)
                # 0x86 bad user name or password, 0x87 not authorized, 0x8C bad auth method
                self._auth_refused = reason_code.value in (0x86, 0x87, 0x8C)
                self._cond.notify_all()
            return
        with self._cond:
            self._connected = True
            self._connect_error = None
            self._cond.notify_all()
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if any(code.is_failure for code in reason_codes):
                self._auth_refused = True
                self._connect_error = (
                    f"the account may not subscribe to {RESPONSE_TOPIC} "
                    f"({', '.join(str(c) for c in reason_codes)})"
                )
            else:
                self._subscribed = True
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._connected = self._subscribed = False
            self._disconnects += 1
            self._cond.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._denied_mids.add(mid)
                self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            document = json.loads(message.payload)
            responses = document["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed dynamic-security response")
            return
        with self._cond:
            for item in responses if isinstance(responses, list) else ():
                if not isinstance(item, dict):
                    continue
                cid = item.get("correlationData")
                if isinstance(cid, str) and cid.startswith(self._tag + "-"):
                    data = item.get("data")
                    self._replies[cid] = Reply(
                        command=str(item.get("command", "")),
                        error=item.get("error"),
                        data=data if isinstance(data, dict) else {},
                    )
            self._cond.notify_all()


def anonymous_allowed(
    url: str | MqttUrl, *, ca_file: str | None = None, timeout_s: float = 5.0
) -> bool:
    """Whether the broker accepts a connection without credentials.

    Production refuses to run against such a broker.  Raises :class:`BrokerUnavailable`
    when the broker cannot be reached at all.
    """
    parsed = url if isinstance(url, MqttUrl) else MqttUrl.parse(url)
    outcome: list[bool] = []
    done = threading.Event()

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        outcome.append(not reason_code.is_failure)
        done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"broadcaster-probe-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv311,
    )
    if parsed.tls:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.on_connect = on_connect
    try:
        client.connect(parsed.host, parsed.port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerUnavailable(
            f"cannot reach the MQTT broker at {parsed.redacted()}: {exc}"
        ) from exc
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise BrokerUnavailable(f"the MQTT broker at {parsed.redacted()} did not answer")
    finally:
        paho_loop.close(client)
    return outcome[0]
