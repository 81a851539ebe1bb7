"""Fault injection, the station sources, the clock and the ``simulate`` CLI."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from firmware_bridge.errors import ConfigError
from firmware_bridge.messages import dump_message
from firmware_bridge.simulator import Fault, FaultSettings, FaultSpec, SimSettings
from firmware_bridge.simulator.cli import simulate
from firmware_bridge.simulator.clock import SimClock
from firmware_bridge.simulator.faults import assign_faults
from firmware_bridge.simulator.sources import (
    generated_stations,
    load_credentials,
    stations_from_api,
    stations_from_csv,
)
from firmware_bridge.simulator.store import StationStore
from firmware_bridge.topics import Topics
from tests.support.loa import FleetFactory, RawPublisher, desired
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

TOPICS = Topics()


def test_fault_specs_parse_and_assign_deterministically() -> None:
    assert FaultSpec.parse("power") == FaultSpec(Fault.POWER, fraction=1.0)
    assert FaultSpec.parse("flap:0.25") == FaultSpec(Fault.FLAP, fraction=0.25)
    assert FaultSpec.parse("corrupt_download:st-1, st-2") == FaultSpec(
        Fault.CORRUPT, sids=("st-1", "st-2")
    )
    for bad in ("melt", "flap:1.5", "flap:Bad Sid"):
        with pytest.raises(ConfigError):
            FaultSpec.parse(bad)
    sids = [s.sid for s in generated_stations(100)]
    specs = [FaultSpec.parse("flap:0.1"), FaultSpec.parse("clock:sim-0001")]
    first = assign_faults(specs, sids, random.Random(3))
    assert first == assign_faults(specs, sids, random.Random(3))
    assert sum(Fault.FLAP in f for f in first.values()) == 10
    assert Fault.CLOCK in first["sim-0001"]


def test_health_faults_raise_and_clear_events(
    broker: Mosquitto, recorder: Recorder, make_fleet: FleetFactory, raw: RawPublisher
) -> None:
    settings = SimSettings(
        reconnect_min_s=0.2,
        reconnect_max_s=1,
        faults=FaultSettings(mains_after_s=(5, 5), mains_outage_s=(60, 60)),
    )
    fleet = make_fleet(
        broker,
        ["st-1", "st-2", "st-3"],
        faults=["mains:st-1", "overheat:st-2", "speaker:st-3", "storage:st-3"],
        speed=100.0,
        settings=settings,
    )
    for sid in ("st-1", "st-2", "st-3"):
        payload = dump_message(desired(1, now=fleet.now(), telemetry_interval_s=5))
        raw.publish(TOPICS.desired(sid), payload, retain=True)

    def fault_events(sid: str, kind: str) -> list[str]:
        found = recorder.wait_for(
            "event", sid, lambda d: d.get("fault") == kind, count=1, timeout_s=20
        )
        return [r.data["type"] for r in found]

    assert fault_events("st-3", "speaker_line") == ["fault.raised"]
    assert fault_events("st-3", "storage_low") == ["fault.raised"]
    recorder.wait_for("event", "st-1", lambda d: d.get("fault") == "on_battery", count=2)
    assert [r.data["type"] for r in recorder.select("event", "st-1", lambda d: "fault" in d)][
        :2
    ] == ["fault.raised", "fault.cleared"]
    on_battery = recorder.select("telemetry", "st-1", lambda d: d["on_battery"])
    assert on_battery
    assert all(t.data["supply_v"] < 13.0 for t in on_battery)
    assert fault_events("st-2", "amp_overheat") == ["fault.raised"]
    hot = recorder.select("telemetry", "st-2")[-1].data
    assert hot["amp_temp_c"] > 65
    status = fleet.station("st-3")
    assert set(status.active_faults) == {"speaker_line", "storage_low"}
    assert status.faults == ("speaker", "storage")
    speaker = recorder.select("telemetry", "st-3")[-1].data
    assert speaker["speaker_ok"] is False
    assert speaker["storage_free_mb"] < 100


def test_sim_clock_speed_and_offset() -> None:
    async def run() -> None:
        clock = SimClock(50.0)
        shifted = clock.with_offset(30.0)
        start = clock.now()
        await clock.sleep(5.0)  # 0.1 s of real time
        elapsed = (clock.now() - start).total_seconds()
        assert 5.0 <= elapsed < 10.0
        assert abs((shifted.now() - clock.now()).total_seconds() - 30.0) < 0.5
        assert clock.real_seconds(50) == 1.0

    asyncio.run(run())
    with pytest.raises(ValueError, match="positive"):
        SimClock(0)


def test_station_sources(tmp_path: Path) -> None:
    csv_file = tmp_path / "stations.csv"
    csv_file.write_text("sid,name,secret\nlbn-01,Ấp 1,pw1\nlbn-02,Ấp 2,\n", encoding="utf-8")
    specs = stations_from_csv(csv_file)
    assert [(s.sid, s.password) for s in specs] == [("lbn-01", "pw1"), ("lbn-02", None)]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id\nx\n")
    with pytest.raises(ConfigError, match="sid"):
        stations_from_csv(bad_csv)
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"lbn-01": "x"}))
    assert load_credentials(creds) == {"lbn-01": "x"}
    creds.write_text("[1]")
    with pytest.raises(ConfigError):
        load_credentials(creds)

    requests: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"])
        total = 1300
        items = [
            {"sid": f"st-{i:04d}", "name": f"Trạm {i}", "kind": "smart", "area_code": "80101"}
            for i in range(offset, min(offset + limit, total))
        ]
        return httpx.Response(200, json={"items": items, "total": total})

    found = stations_from_api(
        "http://api.test/", 1200, token="tok", transport=httpx.MockTransport(api)
    )
    assert [s.sid for s in found[:2]] == ["st-0000", "st-0001"]
    assert len(found) == 1200
    assert [int(r.url.params["limit"]) for r in requests] == [500, 500, 200]
    assert all(r.headers["authorization"] == "Bearer tok" for r in requests)
    assert requests[0].url.path == "/api/v1/stations"


def test_simulate_cli_runs_a_fleet_and_stops_cleanly(
    tmp_path: Path, broker: Mosquitto, recorder: Recorder
) -> None:
    app = typer.Typer()
    app.command()(simulate)
    csv_file = tmp_path / "stations.csv"
    csv_file.write_text("sid,secret\ncli-1,a\ncli-2,b\ncli-3,c\n")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"cli-1": "override"}))
    result = CliRunner().invoke(
        app,
        [
            "--stations",
            "2",
            "--csv",
            str(csv_file),
            "--credentials",
            str(creds),
            "--mqtt-url",
            broker.url,
            "--state-dir",
            str(tmp_path / "state"),
            "--duration",
            "1.5",
            "--fault",
            "clock:cli-2",
            "--seed",
            "1",
            "--no-live",
        ],
    )
    assert result.exit_code == 0, result.output
    for sid in ("cli-1", "cli-2"):
        recorder.wait_for("station-state", sid, lambda d: d["online"])
        recorder.wait_for("station-state", sid, lambda d: not d["online"])
    assert recorder.select(sid="cli-3") == []
    assert StationStore(tmp_path / "state" / "cli-1").load_state().last_bdseq is not None

    bad = CliRunner().invoke(app, ["--mqtt-url", "http://nope", "--no-live"])
    assert bad.exit_code == 2
