"""Every mutating route of the registry, the media library and the schedules moves the
plan signal (through the one change helper, `kernel.changes.commit_change`).

The routes come from the application itself, so a new mutating route fails here until
it has an example request below, or sits in `NO_PLAN_CHANGE` with the reason it cannot
alter what a station plays.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel import signals
from kernel.security import Role
from tests.api import created, make_user
from tests.schedules import api_helpers as api

pytestmark = pytest.mark.usefixtures("tan_an")

#: Paths of the registry, the media library and the schedules.
DOMAIN_PREFIXES = (
    "/api/v1/areas",
    "/api/v1/stations",
    "/api/v1/groups",
    "/api/v1/media",
    "/api/v1/stream-sources",
    "/api/v1/programmes",
    "/api/v1/schedules",
)
MUTATING = {"post", "put", "patch", "delete"}

#: Mutating routes that cannot alter a plan, each with the reason.
NO_PLAN_CHANGE: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/areas"): "a new area holds no station and no rule names it yet",
    ("POST", "/api/v1/media"): "a new upload is a draft: nothing plays it until approved",
    ("POST", "/api/v1/media/tts"): "a new spoken bulletin is a draft, played by nothing yet",
    ("POST", "/api/v1/media/tts/preview"): "a spoken preview is read aloud and stored nowhere",
    ("POST", "/api/v1/media/compose"): "a new composition is a draft, played by nothing yet",
    ("POST", "/api/v1/schedules/preview"): "a preview saves nothing",
    ("POST", "/api/v1/media/{asset_id}/submit"): (
        "a submitted draft only joins the approval queue: nothing plays it until approved"
    ),
    ("POST", "/api/v1/schedules/rules/{rule_id}/submit"): (
        "a submitted draft rule only joins the approval queue: it airs once approved"
    ),
    ("POST", "/api/v1/areas/reorganisations/preview"): "a preview saves nothing",
    ("POST", "/api/v1/areas/reorganisations/{reorganisation_id}/undo"): (
        "through the API it cancels a scheduled plan, which changed nothing yet (an applied "
        "plan's date has come); undoing an applied one moves the signal (test_reorg)"
    ),
    ("POST", "/api/v1/stations/{sid}/credentials"): "broker access, not what is planned",
    ("DELETE", "/api/v1/stations/{sid}/credentials"): "broker access, not what is planned",
    ("POST", "/api/v1/stations/{sid}/commands"): "a one-off command, not the plan",
}

_serial = itertools.count(1)


@dataclass
class Ctx:
    client: TestClient
    admin: dict[str, str]
    approver: dict[str, str]
    factory: sessionmaker[Session]
    made: dict[str, Any] = field(default_factory=dict)

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        return created(self.client, self.admin, path, body, status)

    def n(self) -> int:
        return next(_serial)

    def asset(self, *, approved: bool = True) -> int:
        return api.make_asset(self.factory, f"Bản tin {self.n()}", approved=approved)

    def source(self) -> dict[str, Any]:
        return api.create_source(self.client, self.admin, f"Nguồn {self.n()}")

    def programme(self) -> dict[str, Any]:
        return api.create_programme(self.client, self.admin, api.asset_item(self.asset()))

    def rule(self) -> dict[str, Any]:
        body = api.rule_body(self.programme()["id"], api.daily("06:00"), stations=["p1-kp-1"])
        return api.create_rule(self.client, self.admin, body)

    def area(self) -> str:
        code = f"ap-moi-{self.n()}"
        self.post(
            "/api/v1/areas",
            {"code": code, "name": f"Ấp mới {code}", "level": "hamlet", "parent_code": "phuong-1"},
        )
        return code

    def station(self) -> str:
        sid = f"tram-moi-{self.n()}"
        self.post(
            "/api/v1/stations",
            {"sid": sid, "name": f"Trạm {sid}", "kind": "smart", "area_code": "p1-kp-1"},
        )
        return sid

    def group(self) -> str:
        gid = f"nhom-{self.n()}"
        self.post("/api/v1/groups", {"gid": gid, "name": f"Nhóm {gid}", "stations": ["p1-kp-1"]})
        return gid


Call = Callable[[], Any]
Example = Callable[[Ctx], Call]


def _csv(ctx: Ctx) -> Call:
    sid = f"tram-csv-{ctx.n()}"
    content = f"sid,name,kind,area_code\n{sid},Trạm CSV,smart,p1-kp-1\n".encode()
    return lambda: ctx.client.post(
        "/api/v1/stations/import",
        files={"file": ("stations.csv", content, "text/csv")},
        headers=ctx.admin,
    )


def _station_body(ctx: Ctx) -> dict[str, Any]:
    sid = f"tram-moi-{ctx.n()}"
    return {"sid": sid, "name": f"Trạm {sid}", "kind": "smart", "area_code": "p1-kp-1"}


def _approve_rule(ctx: Ctx, verb: str) -> Call:
    rule_id = ctx.rule()["id"]
    path = f"/api/v1/schedules/rules/{rule_id}/{verb}"
    return lambda: ctx.client.post(path, headers=ctx.approver)


def _review_asset(ctx: Ctx, verb: str) -> Call:
    asset_id = ctx.asset(approved=False)
    return lambda: ctx.client.post(f"/api/v1/media/{asset_id}/{verb}", headers=ctx.approver)


def _reorganisation(ctx: Ctx) -> dict[str, Any]:
    """A plan of its own past date (one plan a date; dated in the past, so applied now,
    not scheduled): rename a new hamlet."""
    n = ctx.n()
    return {
        "name": f"Sắp xếp {n}",
        "effective": f"{2000 + n}-01-01",
        "steps": [{"kind": "rename", "unit": ctx.area(), "name": f"Ấp đổi tên {n}"}],
    }


def _do(ctx: Ctx, method: str, path: str, body: dict[str, Any] | None = None) -> Call:
    return lambda: ctx.client.request(method, path, json=body, headers=ctx.admin)


EXAMPLES: dict[tuple[str, str], Example] = {
    ("PATCH", "/api/v1/areas/{code}"): lambda c: _do(
        c, "PATCH", f"/api/v1/areas/{c.area()}", {"name": "Ấp đổi tên"}
    ),
    ("DELETE", "/api/v1/areas/{code}"): lambda c: _do(c, "DELETE", f"/api/v1/areas/{c.area()}"),
    ("POST", "/api/v1/areas/reorganisations"): lambda c: _do(
        c, "POST", "/api/v1/areas/reorganisations", _reorganisation(c)
    ),
    ("POST", "/api/v1/stations"): lambda c: _do(c, "POST", "/api/v1/stations", _station_body(c)),
    ("POST", "/api/v1/stations/import"): _csv,
    ("PATCH", "/api/v1/stations/{sid}"): lambda c: _do(
        c, "PATCH", f"/api/v1/stations/{c.station()}", {"default_volume": 55}
    ),
    ("DELETE", "/api/v1/stations/{sid}"): lambda c: _do(
        c, "DELETE", f"/api/v1/stations/{c.station()}"
    ),
    ("POST", "/api/v1/groups"): lambda c: _do(
        c, "POST", "/api/v1/groups", {"gid": f"nhom-{c.n()}", "name": "Nhóm", "areas": ["phuong-2"]}
    ),
    ("PATCH", "/api/v1/groups/{gid}"): lambda c: _do(
        c, "PATCH", f"/api/v1/groups/{c.group()}", {"stations": ["p1-kp-2"]}
    ),
    ("DELETE", "/api/v1/groups/{gid}"): lambda c: _do(c, "DELETE", f"/api/v1/groups/{c.group()}"),
    ("PATCH", "/api/v1/media/{asset_id}"): lambda c: _do(
        c, "PATCH", f"/api/v1/media/{c.asset()}", {"title": "Tên mới"}
    ),
    ("DELETE", "/api/v1/media/{asset_id}"): lambda c: _do(
        c, "DELETE", f"/api/v1/media/{c.asset()}"
    ),
    ("POST", "/api/v1/media/{asset_id}/approve"): lambda c: _review_asset(c, "approve"),
    ("POST", "/api/v1/media/{asset_id}/reject"): lambda c: _review_asset(c, "reject"),
    ("POST", "/api/v1/stream-sources"): lambda c: _do(
        c,
        "POST",
        "/api/v1/stream-sources",
        {"name": f"VOV {c.n()}", "url": "http://stream.example/vov", "kind": "national"},
    ),
    ("PATCH", "/api/v1/stream-sources/{source_id}"): lambda c: _do(
        c, "PATCH", f"/api/v1/stream-sources/{c.source()['id']}", {"enabled": False}
    ),
    ("DELETE", "/api/v1/stream-sources/{source_id}"): lambda c: _do(
        c, "DELETE", f"/api/v1/stream-sources/{c.source()['id']}"
    ),
    ("POST", "/api/v1/programmes"): lambda c: _do(
        c, "POST", "/api/v1/programmes", {"title": "CT", "items": [api.asset_item(c.asset())]}
    ),
    ("PATCH", "/api/v1/programmes/{programme_id}"): lambda c: _do(
        c, "PATCH", f"/api/v1/programmes/{c.programme()['id']}", {"title": "CT mới"}
    ),
    ("DELETE", "/api/v1/programmes/{programme_id}"): lambda c: _do(
        c, "DELETE", f"/api/v1/programmes/{c.programme()['id']}"
    ),
    ("POST", "/api/v1/schedules/rules"): lambda c: _do(
        c,
        "POST",
        "/api/v1/schedules/rules",
        api.rule_body(c.programme()["id"], api.daily("07:00"), groups=["phuong-1"]),
    ),
    ("PATCH", "/api/v1/schedules/rules/{rule_id}"): lambda c: _do(
        c, "PATCH", f"/api/v1/schedules/rules/{c.rule()['id']}", {"order": 3}
    ),
    ("DELETE", "/api/v1/schedules/rules/{rule_id}"): lambda c: _do(
        c, "DELETE", f"/api/v1/schedules/rules/{c.rule()['id']}"
    ),
    ("POST", "/api/v1/schedules/rules/{rule_id}/approve"): lambda c: _approve_rule(c, "approve"),
    ("POST", "/api/v1/schedules/rules/{rule_id}/reject"): lambda c: _approve_rule(c, "reject"),
}


def _mutating_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(DOMAIN_PREFIXES)
        for method in operations
        if method in MUTATING
    )


def _generation(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return signals.current(session)[0]


def test_every_mutating_route_moves_the_plan_signal(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    routes = _mutating_routes(app)
    assert len(routes) >= len(EXAMPLES), "the app lost routes the examples still name"
    unknown = [r for r in routes if r not in EXAMPLES and r not in NO_PLAN_CHANGE]
    assert not unknown, (
        f"mutating routes with neither an example nor a reason in NO_PLAN_CHANGE: {unknown}"
    )
    stale = [r for r in (*EXAMPLES, *NO_PLAN_CHANGE) if r not in routes]
    assert not stale, f"examples or reasons for routes the app does not have: {stale}"
    approver = make_user(session_factory, "duyet", Role.APPROVER, ["tan-an"])
    ctx = Ctx(client, admin, approver, session_factory)
    silent = []
    for route in routes:
        if route in NO_PLAN_CHANGE:
            continue
        call = EXAMPLES[route](ctx)
        before = _generation(session_factory)
        response = call()
        assert response.status_code < 300, f"{route}: {response.status_code} {response.text}"
        if _generation(session_factory) <= before:
            silent.append(route)
    assert not silent, f"these routes changed data without moving the plan signal: {silent}"
