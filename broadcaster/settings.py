"""Service settings (pydantic-settings), read once at start-up and passed in.

One `Settings` class per concern, each with its own environment prefix:

- `Settings` (``BROADCASTER_``): what the service itself needs.
- `audio_library.settings.AudioSettings` (``BROADCASTER_AUDIO_``): the media pipeline.

Nothing below `broadcaster/` reads the environment; the composition root builds these
objects and hands the values down.  A default secret key is refused unless
``BROADCASTER_ENVIRONMENT=development``.  The broker side of the hardening (no
anonymous MQTT in production, the service's own account in ``BROADCASTER_MQTT_URL``)
needs the broker itself and is checked by `broadcaster.broker.hardening`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from firmware_bridge.errors import ConfigError
from firmware_bridge.mqtt_url import MqttUrl
from kernel.local_time import SITE_TIMEZONE

DEFAULT_SECRET_KEY = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside development


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROADCASTER_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite:///./var/broadcaster.db"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_topic_prefix: str = "loa/v1"
    mqtt_instance: str = "main"
    # Broker credentials: the service account is BROADCASTER_MQTT_URL's user:password.
    mqtt_dynsec: bool = True
    """Provision per-station accounts through Mosquitto's dynamic-security plugin."""
    mqtt_public_url: str | None = None
    """The broker URL stations are given (default: BROADCASTER_MQTT_URL without user)."""
    mqtt_ca_file: str | None = None
    """CA bundle for ``mqtts://`` brokers (default: the system's)."""
    mqtt_nats_auth_file: Path | None = None
    """Clustered broker (NATS Server's MQTT gateway): the ``authorization`` include file
    the service writes with every station account; set, it replaces dynamic security."""
    mqtt_nats_pid_files: str = ""
    """Comma-separated PID files of the NATS nodes to reload after each change."""
    media_dir: Path = Path("./var/media")
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    timezone: str = SITE_TIMEZONE
    telemetry_retention_days: int = Field(default=30, ge=1, le=3650)
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    max_import_bytes: int = Field(default=8 * 1_048_576, ge=1024)
    """Body limit of a station spreadsheet import (CSV)."""
    cors_origins: list[str] = Field(default_factory=list)
    metrics_token: SecretStr | None = None
    """Bearer token of ``GET /metrics`` (Prometheus); unset: the endpoint answers 404."""
    alarm_eval_interval_s: float = Field(default=5.0, gt=0, le=300)
    """How often the worker re-evaluates every station (time-based alarm rules)."""
    alarm_count_window_s: float = Field(default=3600.0, ge=10, le=86_400)
    """The window in which reconnects (link flapping), missed plays and unacknowledged
    commands are counted against their alarm thresholds (the thresholds' "per hour")."""
    alarm_settle_s: float = Field(default=10.0, ge=0, le=600)
    """How long a fresh notification waits so that alarms fired together form one digest."""
    alarm_smtp_host: str | None = None
    alarm_smtp_port: int = Field(default=25, ge=1, le=65535)
    alarm_smtp_user: str | None = None
    alarm_smtp_password: SecretStr | None = None
    alarm_smtp_starttls: bool = False
    alarm_mail_from: str = "broadcaster@localhost"
    alarm_notify_timeout_s: float = Field(default=10.0, gt=0, le=120)
    alarm_notify_max_attempts: int = Field(default=6, ge=1, le=50)
    alarm_notify_backoff_s: float = Field(default=30.0, ge=0.1, le=3600)
    emergency_volume: int = Field(default=100, ge=0, le=100)
    """Volume (%) every emergency plays at, whatever a station's own volume; the station
    returns to its own volume afterwards (``play.volume`` is for that play only).  A
    broadcast's own ``volume`` overrides it."""
    emergency_attention: bool = False
    """Precede every emergency with the attention signal (a tone chime the service
    synthesises at start and keeps in the media library; `broadcaster.dispatch.attention`)."""
    emergency_speech_follows: bool = True
    """Send a spoken emergency before its speech exists when every target station takes
    it (``media_follows``, proposal 0005): stations have it, and sound the attention
    signal, while the text is spoken; the audio follows in a ``media`` command."""
    live_icecast_url: SecretStr | None = None
    """Live paging: the Icecast server the service pushes operators' voices and relayed
    streams to, with its source login (``http://source:PASSWORD@127.0.0.1:8010``);
    unset: live paging is off (503).  ``broadcaster live icecast-config`` writes one."""
    live_stream_base_url: str | None = None
    """The Icecast address stations are given (default: the URL above without login)."""
    live_max_s: int = Field(default=3600, ge=10, le=6 * 3600)
    """Longest live session; stations stop by themselves at its end."""
    live_idle_s: float = Field(default=3.0, gt=0, le=60)
    """A microphone that sends no audio this long is gone: the session ends, stations stop."""
    ingest_nice: int = Field(default=10, ge=0, le=19)
    """How much lower than the rest of the service the thread that stores what stations
    send runs (its niceness is raised by this much; Linux).  When every core is busy, the
    broker beside the service, the API and the outbox publisher get them first: an
    emergency goes out and its acks come back sooner, and the storing catches up as soon
    as a core is free (nothing is lost: a message is acknowledged to the broker only once
    stored).  0 runs it like the rest."""
    fanout_quiet_s: float = Field(default=0.05, ge=0, le=1.0)
    """After the broker takes a command for many stations (a group, or
    `QUIET_MIN_STATIONS` or more), how long at least the service leaves what stations send
    in the broker and holds back its own records of the publish (the per-station rows,
    the progress streams' read), so the broker beside it fans the command out first
    (`firmware_bridge.quiet`).  Any publish ends it at once; nothing is lost (the acks
    wait in the broker, QoS 1).  0: no quiet moment."""
    fanout_quiet_per_station_ms: float = Field(default=0.2, ge=0, le=10)
    """What the quiet moment grows by for each station the command reaches: the broker
    copies it to every one, one after the other, and the acks come back meanwhile.  The
    default is what this fan-out took on the 2-core machine the benchmarks ran on, where
    the broker and the stations shared the cores (about 0.15-0.2 ms a station: 0.25 s for
    1,000 stations)."""
    fanout_quiet_max_s: float = Field(default=2.0, ge=0, le=10)
    """The longest quiet moment, whatever the number of stations (2 s: the whole fan-out
    of 10,000 stations on that machine)."""
    auth_cache_s: float = Field(default=5.0, ge=0, le=60)
    """How long a process remembers what a token signed in as, so a request with it
    skips the database on its way to the route (`broadcaster.auth.signin_cache`).  A
    sign-out, a revoked token or a changed account takes effect at once in the process
    that made the change and within this many seconds in the others (API replicas, the
    CLI).  0: every request reads its sign-in."""
    sse_keepalive_s: float = Field(default=15.0, gt=0, le=300)
    """A progress stream idle this long sends a comment (proxies close silent streams)."""
    sse_poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often the progress streams' hub reads changes another process committed
    (this process's own worker and routes wake it at once)."""
    speech_warm_up: bool = True
    """Start and warm the audio process pool (espeak-ng voices, ffmpeg, numpy) at start,
    so the first spoken emergency does not pay for it (the in-process test apps turn it
    off; the service processes of end-to-end tests and benchmarks keep it)."""
    route_warm_up: bool = True
    """Prepare every route at start (`broadcaster.app.warm_routes`), so the first request
    to a router, the first emergency among them, does not build its routes, and (where
    the API runs) the emergency's way out: the fleet read into memory and the whole-fleet
    route's statements built (`broadcaster.app.prepare_way_out`).  The in-process test
    apps turn it off (0.2-0.5 s each); service processes keep it."""
    map_tile_url: str = ""
    """Map tiles of the alarms page (``https://{s}.tile.example.org/{z}/{x}/{y}.png``; the
    pages' Content Security Policy allows images from its origin); empty: no tiles, the
    stations and the ward/commune outlines on a plain background."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        try:
            MqttUrl.parse(value)
        except ConfigError as exc:
            raise ValueError(
                "BROADCASTER_MQTT_URL must look like mqtt://host:port (several brokers: "
                f"mqtt://user:password@host1:port,host2:port): {exc}"
            ) from None
        return value

    @field_validator("mqtt_public_url")
    @classmethod
    def _mqtt_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _url_of(
            value, {"mqtt", "mqtts"}, "BROADCASTER_MQTT_PUBLIC_URL must look like mqtts://host:port"
        )
        if parts.username or parts.password:
            raise ValueError("BROADCASTER_MQTT_PUBLIC_URL must not carry credentials")
        return value

    @field_validator("live_icecast_url")
    @classmethod
    def _live_icecast_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = _url_of(
                value.get_secret_value(),
                {"http"},
                "BROADCASTER_LIVE_ICECAST_URL must look like http://source:password@host:port",
            )
            if not parts.password:
                raise ValueError("BROADCASTER_LIVE_ICECAST_URL needs the source password")
        return value

    @field_validator("live_stream_base_url")
    @classmethod
    def _live_stream_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _url_of(
            value, {"http", "https"}, "BROADCASTER_LIVE_STREAM_BASE_URL must be an http(s) URL"
        )
        if parts.username or parts.password:
            raise ValueError("BROADCASTER_LIVE_STREAM_BASE_URL must not carry credentials")
        return value.rstrip("/")

    @field_validator("map_tile_url")
    @classmethod
    def _map_tile_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value.replace("{s}", "a"))
        if parts.scheme not in {"http", "https"} or not parts.netloc or " " in value:
            raise ValueError("BROADCASTER_MAP_TILE_URL must be an http(s) URL")
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in value]
        if missing:
            raise ValueError(
                f"BROADCASTER_MAP_TILE_URL must contain {', '.join(missing)} (a tile template)"
            )
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        _url_of(value, {"http", "https"}, "BROADCASTER_PUBLIC_BASE_URL must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        if self.environment is not Environment.DEVELOPMENT:
            key = self.secret_key.get_secret_value()
            if key == DEFAULT_SECRET_KEY or len(key) < 32:
                raise ValueError(
                    "BROADCASTER_SECRET_KEY must be set to a random value of at least "
                    "32 characters outside development"
                )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def mqtt_station_url(self) -> str:
        """The broker URL handed to stations with their credentials (no user info)."""
        if self.mqtt_public_url:
            return self.mqtt_public_url
        url = MqttUrl.parse(self.mqtt_url)
        if url.clustered:
            return url.without_credentials()
        parts = urlsplit(self.mqtt_url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}"

    def fanout_quiet_for(self, stations: int) -> float:
        """The quiet moment after a command reaches ``stations`` stations (seconds; 0:
        none, when ``fanout_quiet_s`` is 0)."""
        if self.fanout_quiet_s <= 0:
            return 0.0
        grown = self.fanout_quiet_s + stations * self.fanout_quiet_per_station_ms / 1000
        return min(grown, max(self.fanout_quiet_max_s, self.fanout_quiet_s))

    @property
    def mqtt_nats_pids(self) -> list[Path]:
        """The NATS nodes' PID files (``BROADCASTER_MQTT_NATS_PID_FILES``)."""
        return [Path(p.strip()) for p in self.mqtt_nats_pid_files.split(",") if p.strip()]


def _url_of(value: str, schemes: set[str], refusal: str) -> SplitResult:
    """The parts of a URL setting with one of `schemes` and a host, else `refusal`."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(refusal)
    return parts
