"""The station simulator with issued credentials, against the dynamic-security broker."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.broker import dynsec as ds
from broadcaster.broker import provisioning as prov
from broadcaster.broker.bootstrap import find_dynsec_plugin
from broadcaster.broker.dynsec import Acl, AclType, DynsecClient
from firmware_bridge.messages import Command, dump_message, utcnow
from firmware_bridge.simulator import FleetConfig, FleetThread, StationSpec
from firmware_bridge.simulator.sources import load_credentials
from firmware_bridge.topics import Topics
from stations import service as stations_service
from stations import tan_an
from tests.support.dynsec_broker import DynsecBroker, start_dynsec_broker
from tests.support.loa import FAST, desired
from tests.support.mosquitto import requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic-security plugin"),
]

T = Topics()
A, B = "lbn-cau-tre", "bt-1"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynsecBroker]:
    started = start_dynsec_broker(tmp_path_factory.mktemp("dynsec-sim"))
    password = secrets.token_urlsafe(16)
    with DynsecClient(started.url) as client:
        ds.run(
            client,
            [
                ds.create_role("test-observer", [Acl(AclType.SUBSCRIBE_PATTERN, "loa/v1/#")]),
                ds.create_client("observer", password, roles=["test-observer"]),
            ],
        )
    started.observer_password = password  # type: ignore[attr-defined]
    yield started
    started.stop()


@pytest.fixture
def recorder(broker: DynsecBroker) -> Iterator[Recorder]:
    rec = Recorder(
        broker.host,
        broker.port,
        username="observer",
        password=broker.observer_password,  # type: ignore[attr-defined]
        client_id=f"rec-{secrets.token_hex(4)}",
    ).start()
    yield rec
    rec.stop()
    rec.assert_all_valid()


def test_simulated_stations_connect_with_issued_credentials(
    broker: DynsecBroker,
    session_factory: sessionmaker[Session],
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    with db.session_scope(session_factory) as session:
        stations_service.ensure_builtin_groups(session)
        tan_an.load(session)
    with DynsecClient(broker.url) as dynsec, session_factory() as session:
        issued = prov.issue_credentials(
            session,
            dynsec,
            [stations_service.get_station(session, s) for s in (A, B)],
            topics=T,
            issued_by="test",
        )
        session.commit()
    # the file format `broadcaster stations credentials` writes and the simulator reads
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({i.sid: i.password for i in issued}))
    secrets_ = load_credentials(creds)
    station_url = f"mqtt://{broker.host}:{broker.port}"  # no user info: each station its own

    config = FleetConfig(mqtt_url=station_url, state_dir=tmp_path / "sim", settings=FAST)
    fleet = FleetThread(config, [StationSpec(A, password=secrets_[A])])
    intruder = FleetThread(
        FleetConfig(mqtt_url=station_url, state_dir=tmp_path / "sim-bad", settings=FAST),
        [StationSpec(B, password=secrets_[A])],  # B with A's secret
    )
    fleet.start(timeout_s=20)
    refusals = broker.server.read_log().count("not authorised")
    intruder.start(wait_online=False)
    service = broker.service
    server = broker.peer(service.username, service.password, client_id="srv-test").ok()
    try:
        assert fleet.station(A).online
        recorder.wait_for("station-state", sid=A, where=lambda d: d["online"])
        # the server hands A its groups; A subscribes and answers a group command
        now = utcnow()
        state = desired(1, now=now, groups=["xa-loi-binh-nhon"])
        server.publish(T.desired(A), dump_message(state), retain=True)
        recorder.wait_for("reported", sid=A, where=lambda d: d["desired_version"] == 1)
        deadline = time.monotonic() + 10
        while "xa-loi-binh-nhon" not in fleet.station(A).groups and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the group subscription settle
        ping = Command.new("ping", ttl_s=60)
        server.publish(T.group_cmd("xa-loi-binh-nhon"), dump_message(ping))
        recorder.wait_for(
            "ack", sid=A, where=lambda d: d["cmd_id"] == ping.cmd_id and d["status"] == "SUCCEEDED"
        )
        # a station presenting someone else's secret never comes online
        deadline = time.monotonic() + 10
        while broker.server.read_log().count("not authorised") == refusals:
            assert time.monotonic() < deadline, "the intruder was never refused"
            time.sleep(0.05)
        assert not intruder.station(B).online
        assert intruder.station(B).connects == 0
        assert recorder.select("station-state", sid=B) == []
    finally:
        server.publish(T.desired(A), b"", retain=True)  # clear the retained desired
        server.close()
        intruder.stop()
        fleet.stop()
