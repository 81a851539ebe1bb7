"""Stopping paho's network thread, against a real mosquitto.

``Client.loop_stop`` reads ``self._thread`` to check it, then again to join it; the
thread clears it as it ends (paho-mqtt #872). CI hit this once in a test teardown. The
race is made certain here, from both sides:

- the network thread, ending on its own after a real DISCONNECT, holds off clearing the
  attribute until ``loop_stop`` has read it once (else it can end before ``loop_stop``
  is called at all, and there is no race to show: CI saw that too);
- that first read waits until the thread has really ended before handing back the
  value it read.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge import paho_loop
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto

pytestmark = requires_mosquitto()


class RacingClient(mqtt.Client):
    """A paho client whose network thread always ends inside ``loop_stop``'s window."""

    def __init__(self, client_id: str) -> None:
        self.__dict__["_racing_thread"] = None
        self.__dict__["_raced"] = False
        self.__dict__["_first_read"] = threading.Event()
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id)

    @property  # type: ignore[override]
    def _thread(self) -> Any:
        value = self.__dict__["_racing_thread"]
        caller = sys._getframe(1).f_code.co_name
        if caller == "loop_stop" and not self.__dict__["_raced"] and value is not None:
            self.__dict__["_raced"] = True
            self.__dict__["_first_read"].set()
            value.join(10)  # the thread ends now, and clears the attribute as it goes
        return value

    @_thread.setter
    def _thread(self, value: Any) -> None:
        current = self.__dict__["_racing_thread"]
        if value is None and current is threading.current_thread():
            # the network thread is ending: not before loop_stop's first read
            self.__dict__["_first_read"].wait(10)
        self.__dict__["_racing_thread"] = value


def started(client: mqtt.Client, broker: Mosquitto) -> mqtt.Client:
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    wait_until(client.is_connected, what="connected")
    return client


def test_the_race_is_real_with_loop_stop_alone(broker: Mosquitto) -> None:
    client = started(RacingClient("race-plain"), broker)
    client.disconnect()
    with pytest.raises(AttributeError, match="join"):
        client.loop_stop()


def test_close_survives_the_thread_ending_inside_loop_stop(broker: Mosquitto) -> None:
    client = started(RacingClient("race-close"), broker)
    thread = client.__dict__["_racing_thread"]
    assert paho_loop.loop_alive(client)

    paho_loop.close(client)

    assert client.__dict__["_raced"]  # the window was hit
    assert not thread.is_alive()
    assert not paho_loop.loop_alive(client)


def test_close_stops_a_connected_client_and_tolerates_one_never_started(
    broker: Mosquitto,
) -> None:
    client = started(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain"), broker)
    paho_loop.close(client, timeout_s=10)
    assert not paho_loop.loop_alive(client)
    assert not client.is_connected()
    paho_loop.close(client)  # twice is harmless

    never = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="never")
    paho_loop.close(never)
    assert not paho_loop.loop_alive(never)


def test_stop_loop_from_the_network_thread_itself_does_not_wait_on_itself(
    broker: Mosquitto,
) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="self-stop")
    stopped = threading.Event()

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        paho_loop.stop_loop(c)
        stopped.set()

    def on_connect(c: mqtt.Client, *args: object) -> None:
        c.subscribe("paho-loop/self", qos=1)

    def on_subscribe(c: mqtt.Client, *args: object) -> None:
        c.publish("paho-loop/self", b"x", qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    started(client, broker)
    assert stopped.wait(10), "the callback's stop_loop returned"
    wait_until(lambda: not paho_loop.loop_alive(client), what="the network thread ended")
    client.disconnect()
