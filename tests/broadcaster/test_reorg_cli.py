"""``broadcaster areas reorganise FILE``: preview, every error listed, schedule (a future
date) or apply (a date that has come), cancel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from broadcaster.cli import app
from broadcaster.reorg import tan_an as tan_an_2025
from broadcaster.settings import Settings
from schedules import seed
from schedules.models import Programme
from stations.models import Area, AreaLevel, Reorganisation, ReorgStatus, Station
from tests.schedules.api_helpers import playlist

runner = CliRunner()
VN = ZoneInfo("Asia/Ho_Chi_Minh")
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
        + "create,,phuong-moi,Phường Mới,ward,tan-an,27712,\n"
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
    # a future date: checked and scheduled; nothing moves until the date
    scheduled = runner.invoke(
        app, ["areas", "reorganise", str(good), "--effective", later, "--apply"]
    )
    assert scheduled.exit_code == 0, scheduled.output
    assert f"Scheduled for {later}" in scheduled.output
    with session_factory() as session:
        assert _ward_of(session, "p1-kp-1") == "phuong-1"
        record = session.scalar(select(Reorganisation))
        assert record is not None
        assert record.status is ReorgStatus.SCHEDULED
        record_id = record.id
    again = runner.invoke(app, ["areas", "reorganise", str(good), "--effective", later, "--apply"])
    assert again.exit_code == 1  # the same date: refused
    assert "takes effect" in again.output
    cancelled = runner.invoke(app, ["areas", "undo", str(record_id)])
    assert cancelled.exit_code == 0, cancelled.output
    with session_factory() as session:
        assert session.get_one(Reorganisation, record_id).status is ReorgStatus.UNDONE
    # a date that has come: applied at once, and no longer undone
    past = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
    applied = runner.invoke(app, ["areas", "reorganise", str(good), "--effective", past, "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "Applied" in applied.output
    with session_factory() as session:
        assert _ward_of(session, "p1-kp-1") == "phuong-moi"
        assert _ward_of(session, "bt-1") == "phuong-moi"
        done = session.scalar(
            select(Reorganisation.id).where(Reorganisation.status == ReorgStatus.APPLIED)
        )
    refused = runner.invoke(app, ["areas", "undo", str(done)])
    assert refused.exit_code == 1, refused.output
    with session_factory() as session:
        assert _ward_of(session, "p1-kp-1") == "phuong-moi"


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


@pytest.mark.usefixtures("tan_an")
def test_seed_as_of_relays_national_province_then_each_ward(
    session_factory: sessionmaker[Session], app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    """After the change the chain is national → province → ward/commune: every station's
    morning and evening relays are VOV1, the province, then its own unit's programme (now
    owned by its new ward); tomorrow's playlist is the old one without the city step."""
    seed.load(session_factory, app.state.media_library)
    day = dt.date(2026, 11, 26)
    with session_factory() as session:
        sids = list(session.scalars(select(Station.sid).order_by(Station.sid)))
        old_unit = {sid: _ward_of(session, sid) for sid in sids}
    before = {sid: playlist(client, admin, sid, day) for sid in sids}
    assert tan_an_2025.load_as_of(session_factory, dt.date(2025, 7, 1))
    with session_factory() as session:
        new_unit = {sid: _ward_of(session, sid) for sid in sids}
        owners = dict(
            session.execute(
                select(Programme.key, Area.code).join(Area, Area.id == Programme.owner_area_id)
            ).all()
        )
    for sid in sids:
        items = playlist(client, admin, sid, day)
        for half in (lambda h: h < 12, lambda h: h >= 12):
            chain = [
                i["url"].rsplit("/", 1)[-1]
                for i in items
                if half(dt.datetime.fromisoformat(i["start_at"]).astimezone(VN).hour)
            ]
            assert chain == ["vov1.mp3", "long-an.mp3", f"{old_unit[sid]}.mp3"], sid
        # the ward/commune step's programme belongs to the station's new ward
        assert owners[f"tan-an:programme:{old_unit[sid]}"] == new_unit[sid]
        expected = [i for i in before[sid] if not i["url"].endswith("/tan-an.mp3")]
        assert len(expected) == len(before[sid]) - 2
        assert [(i["start_at"], i["url"]) for i in items] == [
            (i["start_at"], i["url"]) for i in expected
        ]
