"""The simulator's paho-on-asyncio transport writes what it queues without waiting for
the loop's next pass, and still gets a payload out that the kernel takes in parts."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion

from firmware_bridge.simulator.aio_mqtt import AioMqttClient
from tests.support.mosquitto import Mosquitto, requires_mosquitto

pytestmark = requires_mosquitto()


def _ignore(message: mqtt.MQTTMessage) -> None:
    return None


async def _client(
    broker: Mosquitto,
    name: str,
    executor: ThreadPoolExecutor,
    on_message: Callable[[mqtt.MQTTMessage], None] = _ignore,
) -> AioMqttClient:
    client = AioMqttClient(
        client_id=name,
        protocol=MQTTProtocolVersion.MQTTv5,
        keepalive=30,
        executor=executor,
        clean_start=True,
        on_message=on_message,
    )
    await client.connect(broker.host, broker.port)
    return client


def test_a_reply_leaves_before_the_loop_runs_anything_else(broker: Mosquitto) -> None:
    """A station answering a command from its message callback: the reply (and the
    command's PUBACK) are on the wire when the callback's read returns, before any
    callback scheduled meanwhile runs (the station's own play task, another station)."""

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        unsent_after: list[bool] = []
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        with ThreadPoolExecutor(max_workers=2) as executor:

            def on_command(message: mqtt.MQTTMessage) -> None:
                station.publish("t/reply", b"ack:" + message.payload, qos=1, retain=False)
                # what runs next on the loop: is anything still waiting to be written?
                loop.call_soon(lambda: unsent_after.append(station._client.want_write()))

            station = await _client(broker, "station", executor, on_message=on_command)
            listener = await _client(
                broker,
                "listener",
                executor,
                on_message=lambda m: replies.put_nowait(bytes(m.payload)),
            )
            await station.subscribe([("t/cmd", 1)])
            await listener.subscribe([("t/reply", 1)])
            for n in range(5):
                assert await listener.publish_wait("t/cmd", f"c{n}".encode())
                assert await asyncio.wait_for(replies.get(), 5) == f"ack:c{n}".encode()
            await station.disconnect()
            await listener.disconnect()
        return unsent_after

    assert asyncio.run(main()) == [False] * 5


def test_a_payload_larger_than_the_socket_buffer_is_written_in_parts(broker: Mosquitto) -> None:
    """The kernel takes part of it; the rest waits for the socket to be writable.  The
    broker is paused while the payload is handed over, so it cannot drain the socket as
    fast as paho fills it (on a busy machine it did, and the kernel took it all at once)."""
    payload = bytes(range(256)) * (24 * 4096)  # 24 MiB

    async def main() -> tuple[bool, bool, int]:
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_big(message: mqtt.MQTTMessage) -> None:
            if not got.done():
                got.set_result(len(message.payload))

        with ThreadPoolExecutor(max_workers=2) as executor:
            sender = await _client(broker, "sender", executor)
            receiver = await _client(broker, "receiver", executor, on_message=on_big)
            await receiver.subscribe([("t/big", 1)])
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                sender.publish("t/big", payload, qos=1, retain=False)
                queued_after_publish = sender._client.want_write()
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            acked = await sender.publish_wait("t/small", b"after", timeout_s=30)
            size = await asyncio.wait_for(got, 30)
            await sender.disconnect()
            await receiver.disconnect()
        return queued_after_publish, acked, size

    queued_after_publish, acked, size = asyncio.run(main())
    assert queued_after_publish  # the kernel did not take it all at once
    assert acked
    assert size == len(payload)
