"""``mqtt://[user:pass@]host:port`` and ``mqtts://`` URLs, shared by bridge and simulator."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from firmware_bridge.errors import ConfigError

__all__ = ["MqttUrl"]


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed broker URL; ``tls`` is true for ``mqtts://``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """Parse ``url``; default ports are 1883 (mqtt) and 8883 (mqtts)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ConfigError(f"MQTT URL has no host: {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"MQTT URL must not carry a path or query: {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"invalid port in MQTT URL {url!r}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def redacted(self) -> str:
        """The URL without its password, for logs."""
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"
