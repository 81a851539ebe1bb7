"""The quiet moment after a command fans out (`firmware_bridge.quiet`): the bridge leaves
what stations send in the broker until it ends, and any publish ends it at once."""

from __future__ import annotations

import threading
import time

from firmware_bridge.client import Bridge
from firmware_bridge.messages import Ack, Command
from firmware_bridge.quiet import QuietWindow
from firmware_bridge.topics import Topics
from tests.support.loa import Inbox, RawPublisher, ack_payload, wait_until
from tests.support.mosquitto import requires_mosquitto

TOPICS = Topics()


def test_a_quiet_window_holds_its_waiters_until_it_ends_or_runs_out() -> None:
    quiet = QuietWindow()
    quiet.wait()  # none open: at once
    assert quiet.remaining() == 0.0
    quiet.open(0)  # none
    assert (quiet.remaining(), quiet.opened) == (0.0, 0)

    quiet.open(600)
    assert quiet.remaining() > 590
    waiter = threading.Thread(target=quiet.wait)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # held
    quiet.end()
    waiter.join(10)
    assert not waiter.is_alive()
    assert quiet.remaining() == 0.0

    quiet.open(0.2)  # runs out by itself
    waiter = threading.Thread(target=quiet.wait)
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()
    assert quiet.opened == 2


@requires_mosquitto()
def test_in_a_quiet_moment_what_stations_send_stays_in_the_broker_until_a_publish(
    bridge: Bridge, inbox: Inbox, raw: RawPublisher
) -> None:
    bridge.quiet.open(600)  # far longer than the test
    raw.publish(TOPICS.ack("st-1"), ack_payload("c-held"))
    raw.publish(TOPICS.ack("st-2"), ack_payload("c-held"))
    time.sleep(1.0)
    assert inbox.select("ack") == []  # the network thread waits in the moment

    # a publish needs the network thread (it writes the PUBLISH, reads the PUBACK): it
    # ends the moment, or it would wait for the broker's acknowledgement in vain
    assert bridge.publish_command_to_group("tan-an", Command.new("ping"), wait_s=5.0)
    assert bridge.quiet.remaining() == 0.0
    got = wait_until(lambda: len(inbox.select("ack")) == 2 and inbox.select("ack"), what="acks")
    assert sorted(i.sid for i in got) == ["st-1", "st-2"]  # nothing lost


@requires_mosquitto()
def test_a_quiet_moment_ends_by_itself(bridge: Bridge, inbox: Inbox, raw: RawPublisher) -> None:
    bridge.quiet.open(0.3)
    raw.publish(TOPICS.ack("st-3"), ack_payload("c-later"))
    got = wait_until(lambda: inbox.select("ack", "st-3"), what="the ack after the moment")
    assert isinstance(got[0].message, Ack)
    assert bridge.stats().received >= 1
