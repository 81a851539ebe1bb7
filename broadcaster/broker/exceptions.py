"""Errors of the broker administration, mapped to HTTP answers by the web layer.

::

    ServiceUnavailable (kernel)                    -> 503
    └── BrokerError
         ├── BrokerUnavailable                     cannot connect, connection lost, no answer
         │    └── BrokerConnectionLost             the broker dropped us while we waited
         ├── BrokerAuthError                       our account was refused, or may not administer
         └── DynsecCommandError                    the plugin answered a command with an error
    ConflictError (kernel)                         -> 409
    └── BrokerProvisioningDisabled                 BROADCASTER_MQTT_DYNSEC is off
    └── ReservedStationId                          the sid is the server's own MQTT username

Library errors (paho return codes, ``OSError``) are wrapped once, in :mod:`.dynsec`.
"""

from __future__ import annotations

from kernel.errors import ConflictError, ServiceUnavailable

_VI_UNAVAILABLE = "Máy chủ MQTT tạm thời không sẵn sàng; chưa thay đổi gì"


class BrokerError(ServiceUnavailable):
    """Base of every broker administration failure: nothing was committed."""

    def __init__(self, message: str, *, message_vi: str | None = None) -> None:
        super().__init__(message, retry_after_s=5, message_vi=message_vi or _VI_UNAVAILABLE)


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached or does not answer in time."""


class BrokerConnectionLost(BrokerUnavailable):
    """The broker closed our connection while a command was pending.

    Mosquitto kicks every connection of an account whose roles change, which includes
    the service's own account when its role is updated.
    """


class BrokerAuthError(BrokerError):
    """The broker refused our credentials, or our account may not administer it."""


class DynsecCommandError(BrokerError):
    """The dynamic-security plugin answered a command with an error."""

    def __init__(self, command: str, error: str, *, target: str | None = None) -> None:
        about = f" for {target!r}" if target else ""
        super().__init__(f"broker refused {command}{about}: {error}")
        self.command = command
        self.error = error
        self.target = target


class BrokerProvisioningDisabled(ConflictError):
    """Per-station credentials need the dynamic-security plugin, which is switched off."""

    def __init__(self) -> None:
        super().__init__(
            "per-station broker credentials are provisioned through Mosquitto's "
            "dynamic-security plugin, which is switched off (BROADCASTER_MQTT_DYNSEC=false)",
            message_vi="Chưa bật cấp tài khoản MQTT cho trạm (BROADCASTER_MQTT_DYNSEC)",
        )


class ReservedStationId(ConflictError):
    """A station id that equals the server's MQTT account name cannot get credentials."""

    def __init__(self, sid: str) -> None:
        super().__init__(
            f"station id {sid!r} is the service's own MQTT username; rename the station",
            message_vi=f"Mã trạm {sid!r} trùng tài khoản MQTT của máy chủ",
        )
