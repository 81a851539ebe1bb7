"""The station simulator with issued credentials, against the dynamic-security broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.broker import provisioning as prov
from broadcaster.broker.bootstrap import find_dynsec_plugin
from broadcaster.broker.dynsec import DynsecClient
from firmware_bridge.messages import Command, dump_message, utcnow
from firmware_bridge.simulator import FleetConfig, FleetThread, StationSpec
from firmware_bridge.simulator.sources import load_credentials
from firmware_bridge.topics import Topics
from stations import service as stations_service
from stations import tan_an
from tests.support.dynsec_broker import DynsecBroker
from tests.support.loa import FAST, desired
from tests.support.mosquitto import requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic-security plugin"),
]

T = Topics()
A, B = "lbn-cau-tre", "bt-1"


def test_simulated_stations_connect_with_issued_credentials(
    dynsec_broker: DynsecBroker,
    session_factory: sessionmaker[Session],
    dynsec_recorder: Recorder,
    tmp_path: Path,
) -> None:
    with db.session_scope(session_factory) as session:
        stations_service.ensure_builtin_groups(session)
        tan_an.load(session)
    with DynsecClient(dynsec_broker.url) as dynsec, session_factory() as session:
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
    station_url = (
        f"mqtt://{dynsec_broker.host}:{dynsec_broker.port}"  # no user info: each station its own
    )

    config = FleetConfig(mqtt_url=station_url, state_dir=tmp_path / "sim", settings=FAST)
    fleet = FleetThread(config, [StationSpec(A, password=secrets_[A])])
    intruder = FleetThread(
        FleetConfig(mqtt_url=station_url, state_dir=tmp_path / "sim-bad", settings=FAST),
        [StationSpec(B, password=secrets_[A])],  # B with A's secret
    )
    fleet.start(timeout_s=20)
    refusals = dynsec_broker.server.read_log().count("not authorised")
    intruder.start(wait_online=False)
    service = dynsec_broker.service
    server = dynsec_broker.peer(service.username, service.password, client_id="srv-test").ok()
    try:
        assert fleet.station(A).online
        dynsec_recorder.wait_for("station-state", sid=A, where=lambda d: d["online"])
        # the server hands A its groups; A subscribes and answers a group command
        now = utcnow()
        state = desired(1, now=now, groups=["xa-loi-binh-nhon"])
        server.publish(T.desired(A), dump_message(state), retain=True)
        dynsec_recorder.wait_for("reported", sid=A, where=lambda d: d["desired_version"] == 1)
        deadline = time.monotonic() + 10
        while "xa-loi-binh-nhon" not in fleet.station(A).groups and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the group subscription settle
        ping = Command.new("ping", ttl_s=60)
        server.publish(T.group_cmd("xa-loi-binh-nhon"), dump_message(ping))
        dynsec_recorder.wait_for(
            "ack", sid=A, where=lambda d: d["cmd_id"] == ping.cmd_id and d["status"] == "SUCCEEDED"
        )
        # a station presenting someone else's secret never comes online
        deadline = time.monotonic() + 10
        while dynsec_broker.server.read_log().count("not authorised") == refusals:
            assert time.monotonic() < deadline, "the intruder was never refused"
            time.sleep(0.05)
        assert not intruder.station(B).online
        assert intruder.station(B).connects == 0
        assert dynsec_recorder.select("station-state", sid=B) == []
    finally:
        server.publish(T.desired(A), b"", retain=True)  # clear the retained desired
        server.close()
        intruder.stop()
        fleet.stop()
