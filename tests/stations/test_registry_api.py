"""Registry API: areas, stations, groups, filters, bad input."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from tests.api import created, ok

pytestmark = pytest.mark.usefixtures("tan_an")


def test_seeded_tan_an_has_108_stations_in_14_units(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = ok(client.get("/api/v1/stations?limit=200", headers=admin))
    assert body["total"] == 108
    kinds = Counter(s["kind"] for s in body["items"])
    assert kinds == {"hamlet": 71, "smart": 37}
    for s in body["items"]:
        assert 10.49 <= s["latitude"] <= 10.59
        assert 106.36 <= s["longitude"] <= 106.48
    units = ok(client.get("/api/v1/areas?parent=tan-an&limit=100", headers=admin))
    assert units["total"] == 14
    assert Counter(a["level"] for a in units["items"]) == {"ward": 9, "commune": 5}
    hamlets = ok(client.get("/api/v1/areas?level=hamlet&limit=1", headers=admin))
    assert hamlets["total"] == 82
    # every station sits under one of the 14 units
    per_unit = {
        a["code"]: ok(client.get(f"/api/v1/stations?area={a['code']}&limit=1", headers=admin))[
            "total"
        ]
        for a in units["items"]
    }
    assert sum(per_unit.values()) == 108
    assert all(per_unit.values())


def test_search_ignores_diacritics(client: TestClient, admin: dict[str, str]) -> None:
    areas = ok(client.get("/api/v1/areas", params={"q": "loi binh nhon"}, headers=admin))
    assert [a["code"] for a in areas["items"]] == ["xa-loi-binh-nhon"]
    assert areas["items"][0]["name"] == "Xã Lợi Bình Nhơn"
    same = ok(client.get("/api/v1/areas", params={"q": "Lợi Bình Nhơn"}, headers=admin))
    assert same["items"] == areas["items"]
    hamlet = ok(client.get("/api/v1/areas", params={"q": "cau tre"}, headers=admin))
    assert [a["name"] for a in hamlet["items"]] == ["Ấp Cầu Tre"]
    stations = ok(client.get("/api/v1/stations", params={"q": "CẦU TRE"}, headers=admin))
    assert stations["total"] >= 1
    assert all("Cầu Tre" in s["name"] for s in stations["items"])


def test_list_filters_and_paging(client: TestClient, admin: dict[str, str]) -> None:
    smart = ok(client.get("/api/v1/stations?kind=smart&limit=10&offset=30", headers=admin))
    assert smart["total"] == 37
    assert len(smart["items"]) == 7
    lbn = ok(client.get("/api/v1/stations?area=xa-loi-binh-nhon&limit=100", headers=admin))
    assert lbn["total"] == 7
    assert {s["area_code"].split("-")[0] for s in lbn["items"]} == {"lbn"}
    hamlets_of_lbn = ok(client.get("/api/v1/areas?parent=xa-loi-binh-nhon", headers=admin))
    assert hamlets_of_lbn["total"] == 8
    assert client.get("/api/v1/stations?limit=0", headers=admin).status_code == 422
    assert client.get("/api/v1/stations?limit=5000", headers=admin).status_code == 422
    assert client.get("/api/v1/stations?kind=tower", headers=admin).status_code == 422
    assert client.get("/api/v1/stations?area=nowhere", headers=admin).status_code == 404


def test_station_crud(client: TestClient, admin: dict[str, str]) -> None:
    payload = {
        "sid": "lbn-cau-tre-2",
        "name": "Cụm loa Cầu Tre 2",
        "kind": "smart",
        "area_code": "lbn-cau-tre",
        "latitude": 10.57,
        "longitude": 106.40,
        "sim_iccid": "8984048000001234567",
        "phone": "0912345678",
    }
    created = ok(client.post("/api/v1/stations", json=payload, headers=admin), 201)
    assert created["sid"] == "lbn-cau-tre-2"
    assert created["area_code"] == "lbn-cau-tre"
    assert created["online"] is False
    assert created["last_seen"] is None
    updated = ok(
        client.patch(
            "/api/v1/stations/lbn-cau-tre-2",
            json={"default_volume": 55, "name": "Cụm loa mới"},
            headers=admin,
        )
    )
    assert updated["default_volume"] == 55
    assert updated["name"] == "Cụm loa mới"
    moved = ok(
        client.patch("/api/v1/stations/lbn-cau-tre-2", json={"area_code": "p2-kp-1"}, headers=admin)
    )
    assert moved["area_code"] == "p2-kp-1"
    assert client.delete("/api/v1/stations/lbn-cau-tre-2", headers=admin).status_code == 204
    assert client.get("/api/v1/stations/lbn-cau-tre-2", headers=admin).status_code == 404


def test_station_bad_input(client: TestClient, admin: dict[str, str]) -> None:
    base = {"sid": "x-1", "name": "X", "kind": "smart", "area_code": "lbn-cau-tre"}
    dup = client.post("/api/v1/stations", json={**base, "sid": "lbn-cau-tre"}, headers=admin)
    assert dup.status_code == 409
    assert "lbn-cau-tre" in dup.json()["detail"]
    bad_sid = client.post("/api/v1/stations", json={**base, "sid": "Bad SID!"}, headers=admin)
    assert bad_sid.status_code == 422
    assert bad_sid.json()["detail"][0]["loc"] == ["body", "sid"]
    unknown = client.post("/api/v1/stations", json={**base, "area_code": "nowhere"}, headers=admin)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "area_code"]
    assert "nowhere" in unknown.json()["detail"][0]["msg"]
    for field, value in [
        ("latitude", 91),
        ("longitude", "east"),
        ("default_volume", 101),
        ("capabilities", ["laser"]),
    ]:
        r = client.post("/api/v1/stations", json={**base, field: value}, headers=admin)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["detail"][0]["loc"][:2] == ["body", field]
    assert (
        client.post(
            "/api/v1/stations",
            content=b"{not json",
            headers={**admin, "Content-Type": "application/json"},
        ).status_code
        == 422
    )
    assert client.post("/api/v1/stations", json=[1, 2], headers=admin).status_code == 422
    nulls = client.patch("/api/v1/stations/lbn-cau-tre", json={"name": None}, headers=admin)
    assert nulls.status_code == 422


def test_area_rules(client: TestClient, admin: dict[str, str]) -> None:
    dup = client.post(
        "/api/v1/areas",
        json={"code": "phuong-1", "name": "X", "level": "ward", "parent_code": "tan-an"},
        headers=admin,
    )
    assert dup.status_code == 409
    assert "phuong-1" in dup.json()["detail"]
    cycle = client.patch(
        "/api/v1/areas/xa-loi-binh-nhon", json={"parent_code": "lbn-cau-tre"}, headers=admin
    )
    assert cycle.status_code == 422
    assert cycle.json()["detail"][0]["loc"] == ["body", "parent_code"]
    assert "descendant" in cycle.json()["detail"][0]["msg"]
    self_parent = client.patch(
        "/api/v1/areas/xa-binh-tam", json={"parent_code": "xa-binh-tam"}, headers=admin
    )
    assert self_parent.status_code == 422
    held = client.delete("/api/v1/areas/xa-loi-binh-nhon", headers=admin)
    assert held.status_code == 409
    assert "station" in held.json()["detail"]
    orphan = client.post(
        "/api/v1/areas", json={"code": "ap-x", "name": "Ấp X", "level": "hamlet"}, headers=admin
    )
    assert orphan.status_code == 422
    wrong_level = client.post(
        "/api/v1/areas",
        json={"code": "ap-y", "name": "Ấp Y", "level": "ward", "parent_code": "lbn-cau-tre"},
        headers=admin,
    )
    assert wrong_level.status_code == 422
    # a new commune gets its group; deleting the empty commune removes it
    created(
        client,
        admin,
        "/api/v1/areas",
        {"code": "xa-moi", "name": "Xã Mới", "level": "commune", "parent_code": "tan-an"},
    )
    group = ok(client.get("/api/v1/groups/xa-moi", headers=admin))
    assert group["auto"] is True
    assert group["areas"] == ["xa-moi"]
    created(
        client,
        admin,
        "/api/v1/areas",
        {
            "code": "xa-moi-ap-1",
            "name": "Ấp 1",
            "level": "hamlet",
            "parent_code": "xa-moi",
        },
    )
    assert client.delete("/api/v1/areas/xa-moi", headers=admin).status_code == 409
    assert client.delete("/api/v1/areas/xa-moi-ap-1", headers=admin).status_code == 204
    assert client.delete("/api/v1/areas/xa-moi", headers=admin).status_code == 204
    assert client.get("/api/v1/groups/xa-moi", headers=admin).status_code == 404


def test_groups_resolve_area_subtrees_at_use_time(
    client: TestClient, admin: dict[str, str]
) -> None:
    groups = ok(client.get("/api/v1/groups?limit=100", headers=admin))
    gids = {g["gid"] for g in groups["items"]}
    assert "all" in gids
    assert "xa-loi-binh-nhon" in gids
    assert "phuong-2" in gids
    assert groups["total"] == 15
    before = ok(client.get("/api/v1/groups/xa-loi-binh-nhon/stations", headers=admin))["total"]
    created(
        client,
        admin,
        "/api/v1/stations",
        {"sid": "lbn-new", "name": "Mới", "kind": "smart", "area_code": "lbn-cau-tre"},
    )
    after = ok(client.get("/api/v1/groups/xa-loi-binh-nhon/stations", headers=admin))
    assert after["total"] == before + 1
    assert "lbn-new" in after["stations"]
    assert ok(client.get("/api/v1/groups/all", headers=admin))["station_count"] == 109
    # a custom group mixing stations and areas
    custom = created(
        client,
        admin,
        "/api/v1/groups",
        {
            "gid": "ven-song",
            "name": "Ven sông Vàm Cỏ",
            "stations": ["p2-kp-1"],
            "areas": ["xa-binh-tam"],
        },
    )
    assert (
        custom["station_count"]
        == 1 + ok(client.get("/api/v1/stations?area=xa-binh-tam", headers=admin))["total"]
    )
    bad = client.post(
        "/api/v1/groups", json={"gid": "g2", "name": "G", "stations": ["nope"]}, headers=admin
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "stations", 0]
    assert client.delete("/api/v1/groups/all", headers=admin).status_code == 409
    assert (
        client.patch(
            "/api/v1/groups/phuong-2", json={"stations": ["lbn-new"]}, headers=admin
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/api/v1/groups", json={"gid": "ven-song", "name": "again"}, headers=admin
        ).status_code
        == 409
    )
    assert client.delete("/api/v1/groups/ven-song", headers=admin).status_code == 204


def test_health(client: TestClient) -> None:
    assert ok(client.get("/healthz")) == {"status": "ok"}
    ready = ok(client.get("/readyz"))
    assert ready["checks"]["database"]["ok"] is True
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static/app/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert client.get("/static/app/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_errors_are_rfc9457_problems(client: TestClient, admin: dict[str, str]) -> None:
    """Errors answer ``application/problem+json`` with a stable ``code`` and
    ``message_vi``, and the OpenAPI document says so; unknown dashboard URLs answer the
    Vietnamese 404 page instead."""
    missing = client.get("/api/v1/stations/khong-co", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    body = missing.json()
    assert body["status"] == 404
    assert body["title"] == "Not Found"
    assert body["code"] == "station_not_found"
    assert body["message_vi"]
    unknown = client.get("/api/v1/khong-co-duong-nay")
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "not_found"
    invalid = client.get("/api/v1/stations?limit=-1", headers=admin)
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert invalid.json()["code"] == "validation_error"
    page = client.get("/khong-co-trang-nay")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Không tìm thấy" in page.text
    document = client.get("/openapi.json").json()
    errors = document["paths"]["/api/v1/stations"]["get"]["responses"]["404"]["content"]
    assert list(errors) == ["application/problem+json"]
