"""The simulator spread over several processes: every slice online, commands reach all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from firmware_bridge.client import Bridge
from firmware_bridge.messages import Command
from firmware_bridge.simulator import FleetConfig, StationSpec
from firmware_bridge.simulator.cli import simulate
from firmware_bridge.simulator.fleet import FleetSummary
from firmware_bridge.simulator.processes import ProcessFleet, combine, split
from firmware_bridge.simulator.store import StationStore
from tests.support.loa import FAST, wait_until
from tests.support.mosquitto import Mosquitto, requires_mosquitto
from tests.support.process import cpu_seconds
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

SIDS = [f"mp-{i}" for i in range(7)]


def test_split_interleaves_and_never_makes_empty_slices() -> None:
    specs = [StationSpec(sid) for sid in SIDS]
    slices = split(specs, 3)
    assert [[s.sid for s in part] for part in slices] == [
        ["mp-0", "mp-3", "mp-6"],
        ["mp-1", "mp-4"],
        ["mp-2", "mp-5"],
    ]
    assert len(split(specs[:2], 8)) == 2
    assert sorted(s.sid for part in slices for s in part) == sorted(SIDS)


def test_every_slice_comes_online_and_takes_a_group_command(
    tmp_path: Path, broker: Mosquitto, recorder: Recorder, bridge: Bridge
) -> None:
    config = FleetConfig(mqtt_url=broker.url, state_dir=tmp_path / "state", settings=FAST, seed=3)
    fleet = ProcessFleet(config, [StationSpec(sid) for sid in SIDS], processes=3)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(fleet.start())
        assert len(fleet.pids) == 3
        assert loop.run_until_complete(fleet.wait_online(timeout_s=60))
        summary = fleet.summary()
        assert (summary.stations, summary.online) == (7, 7)
        assert all(cpu_seconds(pid) >= 0 for pid in fleet.pids)

        ping = Command.new("ping", ttl_s=600)
        assert bridge.publish_command_to_group("all", ping)
        for sid in SIDS:
            acks = recorder.wait_for(
                "ack", sid, lambda d: d["cmd_id"] == ping.cmd_id and d["status"] == "SUCCEEDED"
            )
            assert acks
        for sid in SIDS[:3]:  # one station of each slice, addressed on its own topic
            direct = Command.new("ping", ttl_s=600)
            assert bridge.publish_command_to_station(sid, direct)
            recorder.wait_for("ack", sid, lambda d, c=direct.cmd_id: d["cmd_id"] == c)
    finally:
        loop.run_until_complete(fleet.stop())
        loop.close()
    for sid in SIDS:  # each child stopped its stations cleanly: every one went offline
        recorder.wait_for("station-state", sid, lambda d: not d["online"])
    assert fleet.summary().online == 0


def test_summaries_add_up() -> None:
    one = FleetSummary(3, 3, 2, 1, 10, 0, 0, 1, 3)
    two = FleetSummary(4, 4, 4, 0, 5, 2, 1, 0, 5)
    assert combine([one, two]) == FleetSummary(7, 7, 6, 1, 15, 2, 1, 1, 8)


@pytest.mark.parametrize("processes", ["2"])
def test_simulate_cli_with_processes(
    tmp_path: Path, broker: Mosquitto, recorder: Recorder, processes: str
) -> None:
    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(
        app,
        [
            *("--stations", "4", "--processes", processes),
            *("--mqtt-url", broker.url, "--state-dir", str(tmp_path / "state")),
            *("--duration", "6", "--no-live"),
        ],
    )
    assert result.exit_code == 0, result.output
    for sid in ("sim-0001", "sim-0002", "sim-0003", "sim-0004"):
        recorder.wait_for("station-state", sid, lambda d: d["online"])
        recorder.wait_for("station-state", sid, lambda d: not d["online"])
    store = StationStore(tmp_path / "state" / "sim-0004")
    wait_until(lambda: store.load_state().last_bdseq is not None, what="state persisted")
