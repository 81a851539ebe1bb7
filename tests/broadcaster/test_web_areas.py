"""The area tree editor and the reorganisation pages (``/quan-tri/dia-ban``,
``/quan-tri/sap-xep``): rights, the tree with its counts, add/rename/move, a decision from
the form or a spreadsheet, every error listed, apply, schedule, cancel."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.reorg import service as reorg
from kernel.approval import Approval
from kernel.audit import AuditEntry
from kernel.security import Role
from stations.models import Area, Reorganisation, ReorgStatus
from tests.broadcaster.test_reorg import make_asset, make_draft_rule
from tests.broadcaster.test_web_pages import ORIGIN, login, user

pytestmark = pytest.mark.usefixtures("tan_an")

PAGES = ["/quan-tri/dia-ban", "/quan-tri/dia-ban/phuong-1", "/quan-tri/sap-xep"]


def _units(session: Session) -> dict[str, str | None]:
    codes = dict(session.execute(select(Area.id, Area.code)).all())
    return {
        codes[area]: (codes[unit] if unit else None)
        for area, unit in session.execute(select(Area.id, Area.parent_id)).all()
    }


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_only_city_wide_administrators(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Chỉ quản trị viên toàn thành phố" in response.text
    refused = client.post(
        "/quan-tri/dia-ban", data={"code": "x", "name": "X", "level": "hamlet"}, headers=ORIGIN
    )
    assert refused.status_code == 403


def test_the_tree_with_counts_add_rename_and_move(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    page = client.get("/quan-tri/dia-ban")
    assert page.status_code == 200
    row = re.search(r'data-code="tan-an".*?</tr>', page.text, re.S)
    assert row is not None
    assert ">108<" in row.group(0)  # the city holds every station
    row = re.search(r'data-code="xa-loi-binh-nhon".*?</tr>', page.text, re.S)
    assert row is not None
    assert "xa-loi-binh-nhon" in row.group(0)
    # a new hamlet, with an error first (no parent for a hamlet)
    bad = client.post(
        "/quan-tri/dia-ban",
        data={"code": "p1-kp-9", "name": "Khu phố 9", "level": "hamlet", "parent": ""},
        headers=ORIGIN,
    )
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text
    made = client.post(
        "/quan-tri/dia-ban",
        data={"code": "p1-kp-9", "name": "Khu phố 9", "level": "hamlet", "parent": "phuong-1"},
        headers=ORIGIN,
    )
    assert made.status_code == 200
    assert "Đã lưu địa bàn p1-kp-9" in made.text
    # rename it and move it to Phường 3
    moved = client.post(
        "/quan-tri/dia-ban/p1-kp-9",
        data={"name": "Khu phố 10", "parent": "phuong-3"},
        headers=ORIGIN,
    )
    assert moved.status_code == 200
    with session_factory() as session:
        assert _units(session)["p1-kp-9"] == "phuong-3"
        assert session.scalar(select(Area.name).where(Area.code == "p1-kp-9")) == "Khu phố 10"
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["area.create", "area.update"]
    # a ward cannot go under a hamlet, nor a city under its own ward
    cycle = client.post(
        "/quan-tri/dia-ban/tan-an", data={"name": "Tân An", "parent": "phuong-1"}, headers=ORIGIN
    )
    assert cycle.status_code == 422
    assert 'role="alert"' in cycle.text
    assert client.get("/quan-tri/dia-ban/khong-co").status_code == 404


def _rows(*rows: dict[str, str]) -> dict[str, list[str]]:
    fields = ("action", "old", "new", "unit_name", "level", "parent", "stat_code", "hamlets")
    return {f: [r.get(f, "") for r in rows] for f in fields}


def test_a_decision_built_in_the_form_previewed_scheduled_and_cancelled(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    user(session_factory, "canbo-bt", Role.OPERATOR, ["xa-binh-tam"])
    with session_factory() as session:
        bt = session.scalar(select(Area.id).where(Area.code == "xa-binh-tam"))
        make_asset(session, "Thông báo tiêm chủng", bt, Approval.DRAFT)
        make_draft_rule(session, "Lịch nhắm Bình Tâm", None, areas=(bt,) if bt else ())
        session.commit()
    login(client, "quantri")
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=40)).isoformat()
    # every error listed, nothing changed
    bad = client.post(
        "/quan-tri/sap-xep/xem-truoc",
        data={
            "name": "Sai",
            "effective": later,
            **_rows(
                {"action": "merge", "old": "xa-khong-co", "new": "phuong-7"},
                {"action": "move", "new": "phuong-9", "hamlets": "p1-kp-1"},
            ),
        },
        headers=ORIGIN,
    )
    assert bad.status_code == 422
    text = _text(bad.text)
    assert "2 lỗi" in text
    assert "xa-khong-co" in text
    assert "phuong-9" in text
    # a good one: Bình Tâm into Phường 7, one hamlet of Phường 1 moved too
    body = {
        "name": "Gộp Bình Tâm",
        "effective": later,
        **_rows(
            {"action": "merge", "old": "xa-binh-tam", "new": "phuong-7"},
            {"action": "move", "new": "phuong-7", "hamlets": "p1-kp-1"},
            {},
        ),
    }
    preview = client.post("/quan-tri/sap-xep/xem-truoc", data=body, headers=ORIGIN)
    assert preview.status_code == 200, _text(preview.text)[:2000]
    text = _text(preview.text)
    assert "Lên lịch áp dụng ngày" in text
    assert "canbo-bt" in re.search(r'id="preview-accounts">(.*?)</ul>', preview.text, re.S).group(1)  # type: ignore[union-attr]
    # the commune's library content passes to Phường 7; the approvals it inherits listed
    owned = re.search(r'id="preview-owned-media_assets">(.*?)</ul>', preview.text, re.S)
    assert owned is not None
    assert "Thông báo tiêm chủng" in owned.group(1)
    pending = re.search(r'id="preview-pending">(.*?)</ul>', preview.text, re.S)
    assert pending is not None
    pending_text = _text(pending.group(1))
    assert "Bản tin «Thông báo tiêm chủng» của xa-binh-tam: người duyệt của phuong-7" in (
        pending_text
    )
    assert "Lịch phát «Lịch nhắm Bình Tâm»: nhắm tới xa-binh-tam, được giữ nguyên" in (pending_text)
    plan = re.search(r'name="plan" value="([^"]+)"', preview.text)
    assert plan is not None
    with session_factory() as session:
        assert session.scalar(select(Reorganisation.id)) is None
        before = _units(session)
    scheduled = client.post(
        "/quan-tri/sap-xep", data={"plan": html.unescape(plan.group(1))}, headers=ORIGIN
    )
    assert scheduled.status_code == 200
    assert "Đã lên lịch" in scheduled.text
    with session_factory() as session:
        record = session.scalar(select(Reorganisation))
        assert record is not None
        assert record.status is ReorgStatus.SCHEDULED
        assert _units(session) == before  # nothing moves before its date
        record_id = record.id
    assert "Chờ đến ngày hiệu lực" in scheduled.text
    cancelled = client.post(f"/quan-tri/sap-xep/{record_id}/hoan-tac", headers=ORIGIN)
    assert cancelled.status_code == 200
    assert "Đã hủy" in cancelled.text
    with session_factory() as session:
        assert session.get_one(Reorganisation, record_id).status is ReorgStatus.UNDONE
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["area.reorganise.schedule", "area.reorganise.cancel"]


def test_a_spreadsheet_applied_at_once_when_its_date_has_come(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    csv = (
        ",".join(reorg.CSV_COLUMNS)
        + "\ncreate,,phuong-moi,Phường Mới,ward,tan-an,27712,\n"
        + "merge,xa-binh-tam,phuong-moi,,,,,\nmerge,phuong-7,phuong-moi,,,,,\n"
    )
    past = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)).isoformat()
    preview = client.post(
        "/quan-tri/sap-xep/xem-truoc",
        data={"name": "Quyết định", "effective": past},
        files={"tep": ("quyet-dinh.csv", csv.encode("utf-8-sig"), "text/csv")},
        headers=ORIGIN,
    )
    assert preview.status_code == 200, _text(preview.text)[:2000]
    assert "Áp dụng ngay" in preview.text
    assert "phuong-moi" in preview.text
    plan = re.search(r'name="plan" value="([^"]+)"', preview.text)
    assert plan is not None
    applied = client.post(
        "/quan-tri/sap-xep", data={"plan": html.unescape(plan.group(1))}, headers=ORIGIN
    )
    assert applied.status_code == 200
    assert "Đã áp dụng phương án" in applied.text
    with session_factory() as session:
        units = _units(session)
        assert units["bt-1"] == "phuong-moi"
        assert units["p7-kp-1"] == "phuong-moi"
        record = session.scalar(select(Reorganisation))
        assert record is not None
        assert record.status is ReorgStatus.APPLIED
    # its date has come: no undo button, and a forced undo is refused with the reason
    assert f"/quan-tri/sap-xep/{record.id}/hoan-tac" not in applied.text
    late = client.post(f"/quan-tri/sap-xep/{record.id}/hoan-tac", headers=ORIGIN)
    assert late.status_code == 422
    assert "trước ngày có hiệu lực" in late.text
    # a spreadsheet that is not UTF-8 CSV
    latin = client.post(
        "/quan-tri/sap-xep/xem-truoc",
        data={"effective": past},
        files={"tep": ("x.csv", "Phường".encode("utf-16"), "text/csv")},
        headers=ORIGIN,
    )
    assert latin.status_code == 422
    assert "UTF-8" in latin.text
    # the tree lists the new ward with its stations, not the merged units
    tree = client.get("/quan-tri/dia-ban")
    assert 'data-code="phuong-moi"' in tree.text
    assert 'data-code="xa-binh-tam"' not in tree.text
    assert 'data-code="xa-binh-tam"' in client.get("/quan-tri/dia-ban?da_giai_the=1").text


def test_statistics_codes_in_the_tree_editor(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    """A statistics code is set when an area is added or edited; a ward's must be in the
    national list (`vietnam-provinces`), a hamlet's is the site's own."""
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    page = client.get("/quan-tri/dia-ban/phuong-khanh-hau")
    assert 'name="stat_code"' in page.text
    bad = client.post(
        "/quan-tri/dia-ban/phuong-khanh-hau",
        data={"name": "Phường Khánh Hậu", "parent": "tan-an", "stat_code": "99999"},
        headers=ORIGIN,
    )
    assert bad.status_code == 422
    assert "Mã thống kê 99999 không có trong danh mục phường/xã" in _text(bad.text)
    saved = client.post(
        "/quan-tri/dia-ban/phuong-khanh-hau",
        data={"name": "Phường Khánh Hậu", "parent": "tan-an", "stat_code": "27715"},
        headers=ORIGIN,
    )
    assert saved.status_code == 200
    row = re.search(r'data-code="phuong-khanh-hau".*?</tr>', saved.text, re.S)
    assert row is not None
    assert "27715" in row.group(0)
    # taken by a current area: refused on the add form, what was typed kept
    taken = client.post(
        "/quan-tri/dia-ban",
        data={
            "code": "phuong-moi",
            "name": "Phường Mới",
            "level": "ward",
            "parent": "tan-an",
            "stat_code": "27715",
        },
        headers=ORIGIN,
    )
    assert taken.status_code == 422
    assert "đã được dùng cho địa bàn phuong-khanh-hau" in _text(taken.text)
    assert 'value="27715"' in taken.text
    hamlet = client.post(
        "/quan-tri/dia-ban",
        data={
            "code": "kh-kp-9",
            "name": "Khu phố 9",
            "level": "hamlet",
            "parent": "phuong-khanh-hau",
            "stat_code": "KP-9",
        },
        headers=ORIGIN,
    )
    assert hamlet.status_code == 200
    with session_factory() as session:
        codes = dict(session.execute(select(Area.code, Area.stat_code)).all())
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert codes["phuong-khanh-hau"] == "27715"
    assert codes["kh-kp-9"] == "KP-9"
    assert codes.get("phuong-moi", "absent") == "absent"
    assert actions[-2:] == ["area.update", "area.create"]
    # blank: no code
    cleared = client.post(
        "/quan-tri/dia-ban/kh-kp-9",
        data={"name": "Khu phố 9", "parent": "phuong-khanh-hau", "stat_code": ""},
        headers=ORIGIN,
    )
    assert cleared.status_code == 200
    with session_factory() as session:
        assert session.scalar(select(Area.stat_code).where(Area.code == "kh-kp-9")) is None
