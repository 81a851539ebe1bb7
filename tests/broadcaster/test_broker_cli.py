"""`broadcaster mqtt bootstrap|sync` and `broadcaster stations credentials`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from broadcaster import db
from broadcaster.broker import provisioning as prov
from broadcaster.broker.bootstrap import find_dynsec_plugin
from broadcaster.broker.dynsec import DynsecClient
from broadcaster.cli import app
from broadcaster.settings import Settings
from firmware_bridge.simulator.sources import load_credentials
from stations import service as stations_service
from stations import tan_an
from stations.schemas import StationUpdate
from tests.support.dynsec_broker import DynsecBroker
from tests.support.mosquitto import requires_mosquitto

pytestmark = [
    requires_mosquitto(),
    pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic-security plugin"),
]

runner = CliRunner()


@pytest.fixture
def env(
    settings: Settings,
    dynsec_broker: DynsecBroker,
    monkeypatch: pytest.MonkeyPatch,
    session_factory: sessionmaker[Session],
) -> None:
    monkeypatch.setenv("BROADCASTER_ENVIRONMENT", "test")
    monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROADCASTER_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("BROADCASTER_MQTT_URL", dynsec_broker.url)
    with db.session_scope(session_factory) as session:
        stations_service.ensure_builtin_groups(session)
        tan_an.load(session)


def test_bootstrap_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_ENVIRONMENT", "development")
    directory = tmp_path / "mosquitto"
    first = runner.invoke(app, ["mqtt", "bootstrap", "--dir", str(directory), "--port", "18999"])
    assert first.exit_code == 0, first.output
    assert "written" in first.output
    assert "mosquitto -c" in first.output
    url = (directory / "credentials.env").read_text().split("BROADCASTER_MQTT_URL=")[1].strip()
    assert url.startswith("mqtt://broadcaster:")
    assert url.endswith("@127.0.0.1:18999")
    assert url in first.output.replace("\n", "")
    again = runner.invoke(app, ["mqtt", "bootstrap", "--dir", str(directory), "--port", "18998"])
    assert again.exit_code == 0
    assert "kept" in again.output
    assert "18999" in again.output
    assert url in again.output.replace("\n", "")


@pytest.mark.usefixtures("env")
def test_credentials_for_the_whole_fleet_then_sync(
    tmp_path: Path, dynsec_broker: DynsecBroker, session_factory: sessionmaker[Session]
) -> None:
    output = tmp_path / "creds" / "stations.json"
    result = runner.invoke(app, ["stations", "credentials", "--all", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "108 station secrets issued" in result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    secrets_ = load_credentials(output)
    assert len(secrets_) == 108
    dynsec_broker.peer("bt-1", secrets_["bt-1"], client_id="st-bt-1").ok().close()
    with DynsecClient(dynsec_broker.url) as dynsec:
        view = prov.broker_view(dynsec)
    assert sum(r.startswith(prov.STATION_ROLE_PREFIX) for r in view.roles) == 108

    synced = runner.invoke(app, ["mqtt", "sync"])
    assert synced.exit_code == 0, synced.output
    assert "108 station accounts in line" in synced.output

    # one station again: rotated, merged into the same file
    one = runner.invoke(app, ["stations", "credentials", "bt-1", "-o", str(output)])
    assert one.exit_code == 0
    assert "1 rotated" in one.output
    merged = load_credentials(output)
    assert len(merged) == 108
    assert merged["bt-1"] != secrets_["bt-1"]
    assert merged["lbn-cau-tre"] == secrets_["lbn-cau-tre"]
    assert dynsec_broker.peer("bt-1", secrets_["bt-1"], client_id="st-bt-1").connect().is_failure

    # a station disabled in the registry is cut off by the next sync
    with db.session_scope(session_factory) as session:
        stations_service.update_station(session, "bt-2", StationUpdate(enabled=False))
    synced = runner.invoke(app, ["mqtt", "sync"])
    assert synced.exit_code == 0
    assert "1 x disableClient" in synced.output
    assert dynsec_broker.peer("bt-2", merged["bt-2"], client_id="st-bt-2").connect().is_failure

    unknown = runner.invoke(app, ["stations", "credentials", "nope-1", "-o", str(output)])
    assert unknown.exit_code == 1
    assert "Unknown stations: nope-1" in unknown.output
    assert json.loads(output.read_text()) == merged  # untouched
    both = runner.invoke(app, ["stations", "credentials", "bt-1", "--all", "-o", str(output)])
    assert both.exit_code == 2


@pytest.mark.usefixtures("env")
def test_unreachable_broker_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_factory: sessionmaker[Session]
) -> None:
    monkeypatch.setenv("BROADCASTER_MQTT_URL", "mqtt://broadcaster:pw@127.0.0.1:1")
    output = tmp_path / "out" / "stations.json"
    result = runner.invoke(app, ["stations", "credentials", "--all", "-o", str(output)])
    assert result.exit_code == 1
    assert "cannot reach the MQTT broker" in result.output
    assert list(output.parent.iterdir()) == []  # no file, no temporary left behind
    with session_factory() as session:
        assert prov.registry_access(session)["bt-1"].credentialed is False
    assert runner.invoke(app, ["mqtt", "sync"]).exit_code == 1
