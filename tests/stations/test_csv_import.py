"""CSV import/export: validation with line numbers, all-or-nothing, encodings."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api import ok

pytestmark = pytest.mark.usefixtures("tan_an")

HEADER = "sid,name,kind,area_code,latitude,longitude,capabilities,enabled\n"


def _post(client: TestClient, headers: dict[str, str], content: bytes, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/stations/import",
        params={"dry_run": str(dry_run).lower()},
        files={"file": ("stations.csv", content, "text/csv")},
        headers=headers,
    )


def _count(client: TestClient, headers: dict[str, str]) -> int:
    return int(ok(client.get("/api/v1/stations?limit=1", headers=headers))["total"])


def test_import_valid_file_with_bom_creates_and_updates(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = (
        HEADER
        + "lbn-moi-1,Cụm loa mới 1,smart,lbn-cau-tre,10.57,106.40,file;relay;sync_start,true\n"
        + "lbn-moi-2,Cụm loa mới 2,hamlet,lbn-ngai-loi-a,,,file,có\n"
        + "lbn-cau-tre,Trạm Cầu Tre (đổi tên),hamlet,lbn-cau-tre,10.58,106.41,file;relay,false\n"
    )
    dry = ok(_post(client, admin, "\ufeff".encode() + body.encode(), dry_run=True))
    assert dry == {
        "dry_run": True,
        "rows": 3,
        "created": 2,
        "updated": 1,
        "disabled": ["lbn-cau-tre"],
        "errors": [],
    }
    assert _count(client, admin) == 108
    report = ok(_post(client, admin, "\ufeff".encode() + body.encode()))
    assert report["created"] == 2
    assert report["updated"] == 1
    assert _count(client, admin) == 110
    renamed = ok(client.get("/api/v1/stations/lbn-cau-tre", headers=admin))
    assert renamed["name"] == "Trạm Cầu Tre (đổi tên)"
    assert renamed["enabled"] is False
    assert ok(client.get("/api/v1/stations/lbn-moi-2", headers=admin))["enabled"] is True


def test_bad_rows_are_reported_by_line_and_nothing_is_written(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = (
        HEADER
        + "ok-1,Tốt,smart,lbn-cau-tre,10.57,106.40,file,true\n"  # line 2: fine
        + "BAD SID,Xấu,smart,lbn-cau-tre,10.57,106.40,file,true\n"  # line 3
        + "ok-2,Tốt,tower,lbn-cau-tre,10.57,106.40,file,true\n"  # line 4: kind
        + "ok-3,Tốt,smart,nowhere,10.57,106.40,file,true\n"  # line 5: area
        + "ok-4,Tốt,smart,lbn-cau-tre,95,106.40,file,true\n"  # line 6: latitude
        + "ok-5,Tốt,smart,lbn-cau-tre,10.5,east,file,true\n"  # line 7: longitude
        + "ok-1,Lặp,smart,lbn-cau-tre,10.57,106.40,file,true\n"  # line 8: duplicate
        + "ok-6,Tốt,smart,lbn-cau-tre,10.57,106.40,file,maybe\n"  # line 9: enabled
    )
    response = _post(client, admin, body.encode())
    assert response.status_code == 422
    report = response.json()
    got = {(e["line"], e["field"]) for e in report["errors"]}
    assert got == {
        (3, "sid"),
        (4, "kind"),
        (5, "area_code"),
        (6, "latitude"),
        (7, "longitude"),
        (8, "sid"),
        (9, "enabled"),
    }
    dup = next(e for e in report["errors"] if e["line"] == 8)
    assert "line 2" in dup["message"]
    assert _count(client, admin) == 108
    assert client.get("/api/v1/stations/ok-1", headers=admin).status_code == 404
    # dry run answers 200 with the same errors
    dry = ok(_post(client, admin, body.encode(), dry_run=True))
    assert len(dry["errors"]) == 7


def test_other_encodings_and_missing_columns(client: TestClient, admin: dict[str, str]) -> None:
    latin = (HEADER + "ok-1,Trạm Lợi,smart,lbn-cau-tre,10.57,106.40,file,true\n").encode("utf-16")
    r = _post(client, admin, latin)
    assert r.status_code == 422
    assert any("UTF-8" in e["message"] for e in r.json()["errors"])
    cp = "sid,name,kind,area_code\nok-1,Tr\u1ea1m,smart,lbn-cau-tre\n".encode(
        "cp1258", errors="replace"
    )
    cp = cp.replace(b"?", b"\xe0")  # a byte that is not UTF-8
    r = _post(client, admin, cp)
    assert r.status_code == 422
    assert r.json()["errors"][0]["line"] == 2
    r = _post(client, admin, b"sid,name\nx,y\n")
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"kind", "area_code"}
    assert _post(client, admin, b"").status_code == 422
    assert _count(client, admin) == 108


def test_semicolon_csv_from_excel(client: TestClient, admin: dict[str, str]) -> None:
    body = (
        "sid;name;kind;area_code;latitude;longitude\n"
        "bt-moi;Trạm mới;smart;xa-binh-tam;10.52;106.46\n"
    )
    assert ok(_post(client, admin, body.encode()))["created"] == 1


def test_export_round_trips(client: TestClient, admin: dict[str, str]) -> None:
    exported = client.get("/api/v1/stations/export.csv?area=xa-loi-binh-nhon", headers=admin)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith(b"\xef\xbb\xbf")
    lines = exported.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("Mã trạm,Tên trạm,Loại trạm,Mã khu vực")  # Vietnamese headers
    report = ok(_post(client, admin, exported.content, dry_run=True))
    assert report == {
        "dry_run": True,
        "rows": 7,
        "created": 0,
        "updated": 7,
        "disabled": [],
        "errors": [],
    }
