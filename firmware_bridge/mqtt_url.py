"""``mqtt://[user:pass@]host:port`` and ``mqtts://`` URLs, shared by bridge and simulator.

A clustered broker is named by several addresses in one URL, comma-separated:
``mqtt://user:pass@10.0.0.1:1883,10.0.0.2:1883,10.0.0.3:1883``.  Every address shares
the scheme and the credentials; a client connects to the first and, when a connection
is lost or refused, tries the next one (:meth:`MqttUrl.after`), round the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from firmware_bridge.errors import ConfigError

__all__ = ["MqttUrl"]


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed broker URL; ``tls`` is true for ``mqtts://``.

    ``host`` and ``port`` are the first address; ``addresses`` holds every one (a
    single-broker URL has exactly one).
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.addresses:
            object.__setattr__(self, "addresses", ((self.host, self.port),))

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """Parse ``url``; default ports are 1883 (mqtt) and 8883 (mqtts)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"MQTT URL must not carry a path or query: {url!r}")
        tls = parts.scheme == "mqtts"
        userinfo, at, hostlist = parts.netloc.rpartition("@")
        addresses = tuple(_address(item, tls, url) for item in hostlist.split(","))
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user)
            password = unquote(secret) if colon else None
        return cls(
            host=addresses[0][0],
            port=addresses[0][1],
            tls=tls,
            username=username,
            password=password,
            addresses=addresses,
        )

    @property
    def clustered(self) -> bool:
        """True when the URL names more than one broker address."""
        return len(self.addresses) > 1

    def after(self, host: str, port: int) -> tuple[str, int]:
        """The address to try after ``host:port`` (the first one if it is not listed)."""
        try:
            index = self.addresses.index((host, port))
        except ValueError:
            return self.addresses[0]
        return self.addresses[(index + 1) % len(self.addresses)]

    def address(self, attempt: int) -> tuple[str, int]:
        """The address for connection attempt number ``attempt`` (round the list)."""
        return self.addresses[attempt % len(self.addresses)]

    def hostlist(self) -> str:
        """``host:port[,host:port...]`` (IPv6 hosts in brackets)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)

    def redacted(self) -> str:
        """The URL without its password, for logs."""
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.hostlist()}"

    def without_credentials(self) -> str:
        """The URL with every address and no user info (what stations are given)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.hostlist()}"


def _address(item: str, tls: bool, url: str) -> tuple[str, int]:
    """One ``host[:port]`` of the host list."""
    parts = urlsplit(f"//{item}")
    if not item or not parts.hostname:
        raise ConfigError(f"MQTT URL has no host: {url!r}")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"invalid port in MQTT URL {url!r}") from exc
    return parts.hostname, port
