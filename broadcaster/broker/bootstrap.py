"""``broadcaster mqtt bootstrap``: configuration of the embedded default Mosquitto.

Writes into one directory (``var/mosquitto`` by default):

- ``mosquitto.conf``: one listener on 127.0.0.1, ``allow_anonymous false``, the
  dynamic-security plugin, persistence and the log in the same directory;
- ``dynamic-security.json``: the service account (username ``broadcaster``) holding the
  ``loa-server`` and ``loa-broker-admin`` roles, default access denying publish and
  subscribe to everyone else; station accounts are added later by the service;
- ``credentials.env`` (mode 0600): ``BROADCASTER_MQTT_URL=mqtt://broadcaster:…@…``.

Idempotent: existing files are kept unless ``force``; with ``force`` the configuration
and the service account (new password) are rewritten while station accounts and roles
already in the dynamic-security file are kept.  Stop the broker before forcing: it
rewrites its dynamic-security file on every change.

A production broker differs: TLS listeners (``mqtts://``, port 8883) reachable by the
stations, the packaged service user, log rotation, and for EMQX/HiveMQ their own
authentication and ACL backends instead of this plugin (``BROADCASTER_MQTT_DYNSEC=false``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from broadcaster.broker.hashing import dynsec_password
from broadcaster.broker.provisioning import ADMIN_ROLE, SERVER_ROLE, admin_acls, server_acls
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.topics import Topics

__all__ = [
    "CONFIG_NAME",
    "CREDENTIALS_NAME",
    "DYNSEC_NAME",
    "BootstrapResult",
    "bootstrap",
    "find_dynsec_plugin",
]

CONFIG_NAME = "mosquitto.conf"
DYNSEC_NAME = "dynamic-security.json"
CREDENTIALS_NAME = "credentials.env"
DEFAULT_USERNAME = "broadcaster"

_PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
)


def find_dynsec_plugin() -> Path | None:
    """Where the dynamic-security plugin is installed, if anywhere we know."""
    for pattern in _PLUGIN_CANDIDATES:
        for match in sorted(glob.glob(pattern)):
            if Path(match).is_file():
                return Path(match)
    return None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    directory: Path
    config_path: Path
    dynsec_path: Path
    credentials_path: Path
    mqtt_url: str
    """``BROADCASTER_MQTT_URL`` with the service account's password."""
    host: str
    port: int
    written: tuple[Path, ...]
    """Files written this time (empty when everything was kept)."""

    @property
    def start_command(self) -> str:
        return f"mosquitto -c {self.config_path}"


def _config_text(directory: Path, *, host: str, port: int, plugin: Path) -> str:
    lines = [
        "# Written by `broadcaster mqtt bootstrap` for the embedded default broker.",
        "# Start it with: mosquitto -c " + str(directory / CONFIG_NAME),
        "per_listener_settings false",
        f"listener {port} {host}",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {directory / DYNSEC_NAME}",
        "persistence true",
        f"persistence_location {directory / 'data'}/",
        "autosave_interval 60",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
        "max_keepalive 300",
        "max_packet_size 1048576",
        # The server's bridge takes every station's acks and events on one connection:
        # a broadcast to 1,000 stations is ~4,000 QoS 1 messages in a second. The
        # defaults (20 in flight, 1,000 queued per client) would drop the overflow.
        "max_inflight_messages 1000",
        "max_queued_messages 100000",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root, Mosquitto would switch to user "mosquitto", which cannot read these
        # 0600 files; the embedded default is a development broker on 127.0.0.1.
        lines += [
            "# bootstrapped as root: keep the broker's privileges to read its files",
            "user root",
        ]
    return "\n".join(lines) + "\n"


def _acls_json(acls: Any) -> list[dict[str, Any]]:
    return [a.to_json() for a in sorted(acls)]


def _dynsec_document(
    existing: dict[str, Any] | None, *, username: str, password: str, topics: Topics
) -> dict[str, Any]:
    """The dynamic-security file: ours replaces the service account and its roles."""
    document = existing or {}
    service_roles = {SERVER_ROLE, ADMIN_ROLE}
    clients = [c for c in document.get("clients", []) if c.get("username") != username]
    roles = [r for r in document.get("roles", []) if r.get("rolename") not in service_roles]
    clients.insert(
        0,
        {
            "username": username,
            "textname": "broadcaster service (server and broker administration)",
            **dynsec_password(password),
            "roles": [{"rolename": SERVER_ROLE}, {"rolename": ADMIN_ROLE}],
        },
    )
    roles[:0] = [
        {
            "rolename": SERVER_ROLE,
            "textname": "broadcaster service",
            "acls": _acls_json(server_acls(topics)),
        },
        {
            "rolename": ADMIN_ROLE,
            "textname": "broadcaster service",
            "acls": _acls_json(admin_acls()),
        },
    ]
    return {
        **document,
        "clients": clients,
        "groups": document.get("groups", []),
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    path.chmod(0o600)


def _url(username: str, password: str, host: str, port: int) -> str:
    return f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}"


def _write_credentials(path: Path, url: str) -> None:
    _write_private(
        path,
        "# The service account of the embedded broker (broadcaster mqtt bootstrap)\n"
        f"BROADCASTER_MQTT_URL={url}\n",
    )


def _listener(config: Path) -> tuple[str, int] | None:
    """The ``listener PORT HOST`` of an existing configuration."""
    for line in config.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "listener" and parts[1].isdigit():
            return (parts[2] if len(parts) > 2 else "127.0.0.1"), int(parts[1])
    return None


def _read_url(credentials: Path) -> str | None:
    try:
        text = credentials.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "BROADCASTER_MQTT_URL" and value.strip():
            return value.strip()
    return None


def bootstrap(
    directory: Path,
    *,
    port: int = 1883,
    host: str = "127.0.0.1",
    topics: Topics | None = None,
    username: str = DEFAULT_USERNAME,
    plugin: Path | None = None,
    force: bool = False,
) -> BootstrapResult:
    """Write the embedded broker's configuration (see the module docstring)."""
    topics = topics or Topics()
    directory = directory.resolve()
    plugin = plugin or find_dynsec_plugin()
    if plugin is None:
        raise FileNotFoundError(
            "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) was not "
            "found; install mosquitto 2 or pass its path"
        )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    (directory / "data").mkdir(exist_ok=True)
    config = directory / CONFIG_NAME
    dynsec_file = directory / DYNSEC_NAME
    credentials = directory / CREDENTIALS_NAME
    written: list[Path] = []

    if force or not config.exists():
        _write_private(config, _config_text(directory, host=host, port=port, plugin=plugin))
        written.append(config)
    else:
        host, port = _listener(config) or (host, port)

    url = _read_url(credentials)
    if force or url is None or not dynsec_file.exists():
        password = secrets.token_urlsafe(24)
        existing = None
        if dynsec_file.exists():
            existing = json.loads(dynsec_file.read_text(encoding="utf-8"))
        document = _dynsec_document(existing, username=username, password=password, topics=topics)
        _write_private(dynsec_file, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        url = _url(username, password, host, port)
        _write_credentials(credentials, url)
        written += [dynsec_file, credentials]
    else:
        current = MqttUrl.parse(url)
        if (current.host, current.port) != (host, port):
            url = _url(current.username or username, current.password or "", host, port)
            _write_credentials(credentials, url)
            written.append(credentials)
    return BootstrapResult(
        directory=directory,
        config_path=config,
        dynsec_path=dynsec_file,
        credentials_path=credentials,
        mqtt_url=url,
        host=host,
        port=port,
        written=tuple(written),
    )
