"""Station accounts on a real 3-node NATS Server cluster (MQTT gateway + JetStream).

The provisioning code is the one used with Mosquitto; :class:`NatsAuth` is the backend.
The cluster is started by the test on free ports (:mod:`tests.support.nats_cluster`).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.broker import dynsec as ds
from broadcaster.broker import provisioning as prov
from broadcaster.broker import service as service_module
from broadcaster.broker.dynsec import Acl, AclType
from broadcaster.broker.exceptions import BrokerUnavailable
from broadcaster.broker.nats_auth import NatsAuth, render_authorization, topic_subject
from broadcaster.broker.service import init_nats_auth
from broadcaster.settings import Settings
from firmware_bridge.messages import Ack, Command, dump_message, utcnow
from firmware_bridge.simulator import FleetConfig, FleetThread, StationSpec
from firmware_bridge.topics import TopicKind, Topics
from stations import service as stations_service
from stations import tan_an
from tests.support.dynsec_broker import Peer
from tests.support.live import send_broadcast, start_live
from tests.support.loa import FAST, desired, wait_until
from tests.support.nats_cluster import NatsCluster, requires_nats_server
from tests.support.protocol import Recorder

pytestmark = [requires_nats_server()]

T = Topics()
A, B = "lbn-cau-tre", "bt-1"
SERVICE = "broadcaster"


#: How long a test waits for the cluster to serve again after a node was killed: only a
#: bound so a broken failover fails instead of hanging.  JetStream elects new leaders for
#: the streams the dead node led within seconds on a quiet machine (the first connect
#: after the kill waits out its CONNACK timeout, the next one is served); a CI run with
#: other clusters, brokers and PostgreSQL on the same two cores once took longer than the
#: 45 s this used to be.
FAILOVER_S = 120.0
#: A connect attempt's wait for CONNACK during a failover (a node that holds the CONNECT
#: while its session stream has no leader answers the next attempt instead).
FAILOVER_CONNACK_S = 5.0


@dataclass
class Cluster:
    nats: NatsCluster
    auth: NatsAuth
    password: str
    observer_password: str

    def peer(
        self,
        node: int,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        clean: bool = True,
    ) -> Peer:
        return Peer(
            self.nats.host,
            self.nats.nodes[node].mqtt_port,
            username=username,
            password=password,
            client_id=client_id or f"peer-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv311,
            clean=clean,
        )

    def peer_after_failover(
        self, node: int, username: str, password: str, *, client_id: str, clean: bool
    ) -> Peer:
        """Connect as a station does after losing its node: retry until the cluster
        answers (the streams the dead node led elect new leaders first, seconds)."""
        deadline = time.monotonic() + FAILOVER_S
        while True:
            peer = self.peer(node, username, password, client_id=client_id, clean=clean)
            try:
                if not peer.connect(FAILOVER_CONNACK_S).is_failure:
                    return peer
            except AssertionError:
                pass  # the node closed the connection without a CONNACK
            peer.close()
            assert time.monotonic() < deadline, "the cluster did not serve after the failover"
            time.sleep(0.5)

    def change(self, commands: list[ds.Command]) -> None:
        before = self.nats.config_loads()
        ds.run(self.auth, commands)
        self.nats.wait_reloaded(before)


def nats_settings(
    settings: Settings, cluster: NatsCluster, auth_file: Path, password: str
) -> Settings:
    return settings.model_copy(
        update={
            "mqtt_url": cluster.url(SERVICE, password),
            "mqtt_dynsec": True,
            "mqtt_nats_auth_file": auth_file,
            "mqtt_nats_pid_files": ",".join(str(p) for p in cluster.pid_files),
        }
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("nats")
    auth_file = tmp / "auth" / "loa-auth.conf"
    nats = NatsCluster(tmp / "cluster", auth_file)
    password = secrets.token_urlsafe(16)
    base = Settings(mqtt_url="mqtt://127.0.0.1:1")
    auth = init_nats_auth(nats_settings(base, nats, auth_file, password))
    observer = secrets.token_urlsafe(16)
    ds.run(
        NatsAuth(auth_file),  # no node runs yet: no reload
        [
            ds.create_role("test-observer", [Acl(AclType.SUBSCRIBE_PATTERN, "loa/v1/#")]),
            ds.create_client("observer", observer, roles=["test-observer"]),
        ],
    )
    nats.start()
    try:
        yield Cluster(nats, auth, password, observer)
    finally:
        nats.stop()


def _subscribe_after_failover(peer: Peer, topic: str) -> None:
    """Subscribe, retrying while the cluster still elects leaders after a node died
    (NATS answers SUBACK 0x80 when it cannot create the JetStream consumer in time)."""
    deadline = time.monotonic() + FAILOVER_S
    while peer.subscribe(topic, timeout_s=15)[0].is_failure:
        assert time.monotonic() < deadline, f"cannot subscribe to {topic} after the failover"
        time.sleep(0.5)


def _seed(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        stations_service.ensure_builtin_groups(session)
        tan_an.load(session)


def _issue(cluster: Cluster, factory: sessionmaker[Session], sids: list[str]) -> dict[str, str]:
    before = cluster.nats.config_loads()
    with factory() as session:
        issued = prov.issue_credentials(
            session,
            cluster.auth,
            [stations_service.get_station(session, s) for s in sids],
            topics=T,
            issued_by="test",
            server_account=SERVICE,
        )
        session.commit()
    cluster.nats.wait_reloaded(before)
    return {i.sid: i.password for i in issued}


def test_topics_map_to_nats_subjects() -> None:
    assert topic_subject("loa/v1/st/bt-1/ack") == ["loa.v1.st.bt-1.ack"]
    assert topic_subject("loa/v1/st/+/desired") == ["loa.v1.st.*.desired"]
    assert topic_subject("loa/v1/st/#") == ["loa.v1.st", "loa.v1.st.>"]
    assert topic_subject("a.b/c") == ["a//b.c"]
    for bad in ("/x", "x/", "a//b", "a b"):
        with pytest.raises(ValueError, match="NATS cannot map"):
            topic_subject(bad)


def test_rendered_users_always_carry_permissions() -> None:
    # nats-server 2.9.10 crashes on reload when a user without permissions meets
    # retained MQTT messages: every user gets explicit ones, deny-all when it has none
    text = render_authorization(
        {"clients": {"x": {"password_hash": "$2a$06$abc", "roles": []}}, "roles": {}}
    )
    (user,) = json.loads(text.split("authorization ", 1)[1])["users"]
    assert user["permissions"] == {"publish": {"deny": [">"]}, "subscribe": {"deny": [">"]}}
    assert user["allowed_connection_types"] == ["MQTT"]


def test_a_stale_pid_file_naming_another_process_is_not_signalled(tmp_path: Path) -> None:
    """A node killed without removing its PID file: its number may belong to another
    process by now, which a reload's SIGHUP would stop."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        stale = tmp_path / "n1.pid"
        stale.write_text(f"{other.pid}\n")
        with pytest.raises(BrokerUnavailable, match="no NATS node runs"):
            NatsAuth(tmp_path / "auth.conf", [stale]).reload()
        assert other.poll() is None, "the other process was not signalled"
    finally:
        other.kill()
        other.wait()


def test_station_accounts_and_topic_permissions_hold_on_the_cluster(
    cluster: Cluster, session_factory: sessionmaker[Session]
) -> None:
    _seed(session_factory)
    secrets_ = _issue(cluster, session_factory, [A, B])
    service = cluster.peer(0, SERVICE, cluster.password).ok()
    assert not service.subscribe("loa/v1/st/#")[0].is_failure
    a = cluster.peer(1, A, secrets_[A], client_id=f"st-{A}").ok()
    assert not a.subscribe(T.desired(A))[0].is_failure
    assert not a.subscribe(T.cmd(A))[0].is_failure
    # another station's topics: refused
    assert a.subscribe(T.desired(B))[0].is_failure
    assert a.subscribe("loa/v1/st/#")[0].is_failure
    assert a.subscribe("$MQTT/sub/#")[0].is_failure  # NATS's internal delivery subjects
    # a station cannot publish under another's sid: the message goes nowhere
    a.publish(T.ack(B), b'{"forged": true}')
    a.publish(T.ack(A), b'{"own": true}')
    assert service.wait_message(T.ack(A)) == b'{"own": true}'
    time.sleep(0.5)
    assert service.received(T.ack(B)) == []
    # nor on the service's topics
    a.publish(T.desired(B), b"{}", retain=True)
    a.publish(T.server_state(), b"{}", retain=True)
    time.sleep(0.5)
    assert service.received(T.desired(B)) == []
    # wrong secret, or B's secret with A's name: refused
    assert cluster.peer(2, A, "wrong").connect().is_failure
    assert cluster.peer(2, A, secrets_[B]).connect().is_failure
    # the station's secret does not open the NATS protocol port
    node = cluster.nats.nodes[0]
    with socket.create_connection((cluster.nats.host, node.client_port), 5) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(
            b'CONNECT {"user":"%s","pass":"%s","verbose":false}\r\nPING\r\n'
            % (A.encode(), secrets_[A].encode())
        )
        assert b"Authorization Violation" in sock.recv(4096)
    # a registry sync finds nothing to change
    with session_factory() as session:
        report = prov.sync(session, cluster.auth, topics=T, server_account=SERVICE)
    assert not report.changed, report.summary()
    # rotation: the old secret stops working, the station is cut off
    rotated = _issue(cluster, session_factory, [A])
    assert a.disconnected.wait(10)
    assert cluster.peer(0, A, secrets_[A]).connect().is_failure
    cluster.peer(0, A, rotated[A]).ok().close()
    # revocation
    before = cluster.nats.config_loads()
    with session_factory() as session:
        assert prov.revoke_credentials(
            session, cluster.auth, stations_service.get_station(session, A)
        )
        session.commit()
    cluster.nats.wait_reloaded(before)
    assert cluster.peer(1, A, rotated[A]).connect().is_failure
    service.close()


def test_retained_desired_and_queued_commands_and_acks_survive_a_node_kill(
    cluster: Cluster, session_factory: sessionmaker[Session]
) -> None:
    _seed(session_factory)
    secret = _issue(cluster, session_factory, [B])[B]
    # B's and the service's persistent sessions are made on node 0
    b = cluster.peer(0, B, secret, client_id=f"st-{B}", clean=False).ok()
    assert not b.subscribe(T.cmd(B))[0].is_failure
    service = cluster.peer(0, SERVICE, cluster.password, client_id="srv-test", clean=False).ok()
    assert not service.subscribe(T.station_filter(TopicKind.ACK))[0].is_failure
    state = dump_message(desired(7, now=utcnow()))
    ping = Command.new("ping", ttl_s=600)
    service.publish(T.desired(B), state, retain=True)
    service.close()
    # while the service is away B acknowledges; then B goes away and is sent a command
    ack = dump_message(Ack(cmd_id=ping.cmd_id, status="RECEIVED", at=utcnow()))
    b.publish(T.ack(B), ack)
    b.close()
    sender = cluster.peer(0, SERVICE, cluster.password).ok()
    sender.publish(T.cmd(B), dump_message(ping))
    sender.close()
    # the node holding both sessions, where everything was published, dies
    cluster.nats.kill(0)
    try:
        b2 = cluster.peer_after_failover(2, B, secret, client_id=f"st-{B}", clean=False)
        assert b2.wait_message(T.cmd(B), 15) == dump_message(ping)
        back = cluster.peer_after_failover(
            1, SERVICE, cluster.password, client_id="srv-test", clean=False
        )
        assert back.wait_message(T.ack(B), 15) == ack
        back.close()
        fresh = cluster.peer(1, B, secret, client_id="st-probe").ok()
        _subscribe_after_failover(fresh, T.desired(B))
        assert fresh.wait_message(T.desired(B), 15) == state
        fresh.close()
        b2.close()
    finally:
        cluster.nats.start_node(0)


def test_service_and_stations_keep_working_when_a_node_is_killed(
    cluster: Cluster, settings: Settings, tmp_path: Path
) -> None:
    """The service (app + worker) and simulated stations with their own credentials on
    the cluster; the node the service is connected to dies between two broadcasts."""
    nats = cluster.nats
    live_settings = nats_settings(settings, nats, cluster.auth.auth_file, cluster.password)
    recorder = Recorder(
        nats.host,
        nats.nodes[2].mqtt_port,  # the node that stays up
        username="observer",
        password=cluster.observer_password,
        client_id=f"rec-{secrets.token_hex(4)}",
    ).start()
    live = start_live(
        live_settings, tmp_path, SimpleNamespace(url=live_settings.mqtt_url), recorder
    )  # type: ignore[arg-type]
    try:
        sids = live.seed()
        lbn = sorted(s for s in sids if s.startswith("lbn-"))
        issued = _issue(cluster, live.factory, lbn)
        fleet = FleetThread(
            FleetConfig(mqtt_url=nats.url(), state_dir=tmp_path / "sim", settings=FAST),
            [StationSpec(sid, password=password) for sid, password in issued.items()],
        )
        live.fleets.append(fleet)
        fleet.start(timeout_s=90)
        wait_until(
            lambda: all((fleet.station(s).desired_version or 0) >= 1 for s in lbn),
            timeout_s=90,
            what="every station applied its desired state",
        )

        def broadcast(text: str) -> tuple[int, str]:
            with live.http() as http:
                made = send_broadcast(
                    http,
                    {
                        "targets": {"stations": lbn},
                        "content": {"text": text},
                        "tier": "emergency",
                        "title": text[:40],
                    },
                )
            return int(made["id"]), str(made["cmd_id"])

        def all_received(broadcast_id: int) -> bool:
            with live.http() as http:
                body = http.get(f"/api/v1/broadcasts/{broadcast_id}?stations=false").json()
            return bool(body["progress"]["received"] == len(lbn))

        first, first_cmd = broadcast("Cảnh báo triều cường lần một.")
        wait_until(lambda: all_received(first), timeout_s=60, what="RECEIVED before the kill")
        connects = {s: fleet.station(s).connects for s in lbn}
        nats.kill(0)  # the service's first address: its bridge is on this node
        second, second_cmd = broadcast("Cảnh báo triều cường lần hai.")
        wait_until(lambda: all_received(second), timeout_s=120, what="RECEIVED after the node kill")
        # the stations that were on the dead node reconnected to a survivor
        moved = [s for s in lbn if fleet.station(s).connects > connects[s]]
        assert all(fleet.station(s).online for s in lbn)
        # every station's retained desired state is still in the cluster
        probe = cluster.peer(1, "observer", cluster.observer_password)
        probe.ok()
        _subscribe_after_failover(probe, "loa/v1/st/+/desired")
        for sid in lbn:
            probe.wait_message(T.desired(sid), 15)
        probe.close()

        # the observer's own QoS 1 subscription (a JetStream consumer) caught up too:
        # both commands reached the broker, each under the one id the API returned
        def command_ids() -> set[str]:
            return {
                r.data["cmd_id"]
                for r in recorder.select("command")
                if r.data and "cmd_id" in r.data
            }

        wait_until(
            lambda: {first_cmd, second_cmd} <= command_ids(),
            timeout_s=60,
            what="both commands recorded under the ids the API returned",
        )
        recorder.assert_all_valid()
        print(f"stations moved to a surviving node: {len(moved)} of {len(lbn)}")
    finally:
        live.stop()
        recorder.stop()
        nats.start_node(0)


def test_a_clustered_broker_url_in_the_settings(tmp_path: Path) -> None:
    url = "mqtt://svc:pw@10.0.0.1:1883,10.0.0.2:1884,[fd00::3]:1885"
    settings = Settings(
        mqtt_url=url,
        mqtt_nats_auth_file=tmp_path / "auth.conf",
        mqtt_nats_pid_files="/run/n1.pid, /run/n2.pid",
    )
    # stations are handed every address, without the service's credentials
    assert settings.mqtt_station_url == "mqtt://10.0.0.1:1883,10.0.0.2:1884,[fd00::3]:1885"
    assert settings.mqtt_nats_pids == [Path("/run/n1.pid"), Path("/run/n2.pid")]
    assert isinstance(service_module.dynsec_client(settings), NatsAuth)
    assert service_module.server_account(settings) == "svc"
    with pytest.raises(ValueError, match="BROADCASTER_MQTT_URL"):
        Settings(mqtt_url="mqtt://h1:1883,")
    with pytest.raises(ValueError, match="BROADCASTER_MQTT_URL"):
        Settings(mqtt_url="mqtt://h1:x,h2:1")
    # the Mosquitto path stays the default
    assert not isinstance(service_module.dynsec_client(Settings()), NatsAuth)
