"""Settings-aware entry points: what the API, the CLI and the dispatcher call.

- :func:`dynsec_client`: a :class:`~.dynsec.DynsecClient` acting as the service account
  (``BROADCASTER_MQTT_URL``'s user and password), or, with
  ``BROADCASTER_MQTT_NATS_AUTH_FILE`` set, a :class:`~.nats_auth.NatsAuth` administering
  a NATS Server cluster through the same interface.
- :func:`init_nats_auth`: create that file with the service account.
- :func:`sync_registry`: :func:`.provisioning.sync` with the settings filled in; a
  no-op returning ``None`` when ``BROADCASTER_MQTT_DYNSEC`` is off.
- :func:`check_broker`: the hardening check, strict in production: the URL must carry
  the service account and the broker must refuse anonymous clients.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from broadcaster.broker.dynsec import Dynsec, DynsecClient, anonymous_allowed
from broadcaster.broker.nats_auth import NatsAuth
from broadcaster.broker.provisioning import (
    ADMIN_ROLE,
    SERVER_ROLE,
    SyncReport,
    admin_acls,
    server_acls,
    sync,
)
from broadcaster.settings import Environment, Settings
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.topics import Topics
from kernel.errors import DomainError

__all__ = [
    "BrokerAdmin",
    "InsecureBroker",
    "check_broker",
    "dynsec_client",
    "init_nats_auth",
    "server_account",
    "sync_registry",
    "topics",
]


class InsecureBroker(DomainError):
    """The broker setup is not acceptable in production."""


def topics(settings: Settings) -> Topics:
    return Topics(settings.mqtt_topic_prefix)


def server_account(settings: Settings) -> str | None:
    """The service's own MQTT username, from ``BROADCASTER_MQTT_URL``."""
    return MqttUrl.parse(settings.mqtt_url).username


BrokerAdmin = DynsecClient | NatsAuth
"""What administers station accounts: Mosquitto's dynamic security or a NATS cluster."""


def dynsec_client(settings: Settings, *, timeout_s: float = 10.0) -> BrokerAdmin:
    """A (lazily connecting) administration endpoint for the service account."""
    if settings.mqtt_nats_auth_file is not None:
        return NatsAuth(
            settings.mqtt_nats_auth_file,
            settings.mqtt_nats_pids,
            username=server_account(settings),
        )
    return DynsecClient(settings.mqtt_url, ca_file=settings.mqtt_ca_file, timeout_s=timeout_s)


def init_nats_auth(settings: Settings) -> NatsAuth:
    """Create the NATS authorization file holding the service account of
    ``BROADCASTER_MQTT_URL`` (the NATS counterpart of ``mosquitto_ctrl dynsec init``)."""
    url = MqttUrl.parse(settings.mqtt_url)
    if settings.mqtt_nats_auth_file is None or not url.username or not url.password:
        raise InsecureBroker(
            "set BROADCASTER_MQTT_NATS_AUTH_FILE and a service account in "
            "BROADCASTER_MQTT_URL (mqtt://user:password@host:port,...)"
        )
    auth = NatsAuth(settings.mqtt_nats_auth_file, settings.mqtt_nats_pids, username=url.username)
    roles = {
        SERVER_ROLE: [a.to_json() for a in sorted(server_acls(topics(settings)))],
        ADMIN_ROLE: [a.to_json() for a in sorted(admin_acls())],
    }
    auth.init(url.username, url.password, roles)
    return auth


def sync_registry(
    session: Session, settings: Settings, dynsec: Dynsec | None = None
) -> SyncReport | None:
    """Reconcile the broker with the registry (see :func:`.provisioning.sync`).

    Uses ``dynsec`` when given (keep one open in a long-running worker), else opens and
    closes a connection.  Returns ``None`` when dynamic security is switched off.
    """
    if not settings.mqtt_dynsec:
        return None
    if dynsec is not None:
        return sync(
            session, dynsec, topics=topics(settings), server_account=server_account(settings)
        )
    with dynsec_client(settings) as client:
        return sync(
            session, client, topics=topics(settings), server_account=server_account(settings)
        )


def check_broker(settings: Settings, *, strict: bool | None = None) -> list[str]:
    """Problems with the broker's security; raises :class:`InsecureBroker` when strict.

    Strict (the default in production): ``BROADCASTER_MQTT_URL`` must name the service
    account and the broker must refuse a connection without credentials
    (``allow_anonymous false``).  Raises :class:`~.exceptions.BrokerUnavailable` if the
    broker cannot be reached.
    """
    strict = settings.environment is Environment.PRODUCTION if strict is None else strict
    url = MqttUrl.parse(settings.mqtt_url)
    problems: list[str] = []
    if not url.username or not url.password:
        problems.append(
            "BROADCASTER_MQTT_URL carries no service account (mqtt://user:password@host:port)"
        )
    if anonymous_allowed(url, ca_file=settings.mqtt_ca_file):
        problems.append(
            f"the broker at {url.redacted()} accepts anonymous clients (set allow_anonymous false)"
        )
    if problems and strict:
        raise InsecureBroker(
            "refusing an insecure MQTT broker in production: " + "; ".join(problems)
        )
    return problems
