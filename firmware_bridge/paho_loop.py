"""paho-mqtt's network thread (``loop_start``): is it alive, and stopping it safely.

Every threaded paho client in the project (bridge, broker admin, tests, benchmarks) is
stopped through :func:`close` or :func:`stop_loop`, never by ``Client.loop_stop`` alone.

``Client.loop_stop`` reads ``self._thread`` twice: once to check it is set, once to
join it. The network thread clears that attribute as it ends. After ``disconnect()``
it ends at once, so it can clear it between the two reads, and ``loop_stop`` raises
``AttributeError: 'NoneType' object has no attribute 'join'`` (paho-mqtt issue #872;
2.1 and 2.2 have it). :func:`stop_loop` reads the thread once, asks paho to stop it, and joins
what it read.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

__all__ = ["close", "loop_alive", "stop_loop"]


def _network_thread(client: mqtt.Client) -> threading.Thread | None:
    # paho keeps the thread in a private attribute and has no public accessor
    thread = getattr(client, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


def loop_alive(client: mqtt.Client) -> bool:
    """Is the client's network thread still running?

    A thread killed by an exception escaping a callback leaves the attribute set but
    the thread dead: that is "not alive".
    """
    thread = _network_thread(client)
    return thread is not None and thread.is_alive()


def stop_loop(client: mqtt.Client, timeout_s: float | None = None) -> None:
    """Stop the network thread and wait for it (at most ``timeout_s``; ``None`` waits
    as long as ``loop_stop`` does). Safe when the thread is ending on its own, already
    gone, or never started, and when called from the network thread itself."""
    thread = _network_thread(client)
    try:
        client.loop_stop()
    except AttributeError:
        if _network_thread(client) is not None:
            raise  # not the race above: a real fault
        # the thread ended and cleared itself between loop_stop's check and its join
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout_s)


def close(client: mqtt.Client, timeout_s: float | None = None) -> None:
    """Disconnect (a clean DISCONNECT if connected) and stop the network thread."""
    try:
        client.disconnect()
    finally:
        stop_loop(client, timeout_s)
