"""Per-station credentials against a real Mosquitto with the dynamic-security plugin.

One broker per module, configured by ``broadcaster.broker.bootstrap`` (anonymous off,
the service account and its roles); stations come from the Tân An registry and get
their accounts through ``provisioning``.  A 'forbidden message never arrives' is
checked with a barrier: the same publisher then sends an allowed message, and once
that one is in, the forbidden one would have been too (MQTT keeps per-publisher order).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.broker import dynsec as ds
from broadcaster.broker import provisioning as prov
from broadcaster.broker.bootstrap import find_dynsec_plugin
from broadcaster.broker.dynsec import (
    Command,
    DynsecClient,
    Reply,
    anonymous_allowed,
)
from broadcaster.broker.exceptions import ReservedStationId
from broadcaster.broker.service import check_broker
from broadcaster.settings import Settings
from firmware_bridge.messages import Command as LoaCommand
from firmware_bridge.messages import Telemetry, dump_message, utcnow
from firmware_bridge.topics import Topics
from stations import service as stations_service
from stations import tan_an
from stations.schemas import GroupCreate, StationUpdate
from tests.support.dynsec_broker import DynsecBroker, Peer
from tests.support.mosquitto import requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic-security plugin"),
]

T = Topics()
A, B = "lbn-cau-tre", "bt-1"  # in xa-loi-binh-nhon and xa-binh-tam
NOT_AUTHORIZED = 0x87


@pytest.fixture
def dynsec(dynsec_broker: DynsecBroker) -> Iterator[DynsecClient]:
    with DynsecClient(dynsec_broker.url) as client:
        yield client


@pytest.fixture
def registry(session_factory: sessionmaker[Session], dynsec: DynsecClient) -> None:
    """Tân An in a fresh database, and the broker cleared of earlier tests' stations."""
    with db.session_scope(session_factory) as session:
        stations_service.ensure_builtin_groups(session)
        tan_an.load(session)
    sync(session_factory, dynsec)


def issue(factory: sessionmaker[Session], dynsec: DynsecClient, *sids: str) -> dict[str, str]:
    with factory() as session:
        stations = [stations_service.get_station(session, sid) for sid in sids]
        issued = prov.issue_credentials(
            session, dynsec, stations, topics=T, issued_by="test", server_account="broadcaster"
        )
        session.commit()
    return {i.sid: i.password for i in issued}


def sync(factory: sessionmaker[Session], dynsec: DynsecClient) -> prov.SyncReport:
    with factory() as session:
        return prov.sync(session, dynsec, topics=T, server_account="broadcaster")


def station(dynsec_broker: DynsecBroker, sid: str, password: str, **kwargs: object) -> Peer:
    return dynsec_broker.peer(sid, password, client_id=f"st-{sid}", **kwargs)  # type: ignore[arg-type]


def server(dynsec_broker: DynsecBroker) -> Peer:
    service = dynsec_broker.service
    return dynsec_broker.peer(
        service.username, service.password, client_id=f"srv-{secrets.token_hex(3)}"
    )


def telemetry(seq: int = 0) -> bytes:
    return dump_message(Telemetry(seq=seq, at=utcnow(), uptime_s=5, volume=70, playing=None))


def ping() -> bytes:
    return dump_message(LoaCommand.new("ping"))


def test_anonymous_clients_are_refused(dynsec_broker: DynsecBroker) -> None:
    assert anonymous_allowed(f"mqtt://{dynsec_broker.host}:{dynsec_broker.port}") is False
    reason = dynsec_broker.peer(None, None).connect()
    assert reason.is_failure
    wrong = dynsec_broker.peer("broadcaster", "not-the-password").connect()
    assert wrong.is_failure
    # the production check passes for this dynsec_broker, and fails for a URL without account
    strict = Settings(environment="production", secret_key="k" * 40, mqtt_url=dynsec_broker.url)
    assert check_broker(strict) == []
    bare = Settings(mqtt_url=f"mqtt://{dynsec_broker.host}:{dynsec_broker.port}")
    assert any("no service account" in p for p in check_broker(bare, strict=False))


@pytest.mark.usefixtures("registry")
def test_station_cannot_publish_on_another_stations_topics(
    dynsec_broker: DynsecBroker,
    dynsec: DynsecClient,
    session_factory: sessionmaker[Session],
    dynsec_recorder: Recorder,
) -> None:
    secrets_ = issue(session_factory, dynsec, A, B)
    a5 = station(dynsec_broker, A, secrets_[A]).ok()
    try:
        for leaf in ("state", "reported", "ack", "event", "telemetry", "desired", "cmd"):
            reason = a5.publish(f"loa/v1/st/{B}/{leaf}", telemetry())
            assert reason is not None
            assert reason.value == NOT_AUTHORIZED, leaf
        for topic in ("loa/v1/server/state", "loa/v1/grp/all/cmd", "loa/v1/grp/xa-binh-tam/cmd"):
            reason = a5.publish(topic, ping())
            assert reason is not None
            assert reason.value == NOT_AUTHORIZED, topic
        # its own telemetry goes through (QoS 0 as the protocol says, and QoS 1)
        a5.publish(T.telemetry(A), telemetry(1), qos=0)
        assert a5.publish(T.telemetry(A), telemetry(2)) is not None
        dynsec_recorder.wait_for("telemetry", sid=A, count=2)
    finally:
        a5.close()
    # MQTT 3.1.1 (cheap 4G modules): the broker drops the message silently
    a3 = station(dynsec_broker, A, secrets_[A], protocol=mqtt.MQTTv311).ok()
    try:
        a3.publish(T.telemetry(B), telemetry(9))
        a3.publish(T.telemetry(A), telemetry(3))
        dynsec_recorder.wait_for("telemetry", sid=A, where=lambda d: d["seq"] == 3)
    finally:
        a3.close()
    assert dynsec_recorder.select(sid=B) == []


@pytest.mark.usefixtures("registry")
def test_station_cannot_subscribe_to_another_stations_cmd(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A, B)
    a = station(dynsec_broker, A, secrets_[A]).ok()
    a3 = dynsec_broker.peer(A, secrets_[A], client_id=f"st-{A}", protocol=mqtt.MQTTv311)
    b = station(dynsec_broker, B, secrets_[B]).ok()
    srv = server(dynsec_broker).ok()
    try:
        for topic in (T.cmd(B), T.desired(B), "loa/v1/st/+/cmd", "loa/v1/#", "loa/v1/grp/+/cmd"):
            (code,) = a.subscribe(topic)
            assert code.value == NOT_AUTHORIZED, topic
        assert a.subscribe(T.cmd(A))[0].value == 1
        assert b.subscribe(T.cmd(B))[0].value == 1
        srv.publish(T.cmd(B), ping())
        srv.publish(T.cmd(A), ping())
        a.wait_message(T.cmd(A))
        b.wait_message(T.cmd(B))
        assert a.received(T.cmd(B)) == []
        a.close()
        # MQTT 3.1.1: SUBACK 0x80
        a3.ok()
        (code,) = a3.subscribe(T.cmd(B))
        assert code.is_failure
    finally:
        for peer in (a3, b, srv):
            peer.close()


@pytest.mark.usefixtures("registry")
def test_station_receives_its_groups_commands_and_no_others(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A)
    a = station(dynsec_broker, A, secrets_[A]).ok()
    srv = server(dynsec_broker).ok()
    try:
        for topic in (
            T.group_cmd("all"),
            T.group_cmd("xa-loi-binh-nhon"),
            T.server_state(),
            T.desired(A),
        ):
            assert not a.subscribe(topic)[0].is_failure, topic
        assert a.subscribe(T.group_cmd("xa-binh-tam"))[0].is_failure
        srv.publish(T.group_cmd("xa-binh-tam"), ping())
        srv.publish(T.group_cmd("all"), ping())
        srv.publish(T.group_cmd("xa-loi-binh-nhon"), ping())
        a.wait_message(T.group_cmd("xa-loi-binh-nhon"))
        assert len(a.received(T.group_cmd("all"))) == 1
        assert a.received(T.group_cmd("xa-binh-tam")) == []
    finally:
        a.close()
        srv.close()


@pytest.mark.usefixtures("registry")
def test_server_account_scope(dynsec_broker: DynsecBroker) -> None:
    srv = server(dynsec_broker).ok()
    try:
        for leaf in ("state", "reported", "ack", "event", "telemetry"):
            assert not srv.subscribe(f"loa/v1/st/+/{leaf}")[0].is_failure
        assert not srv.subscribe(T.server_state())[0].is_failure
        assert srv.subscribe("#")[0].is_failure
        assert srv.subscribe("$CONTROL/#")[0].is_failure
        # it publishes desired/cmd/group cmd/server state, but cannot speak as a station
        assert srv.publish(T.cmd(A), ping()).value == 0
        assert srv.publish(T.group_cmd("all"), ping()).value == 0
        assert srv.publish(T.state(A), b'{"online": false, "bdseq": 0}').value == NOT_AUTHORIZED
        assert srv.publish(T.telemetry(A), telemetry()).value == NOT_AUTHORIZED
    finally:
        srv.close()


@pytest.mark.usefixtures("registry")
def test_disabled_station_is_disconnected_and_refused_then_restored(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A)
    a = station(dynsec_broker, A, secrets_[A]).ok()
    with db.session_scope(session_factory) as session:
        stations_service.update_station(session, A, StationUpdate(enabled=False))
    report = sync(session_factory, dynsec)
    assert report.commands == {"disableClient": 1}
    assert a.disconnected.wait(5), "a disabled station keeps its connection"
    a.close()
    refused = station(dynsec_broker, A, secrets_[A]).connect()
    assert refused.is_failure
    # re-enabling restores access with the same secret
    with db.session_scope(session_factory) as session:
        stations_service.update_station(session, A, StationUpdate(enabled=True))
    assert sync(session_factory, dynsec).commands == {"enableClient": 1}
    station(dynsec_broker, A, secrets_[A]).ok().close()


@pytest.mark.usefixtures("registry")
def test_rotation_invalidates_the_old_secret(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    old = issue(session_factory, dynsec, A)[A]
    a = station(dynsec_broker, A, old).ok()
    new = issue(session_factory, dynsec, A)[A]
    assert new != old
    assert a.disconnected.wait(5), "the old session survives a rotation"
    a.close()
    assert station(dynsec_broker, A, old).connect().is_failure
    station(dynsec_broker, A, new).ok().close()


@pytest.mark.usefixtures("registry")
def test_station_is_bound_to_its_client_id(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A, B)
    b = station(dynsec_broker, B, secrets_[B]).ok()
    try:
        # A cannot take over B's session (MQTT kicks the older connection of a client id)
        hijack = dynsec_broker.peer(A, secrets_[A], client_id=f"st-{B}").connect()
        assert hijack.is_failure
        assert not b.disconnected.is_set()
    finally:
        b.close()


@pytest.mark.usefixtures("registry")
def test_sync_is_idempotent_cheap_and_follows_groups(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A, B)

    sent: list[list[Command]] = []

    class Counting:
        username = dynsec.username

        def execute(self, commands: list[Command]) -> list[Reply]:
            sent.append(list(commands))
            return dynsec.execute(commands)

        def reconnect(self) -> None:
            dynsec.reconnect()

    with session_factory() as session:
        report = prov.sync(session, Counting(), topics=T, server_account="broadcaster")
    assert not report.changed
    assert report.stations == 2
    assert report.missing == []
    assert [[c["command"] for c in batch] for batch in sent] == [["listClients", "listRoles"]]

    # A joins a new group: its role gains the group's topics, it is kicked to re-subscribe
    a = station(dynsec_broker, A, secrets_[A], protocol=mqtt.MQTTv311, clean=False).ok()
    with db.session_scope(session_factory) as session:
        stations_service.create_group(
            session, GroupCreate(gid="loa-thong-minh", name="Loa thông minh", stations=[A])
        )
    report = sync(session_factory, dynsec)
    assert report.commands == {"addRoleACL": 2, "setClientId": 1}
    assert a.disconnected.wait(5), "a re-grouped station is not made to re-subscribe"
    a.close()
    a = station(dynsec_broker, A, secrets_[A], protocol=mqtt.MQTTv311, clean=False).ok()
    srv = server(dynsec_broker).ok()
    try:
        assert not a.subscribe(T.group_cmd("loa-thong-minh"))[0].is_failure
        srv.publish(T.group_cmd("loa-thong-minh"), ping())
        a.wait_message(T.group_cmd("loa-thong-minh"))
        a.close()
        # ...and leaves it: the persistent subscription stays, but delivery is refused
        with db.session_scope(session_factory) as session:
            stations_service.delete_group(session, "loa-thong-minh")
        assert sync(session_factory, dynsec).commands == {"removeRoleACL": 2}
        a = station(dynsec_broker, A, secrets_[A], protocol=mqtt.MQTTv311, clean=False).ok()
        srv.publish(T.group_cmd("loa-thong-minh"), ping())
        srv.publish(T.cmd(A), ping())
        assert not a.subscribe(T.cmd(A))[0].is_failure
        srv.publish(T.cmd(A), ping())
        a.wait_message(T.cmd(A))
        assert len(a.received(T.group_cmd("loa-thong-minh"))) == 0
    finally:
        a.close()
        srv.close()
    assert not sync(session_factory, dynsec).changed


@pytest.mark.usefixtures("registry")
def test_deleted_station_and_revoked_credentials_lose_their_account(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    secrets_ = issue(session_factory, dynsec, A, B)
    a = station(dynsec_broker, A, secrets_[A]).ok()
    with db.session_scope(session_factory) as session:
        stations_service.delete_station(session, A)
    report = sync(session_factory, dynsec)
    assert report.commands["deleteClient"] >= 1
    assert report.commands["deleteRole"] >= 1
    assert a.disconnected.wait(5)
    a.close()
    assert station(dynsec_broker, A, secrets_[A]).connect().is_failure
    assert prov.station_role(A) not in prov.broker_view(dynsec).roles

    with session_factory() as session:
        assert prov.revoke_credentials(session, dynsec, stations_service.get_station(session, B))
        session.commit()
        assert prov.credential_of(session, stations_service.get_station(session, B)) is None
    assert station(dynsec_broker, B, secrets_[B]).connect().is_failure
    assert not sync(session_factory, dynsec).changed


@pytest.mark.usefixtures("registry")
def test_broker_reset_is_reported_for_reissue(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    issue(session_factory, dynsec, A)
    ds.run(dynsec, [ds.delete_client(A)])  # e.g. a broker rebuilt from an old file
    report = sync(session_factory, dynsec)
    assert report.missing == [A]
    assert "re-issue" in report.summary()
    issue(session_factory, dynsec, A)
    assert sync(session_factory, dynsec).missing == []


@pytest.mark.usefixtures("registry")
def test_server_account_roles_are_reconciled(
    dynsec_broker: DynsecBroker, dynsec: DynsecClient, session_factory: sessionmaker[Session]
) -> None:
    username = dynsec.username
    assert username == "broadcaster"
    assert not prov.ensure_server_account(dynsec, topics=T, username=username)
    other = Topics("tan-an/loa/v1")
    try:
        # changing our own role (may drop our connection before the answer: handled)
        assert prov.ensure_server_account(dynsec, topics=other, username=username)
        roles = prov.broker_view(dynsec).roles
        assert roles[prov.SERVER_ROLE].acls == prov.server_acls(other)
    finally:
        prov.ensure_server_account(dynsec, topics=T, username=username)
    assert prov.broker_view(dynsec).roles[prov.SERVER_ROLE].acls == prov.server_acls(T)
    with session_factory() as session:
        named_like_us = stations_service.get_station(session, A)
        with pytest.raises(ReservedStationId):
            prov.issue_credentials(
                session, dynsec, [named_like_us], topics=T, issued_by="t", server_account=A
            )


def test_bootstrap_config_runs_as_is(tmp_path: Path) -> None:
    """The generated mosquitto.conf itself starts a broker that refuses anonymous clients."""
    import time

    from broadcaster.broker.bootstrap import bootstrap
    from tests.support.mosquitto import find_mosquitto, free_port
    from tests.support.process import ChildProcess

    port = free_port()
    setup = bootstrap(tmp_path / "mosquitto", port=port)
    binary = find_mosquitto()
    assert binary
    proc = ChildProcess([binary, "-c", str(setup.config_path)], log_path=tmp_path / "run.log")
    with proc:
        deadline = time.monotonic() + 10
        while True:
            try:
                allowed = anonymous_allowed(f"mqtt://127.0.0.1:{port}", timeout_s=2)
                break
            except Exception:
                if time.monotonic() > deadline or not proc.running:
                    raise
                time.sleep(0.1)
        assert allowed is False
        with DynsecClient(setup.mqtt_url) as client:
            assert set(prov.broker_view(client).clients) == {"broadcaster"}
        assert (tmp_path / "mosquitto" / "mosquitto.log").exists()


@pytest.mark.usefixtures("registry")
def test_a_station_disabled_by_spreadsheet_import_loses_its_access(
    dynsec_broker: DynsecBroker,
    dynsec: DynsecClient,
    session_factory: sessionmaker[Session],
    database_url: str,
    tmp_path: Path,
) -> None:
    """Issue 15, defect 7: ``broadcaster stations import`` stored ``enabled=false`` but
    neither bumped the plan nor revoked the broker account (the API's PATCH does both).
    Now the import records the change (audit + plan signal, which the worker follows)
    and takes the station's access at once."""
    from sqlalchemy import select

    from kernel.audit import AuditEntry
    from kernel.signals import current
    from tests.support.service import run_cli, service_env

    secrets_ = issue(session_factory, dynsec, A)
    a = station(dynsec_broker, A, secrets_[A]).ok()
    with session_factory() as session:
        generation_before = current(session)[0]
    csv_file = tmp_path / "disable.csv"
    csv_file.write_text(
        f"sid,name,kind,area_code,enabled\n{A},Trạm Cầu Tre,hamlet,lbn-cau-tre,false\n",
        encoding="utf-8",
    )
    env = service_env(
        database_url=database_url,
        mqtt_url=dynsec_broker.url,
        media_dir=tmp_path / "media",
        public_base_url="http://127.0.0.1:9",
        extra={"BROADCASTER_MQTT_DYNSEC": "true"},
    )
    output = run_cli(["stations", "import", str(csv_file)], env)
    assert "1 were disabled" in output
    assert a.disconnected.wait(5), "the disabled station keeps its connection"
    a.close()
    assert station(dynsec_broker, A, secrets_[A]).connect().is_failure
    with session_factory() as session:
        assert current(session)[0] > generation_before  # the worker rebuilds the plans
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "station.import")
        ).one()
        assert entry.after is not None
        assert entry.after["disabled"] == [A]
    # and the worker's own sync agrees (nothing left to do)
    assert sync(session_factory, dynsec).commands == {}
