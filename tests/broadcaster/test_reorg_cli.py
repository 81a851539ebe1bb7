"""``broadcaster areas reorganise FILE``: preview, every error listed, apply, undo."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from broadcaster.cli import app
from broadcaster.reorg import tan_an as tan_an_2025
from broadcaster.settings import Settings
from stations.models import Area, AreaLevel, Reorganisation, Station

runner = CliRunner()
HEADER = "action,old,new,name,level,parent,stat_code,hamlets\n"


@pytest.fixture(autouse=True)
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_ENVIRONMENT", "test")
    monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROADCASTER_SECRET_KEY", settings.secret_key.get_secret_value())


def _ward_of(session: Session, sid: str) -> str:
    station = session.scalar(select(Station).where(Station.sid == sid))
    assert station is not None
    area = station.area
    while area.level is AreaLevel.HAMLET and area.parent is not None:
        area = area.parent
    return area.code


@pytest.mark.usefixtures("tan_an")
def test_reorganise_from_a_spreadsheet(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "merge,xa-khong-co,phuong-7,,,,,\nmove,,phuong-9,,,,,p1-kp-1\n")
    result = runner.invoke(app, ["areas", "reorganise", str(bad), "--effective", later])
    assert result.exit_code == 1, result.output
    assert "xa-khong-co" in result.output
    assert "phuong-9" in result.output
    assert "Nothing was changed" in result.output

    good = tmp_path / "decision.csv"
    good.write_text(
        HEADER
        + "create,,phuong-moi,Phường Mới,ward,tan-an,99999,\n"
        + "merge,xa-binh-tam,phuong-moi,,,,,\n"
        + "merge,phuong-7,phuong-moi,,,,,\n"
        + "move,,phuong-moi,,,,,p1-kp-1;p1-kp-2\n",
        encoding="utf-8",
    )
    preview = runner.invoke(app, ["areas", "reorganise", str(good), "--effective", later])
    assert preview.exit_code == 0, preview.output
    assert "Preview only" in preview.output
    assert "p1-kp-1" in preview.output
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Reorganisation)) == 0
        assert session.scalar(select(Area.id).where(Area.code == "phuong-moi")) is None
    applied = runner.invoke(
        app, ["areas", "reorganise", str(good), "--effective", later, "--apply"]
    )
    assert applied.exit_code == 0, applied.output
    with session_factory() as session:
        assert _ward_of(session, "p1-kp-1") == "phuong-moi"
        assert _ward_of(session, "bt-1") == "phuong-moi"
        record = session.scalar(select(Reorganisation))
        assert record is not None
        record_id = record.id
    again = runner.invoke(app, ["areas", "reorganise", str(good), "--effective", later, "--apply"])
    assert again.exit_code == 1  # the same date: refused
    undone = runner.invoke(app, ["areas", "undo", str(record_id)])
    assert undone.exit_code == 0, undone.output
    with session_factory() as session:
        assert _ward_of(session, "p1-kp-1") == "phuong-1"
        assert _ward_of(session, "bt-1") == "xa-binh-tam"
        assert session.scalar(select(Area.id).where(Area.code == "phuong-moi")) is None


@pytest.mark.usefixtures("tan_an")
def test_seed_as_of_builds_todays_structure(session_factory: sessionmaker[Session]) -> None:
    assert not tan_an_2025.load_as_of(session_factory, dt.date(2025, 6, 30))
    assert tan_an_2025.load_as_of(session_factory, dt.date(2025, 7, 1))
    assert not tan_an_2025.load_as_of(session_factory, dt.date(2026, 1, 1))  # idempotent
    with session_factory() as session:
        current = session.scalars(select(Area).where(Area.valid_to.is_(None)))
        tops = {(a.code, a.level) for a in current if a.level is not AreaLevel.HAMLET}
    assert tops == {("tay-ninh", AreaLevel.PROVINCE)} | {
        (code, AreaLevel.WARD) for code in tan_an_2025.WARDS
    }
