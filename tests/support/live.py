"""The whole service for end-to-end tests: a real Mosquitto, the app with its worker
served over real HTTP (stations download media from it), and simulated stations.

Every message on the broker is recorded and validated against the shared schemas.
The ``live`` fixture (:mod:`tests.support.fixtures`) builds a :class:`Live` with
:func:`start_live`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from firmware_bridge.simulator import (
    FaultSettings,
    FaultSpec,
    FleetConfig,
    FleetThread,
    SimSettings,
    StationSpec,
)
from kernel.security import Role as UserRole
from kernel.signals import plan_changed
from stations import tan_an
from tests.api import PASSWORD, make_user
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.protocol import Recorder


@dataclass
class Live:
    """A running service (app + worker over HTTP) against a real broker."""

    settings: Settings
    broker: Mosquitto
    recorder: Recorder
    app: Any
    base_url: str
    admin: dict[str, str]
    factory: sessionmaker[Session]
    server: uvicorn.Server
    thread: threading.Thread
    tmp: Path
    fleets: list[FleetThread] = field(default_factory=list)
    _approver: dict[str, str] | None = None

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.admin, timeout=30)

    def page(self, path: str) -> str:
        """A dashboard page (``path`` with its query) as the signed-in admin sees it."""
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            signed_in = http.post(
                "/dang-nhap",
                data={"username": "admin", "password": PASSWORD, "next": "/"},
                headers={"Origin": self.base_url},
                follow_redirects=False,
            )
            assert signed_in.status_code == 303, signed_in.text
            page = http.get(path)
        assert page.status_code == 200, page.text
        return page.text

    def worker(self) -> Any:
        return wait_until(lambda: self.app.state.runtime.worker, what="active worker")

    def fleet(
        self,
        sids: Sequence[str],
        *,
        faults: Sequence[str] = (),
        seed: int | None = None,
        fault_settings: FaultSettings | None = None,
        **settings: Any,
    ) -> FleetThread:
        """Simulated stations (with fault injection: ``faults`` are specs, timings in
        ``fault_settings``); stopped by :meth:`stop`."""
        if fault_settings is not None:
            settings["faults"] = fault_settings
        config = FleetConfig(
            mqtt_url=self.broker.url,
            state_dir=self.tmp / f"sim-{len(self.fleets)}",
            settings=SimSettings(**settings),
            seed=seed,
        )
        fleet = FleetThread(
            config, [StationSpec(sid) for sid in sids], [FaultSpec.parse(f) for f in faults]
        )
        self.fleets.append(fleet)
        fleet.start(timeout_s=30)
        return fleet

    def seed(self) -> list[str]:
        """Load Tân An; return every station id."""
        with db.session_scope(self.factory) as session:
            tan_an.load(session)
            plan_changed(session, "test seed")
        with self.http() as http:
            return [s["sid"] for s in http.get("/api/v1/stations?limit=500").json()["items"]]

    def approver(self) -> dict[str, str]:
        if self._approver is None:
            self._approver = make_user(self.factory, "duyet", UserRole.APPROVER, ["tan-an"])
        return self._approver

    def approved_tts(self, text: str) -> int:
        """A bulletin spoken by TTS and approved by a second person."""
        with self.http() as http:
            made = http.post("/api/v1/media/tts", json={"text": text, "title": text[:40]})
            assert made.status_code == 201, made.text
            asset_id = int(made.json()["id"])
            done = http.post(f"/api/v1/media/{asset_id}/approve", headers=self.approver())
            assert done.status_code == 200, done.text
        return asset_id

    def approved_rule(
        self, *, asset_id: int, at: dt.datetime, groups: list[str], tier: str = "normal"
    ) -> int:
        """A programme of one asset, played once at `at` on `groups`, approved."""
        local = at.astimezone(ZoneInfo(self.settings.timezone)).replace(tzinfo=None)
        with self.http() as http:
            programme = http.post(
                "/api/v1/programmes",
                json={
                    "title": "Chương trình thử",
                    "items": [{"kind": "asset", "asset_id": asset_id}],
                },
            )
            assert programme.status_code == 201, programme.text
            rule = http.post(
                "/api/v1/schedules/rules",
                json={
                    "title": "Phát thử",
                    "programme_id": programme.json()["id"],
                    "targets": {"groups": groups},
                    "tier": tier,
                    "recurrence": {
                        "when": {"kind": "once", "at": local.isoformat(timespec="seconds")}
                    },
                },
            )
            assert rule.status_code == 201, rule.text
            rule_id = int(rule.json()["id"])
            done = http.post(f"/api/v1/schedules/rules/{rule_id}/approve", headers=self.approver())
            assert done.status_code == 200, done.text
        return rule_id

    def stop_server(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def stop(self) -> None:
        """Stop the fleets and the server (the broker and recorder are the caller's)."""
        for fleet in self.fleets:
            fleet.stop()
        self.stop_server()


def send_broadcast(http: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
    """POST `payload` to the broadcasts API; the created broadcast (201 checked)."""
    response = http.post("/api/v1/broadcasts", json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def start_live(settings: Settings, tmp: Path, broker: Mosquitto, recorder: Recorder) -> Live:
    """The app with its worker (``Role.ALL``) over HTTP on a free port, on ``broker``."""
    port = free_port()
    live_settings = settings.model_copy(
        update={"mqtt_url": broker.url, "public_base_url": f"http://127.0.0.1:{port}"}
    )
    app = create_app(live_settings, role=Role.ALL)
    server, thread = start_server(app, port)
    factory = app.state.sessionmaker
    return Live(
        settings=live_settings,
        broker=broker,
        recorder=recorder,
        app=app,
        base_url=f"http://127.0.0.1:{port}",
        admin=make_user(factory, "admin", UserRole.ADMIN, can_emergency=True),
        factory=factory,
        server=server,
        thread=thread,
        tmp=tmp,
    )


def start_server(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the service did not start"
        assert time.monotonic() < deadline, "the service did not start in time"
        time.sleep(0.05)
    return server, thread
