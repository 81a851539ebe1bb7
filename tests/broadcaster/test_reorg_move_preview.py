"""Moving a hamlet to another ward changes which stations the rules aimed at either
ward reach, and which stations the wards' accounts manage: the preview (and the applied
effect, so the audit entry) lists them, sids each way; the dashboard and the shell show
them; the preview changes nothing."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from broadcaster.auth.models import user_areas
from broadcaster.cli import app
from broadcaster.reorg import service as reorg
from broadcaster.settings import Settings
from kernel.approval import Approval
from kernel.audit import AuditEntry
from kernel.security import Role
from schedules.models import ScheduleRule, rule_stations
from schedules.service.targets import target_ids
from stations.models import Area, Group, Station
from tests.broadcaster.test_reorg import apply_plan, make_draft_rule
from tests.broadcaster.test_web_pages import ORIGIN, login, user

pytestmark = pytest.mark.usefixtures("tan_an")

HAMLET = "p1-kp-1"  # of Phường 1, moved to Phường 7
EFFECTIVE = dt.date(2030, 1, 1)
HEADER = "action,old,new,name,level,parent,stat_code,hamlets\n"


def _plan() -> reorg.Plan:
    return reorg.Plan(
        name="Chuyển khu phố 1 sang Phường 7",
        effective=EFFECTIVE,
        steps=[reorg.Step(kind="move", hamlets=[HAMLET], into="phuong-7")],
    )


def _id(session: Session, model: Any, column: Any, value: str) -> int:
    found = session.scalar(select(model.id).where(column == value))
    assert found is not None, value
    return int(found)


def _rules(session: Session) -> dict[str, int]:
    """Rules aimed at Phường 1 (by area), at Phường 7 (its automatic group), at the
    hamlet's station itself, at the whole city, and an ended one aimed at Phường 1."""
    p1 = _id(session, Area, Area.code, "phuong-1")
    p7_group = _id(session, Group, Group.gid, "phuong-7")
    city = _id(session, Area, Area.code, "tan-an")
    rules = {
        "old": make_draft_rule(session, "Tin Phường 1", p1, areas=(p1,)),
        "new": make_draft_rule(session, "Tin Phường 7", None, groups=(p7_group,)),
        "station": make_draft_rule(session, "Tin khu phố 1", p1),
        "city": make_draft_rule(session, "Tin thành phố", None, areas=(city,)),
        "ended": make_draft_rule(session, "Tin Phường 1 đã hết", p1, areas=(p1,)),
    }
    station = _id(session, Station, Station.sid, HAMLET)
    session.execute(rule_stations.insert().values(rule_id=rules["station"], station_id=station))
    for rule in session.scalars(select(ScheduleRule)):
        rule.approval = Approval.APPROVED
    session.get_one(ScheduleRule, rules["ended"]).ends_on = EFFECTIVE - dt.timedelta(days=1)
    session.commit()
    return rules


def _moved(session: Session) -> list[str]:
    """The sids of the hamlet's stations."""
    hamlet = _id(session, Area, Area.code, HAMLET)
    return sorted(session.scalars(select(Station.sid).where(Station.area_id == hamlet)))


def _state(session: Session) -> tuple[Any, ...]:
    return (
        target_ids(session, list(session.scalars(select(ScheduleRule.id)))),
        sorted(session.execute(select(user_areas.c.user_id, user_areas.c.area_id)).all()),
        session.scalar(select(Area.parent_id).where(Area.code == HAMLET)),
    )


def test_the_preview_lists_the_rules_and_accounts_a_move_changes(
    session_factory: sessionmaker[Session],
) -> None:
    user(session_factory, "canbo-p1", Role.OPERATOR, ["phuong-1"])
    user(session_factory, "canbo-p7", Role.OPERATOR, ["phuong-7"])
    user(session_factory, "canbo-kp1", Role.OPERATOR, [HAMLET])  # the hamlet moves whole
    user(session_factory, "kythuat", Role.TECHNICIAN, ["tan-an"])  # the city keeps it
    with session_factory() as session:
        rules = _rules(session)
        moved = _moved(session)
        assert len(moved) == 2  # the hamlet station and a smart one
        before = _state(session)

        preview = reorg.preview(session, _plan(), by="admin")

        assert _state(session) == before  # nothing changed
    reach = {r["id"]: r for r in preview["rule_reach"]}
    assert set(reach) == {rules["old"], rules["new"]}
    assert reach[rules["old"]] == {
        "id": rules["old"],
        "rule": "Tin Phường 1",
        "title": "Tin Phường 1",
        "programme": "Tin Phường 1",
        "lost": moved,
        "gained": [],
    }
    assert (reach[rules["new"]]["lost"], reach[rules["new"]]["gained"]) == ([], moved)
    scopes = {a["username"]: a for a in preview["account_scopes"]}
    assert set(scopes) == {"canbo-p1", "canbo-p7"}
    assert scopes["canbo-p1"] == {
        "username": "canbo-p1",
        "role": "operator",
        "lost": moved,
        "gained": [],
    }
    assert (scopes["canbo-p7"]["lost"], scopes["canbo-p7"]["gained"]) == ([], moved)

    # applied: the same effect, recorded in the audit entry
    with session_factory() as session:
        effect = apply_plan(session, _plan())
        assert effect == preview
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "area.reorganise"))
        assert entry is not None
        assert entry.after["rule_reach"] == preview["rule_reach"]
        assert entry.after["account_scopes"] == preview["account_scopes"]


def test_a_merge_only_plan_lists_no_move_reach(session_factory: sessionmaker[Session]) -> None:
    plan = reorg.Plan(
        name="Gộp",
        effective=EFFECTIVE,
        steps=[reorg.Step(kind="merge", sources=["xa-binh-tam"], into="phuong-7")],
    )
    with session_factory() as session:
        preview = reorg.preview(session, plan, by="admin")
    assert preview["rule_reach"] == []
    assert preview["account_scopes"] == []


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _preview_page(client: TestClient, hamlet: str, into: str) -> str:
    fields = ("action", "old", "new", "unit_name", "level", "parent", "stat_code", "hamlets")
    row = {"action": "move", "new": into, "hamlets": hamlet}
    page = client.post(
        "/quan-tri/sap-xep/xem-truoc",
        data={
            "name": "Chuyển khu phố",
            "effective": EFFECTIVE.isoformat(),
            **{f: [row.get(f, "")] for f in fields},
        },
        headers=ORIGIN,
    )
    assert page.status_code == 200, _text(page.text)[:2000]
    return page.text


def test_the_dashboard_preview_shows_them(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    user(session_factory, "canbo-p1", Role.OPERATOR, ["phuong-1"])
    user(session_factory, "canbo-p7", Role.OPERATOR, ["phuong-7"])
    with session_factory() as session:
        _rules(session)
        moved = ", ".join(_moved(session))
    login(client, "quantri")
    page = _preview_page(client, HAMLET, "phuong-7")
    found = re.search(r'id="preview-rule-reach">(.*?)</ul>', page, re.S)
    assert found is not None
    rules = _text(found.group(1))
    assert f"«Tin Phường 1» — chương trình «Tin Phường 1» Không còn phát tới: {moved}" in rules
    assert f"«Tin Phường 7» — chương trình «Tin Phường 7» Sẽ phát thêm tới: {moved}" in rules
    assert "Tin khu phố 1" not in rules
    assert "Tin thành phố" not in rules
    assert "Tin Phường 1 đã hết" not in rules
    found = re.search(r'id="preview-account-scopes">(.*?)</ul>', page, re.S)
    assert found is not None
    accounts = _text(found.group(1))
    assert f"canbo-p1 (Cán bộ vận hành) Không còn quản lý: {moved}" in accounts
    assert f"canbo-p7 (Cán bộ vận hành) Quản lý thêm: {moved}" in accounts
    text = _text(page)
    assert "Lịch phát thay đổi phạm vi" in text
    assert "Tài khoản thay đổi phạm vi quản lý" in text
    # a hamlet moved within reach of no rule and no account: one sentence, no lists
    quiet = _preview_page(client, "p2-kp-1", "phuong-3")
    assert 'id="preview-move-none"' in quiet
    assert 'id="preview-rule-reach"' not in quiet
    assert 'id="preview-account-scopes"' not in quiet
    # nothing was changed by the previews
    with session_factory() as session:
        assert session.scalar(select(Area.parent_id).where(Area.code == HAMLET)) == _id(
            session, Area, Area.code, "phuong-1"
        )


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_ENVIRONMENT", "test")
    monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROADCASTER_SECRET_KEY", settings.secret_key.get_secret_value())


@pytest.mark.usefixtures("env")
def test_the_shell_preview_shows_them(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "canbo-p1", Role.OPERATOR, ["phuong-1"])
    with session_factory() as session:
        _rules(session)
    decision = tmp_path / "decision.csv"
    decision.write_text(f"{HEADER}move,,phuong-7,,,,,{HAMLET}\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["areas", "reorganise", str(decision), "--effective", EFFECTIVE.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "Lịch phát thay đổi phạm vi" in result.output
    assert "Tin Phường 1" in result.output
    assert "Tài khoản thay đổi phạm vi quản lý" in result.output
    assert "canbo-p1" in result.output
    assert "Preview only" in result.output
