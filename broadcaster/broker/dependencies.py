"""The broker administration dependency of the credentials routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from broadcaster.broker.exceptions import BrokerProvisioningDisabled
from broadcaster.broker.service import BrokerAdmin, dynsec_client
from broadcaster.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_dynsec(settings: SettingsDep) -> Iterator[BrokerAdmin]:
    """A dynamic-security client for this request; it connects on first use only.

    Routes check permissions first, then :func:`require_dynsec`, then use the client.
    """
    client = dynsec_client(settings)
    try:
        yield client
    finally:
        client.close()


DynsecDep = Annotated[BrokerAdmin, Depends(get_dynsec)]


def require_dynsec(settings: Settings) -> None:
    if not settings.mqtt_dynsec:
        raise BrokerProvisioningDisabled()
