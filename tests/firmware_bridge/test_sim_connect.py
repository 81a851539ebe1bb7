"""Station behaviour rule 1 (connect, birth, bdseq) and the connection table."""

from __future__ import annotations

import subprocess
from pathlib import Path

from firmware_bridge.messages import Command, dump_message
from firmware_bridge.simulator import SimSettings
from firmware_bridge.topics import Topics
from tests.support.loa import FAST, FleetFactory, RawPublisher, wait_until
from tests.support.mosquitto import Mosquitto, dynsec_init, requires_mosquitto
from tests.support.mqtt311_proxy import Mqtt311Proxy
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def births(recorder: Recorder, sid: str) -> list[dict[str, object]]:
    return [r.data for r in recorder.select("station-state", sid, lambda d: d["online"])]


def test_birth_then_bdseq_plus_one_on_every_connect_across_restarts(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory
) -> None:
    fleet = make_fleet(broker, ["st-1", "st-2"])
    first = recorder.wait_for("station-state", "st-1", lambda d: d["online"])[0].data
    assert first == {
        "online": True,
        "bdseq": 0,
        "at": first["at"],
        "firmware": "sim-0.1.0",
        "model": "loa-sim",
        "capabilities": list(SimSettings().capabilities),  # all the simulator has
        "desired_version": None,
    }
    fleet.restart("st-1")  # a reboot within the same process
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1)
    fleet.stop()  # clean stop: each station publishes its own death
    deaths = recorder.wait_for("station-state", "st-1", lambda d: not d["online"])
    assert deaths[-1].data == {"online": False, "bdseq": 1}
    again = make_fleet(broker, ["st-1", "st-2"])  # a new process, same state directory
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 2)
    recorder.wait_for("station-state", "st-2", lambda d: d["online"] and d["bdseq"] == 1)
    status = again.station("st-1")
    assert status.online
    assert status.bdseq == 2
    assert status.protocol == "5"
    assert [b["bdseq"] for b in births(recorder, "st-1")] == [0, 1, 2]


def test_station_subscribes_before_its_birth(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory, raw: RawPublisher
) -> None:
    make_fleet(broker, ["st-1", "st-2"])
    recorder.wait_for("station-state", where=lambda d: d["online"], count=2)
    # Birth is published after SUBACK, so a command right after it is never lost.
    for topic in (TOPICS.cmd("st-1"), TOPICS.group_cmd("all")):
        raw.publish(topic, dump_message(Command.new("ping", cmd_id=f"c-{topic.count('grp')}")))
    recorder.wait_for("ack", "st-1", lambda d: d["status"] == "SUCCEEDED", count=2)
    recorder.wait_for("ack", "st-2", lambda d: d["status"] == "SUCCEEDED", count=1)


def test_power_loss_silent_socket_fires_the_will_after_keepalive(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory
) -> None:
    settings = SimSettings(keepalive=2, protocol="3.1.1", reconnect_min_s=0.2, reconnect_max_s=1)
    fleet = make_fleet(broker, ["st-1"], settings=settings)
    recorder.wait_for("station-state", "st-1", lambda d: d["online"])
    fleet.kill("st-1")  # socket frozen: no DISCONNECT, no FIN, no more pings
    death = recorder.wait_for("station-state", "st-1", lambda d: not d["online"], timeout_s=15)
    assert death[0].data == {"online": False, "bdseq": 0}
    assert not fleet.station("st-1").alive
    late = Recorder(broker.host, broker.port, client_id="late").start()
    try:
        retained = late.wait_for("station-state", "st-1")[0]
        assert retained.retain
        assert retained.data == {"online": False, "bdseq": 0}
    finally:
        late.stop()
    fleet.restart("st-1")
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1)


def test_dropped_link_on_mqtt5_fires_the_will_after_its_delay(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory
) -> None:
    fleet = make_fleet(broker, ["st-1"])
    recorder.wait_for("station-state", "st-1", lambda d: d["online"])
    fleet.kill("st-1", mode="abort")  # TCP closed without DISCONNECT
    death = recorder.wait_for("station-state", "st-1", lambda d: not d["online"], timeout_s=20)
    assert death[0].data == {"online": False, "bdseq": 0}
    log = broker.read_log()
    assert "st-st-1" in log


def test_link_flap_reconnects_within_the_will_delay_without_a_death(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory
) -> None:
    fleet = make_fleet(broker, ["st-1"])
    recorder.wait_for("station-state", "st-1", lambda d: d["online"])
    fleet.drop_link("st-1")
    recorder.wait_for("station-state", "st-1", lambda d: d["online"] and d["bdseq"] == 1)
    assert fleet.station("st-1").connects == 2
    assert recorder.select("station-state", "st-1", lambda d: not d["online"]) == []


def test_per_station_passwords(tmp_path: Path, make_fleet: FleetFactory) -> None:
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "st-1", "s3cret"], check=True)
    server = Mosquitto(
        tmp_path / "auth",
        allow_anonymous=False,
        extra_config=[f"password_file {passwd}"],
    ).start()
    try:
        good = make_fleet(server, ["st-1"], passwords={"st-1": "s3cret"})
        assert good.station("st-1").online
        bad = make_fleet(server, ["st-1"], passwords={"st-1": "wrong"}, wait_online=False)
        assert not bad.wait_online(timeout_s=1.5)
        assert bad.station("st-1").connects == 0
        bad.stop()
        good.stop()
    finally:
        server.stop()


def test_stations_fall_back_to_mqtt_311(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory
) -> None:
    proxy = Mqtt311Proxy(broker.host, broker.port).start()
    try:
        via_proxy = Mosquitto(broker.workdir, port=proxy.port)  # only for its URL
        fleet = make_fleet(via_proxy, ["st-1"], settings=FAST)
        assert fleet.station("st-1").protocol == "3.1.1"
        assert proxy.refused_v5 >= 1
        recorder.wait_for("station-state", "st-1", lambda d: d["online"])
        fleet.stop()
        recorder.wait_for("station-state", "st-1", lambda d: not d["online"])
    finally:
        proxy.stop()


def test_persistent_session_queues_commands_while_offline(
    persistent_broker: Mosquitto, persistent_recorder: Recorder, make_fleet: FleetFactory
) -> None:
    fleet = make_fleet(persistent_broker, ["st-1"])
    fleet.kill("st-1", mode="abort")
    publisher = RawPublisher(persistent_broker, client_id="srv-test")
    try:
        publisher.publish(TOPICS.cmd("st-1"), dump_message(Command.new("ping", cmd_id="c-q")))
    finally:
        publisher.stop()
    fleet.restart("st-1")
    acks = persistent_recorder.wait_for("ack", "st-1", lambda d: d["cmd_id"] == "c-q", count=3)
    assert [a.data["status"] for a in acks] == ["RECEIVED", "IN_PROGRESS", "SUCCEEDED"]
    wait_until(lambda: fleet.station("st-1").online)


def test_dynamic_security_credentials_and_acls(tmp_path: Path, make_fleet: FleetFactory) -> None:
    lines = dynsec_init(tmp_path / "dynsec.json", "admin", "adminpw")
    server = Mosquitto(tmp_path / "dynsec", allow_anonymous=False, extra_config=lines).start()
    admin = ("admin", "adminpw")
    try:
        server.ctrl(*admin, "dynsec", "createClient", "st-1", "-p", "s3cret", "-c", "st-st-1")
        server.ctrl(*admin, "dynsec", "createRole", "station-st-1")
        for acl in (
            ("publishClientSend", "loa/v1/st/st-1/#"),
            ("subscribePattern", "loa/v1/st/st-1/cmd"),
            ("subscribePattern", "loa/v1/st/st-1/desired"),
            ("subscribePattern", "loa/v1/server/state"),
            ("subscribePattern", "loa/v1/grp/+/cmd"),
        ):
            server.ctrl(*admin, "dynsec", "addRoleACL", "station-st-1", *acl, "allow")
        server.ctrl(*admin, "dynsec", "addClientRole", "st-1", "station-st-1")
        server.ctrl(*admin, "dynsec", "createClient", "srv", "-p", "srvpw")
        server.ctrl(*admin, "dynsec", "createRole", "server")
        server.ctrl(
            *admin, "dynsec", "addRoleACL", "server", "subscribePattern", "loa/v1/#", "allow"
        )
        server.ctrl(*admin, "dynsec", "addClientRole", "srv", "server")
        recorder = Recorder(
            server.host, server.port, client_id="srv-rec", username="srv", password="srvpw"
        ).start()
        try:
            fleet = make_fleet(server, ["st-1"], passwords={"st-1": "s3cret"})
            recorder.wait_for("station-state", "st-1", lambda d: d["online"])
            recorder.wait_for("telemetry", "st-1")
            fleet.stop()
            recorder.wait_for("station-state", "st-1", lambda d: not d["online"])
        finally:
            recorder.stop()
        recorder.assert_all_valid()
    finally:
        server.stop()
