"""A seeded deployment of the service (child processes) with simulated stations, and
what the fail-over and replica tests ask of it: staging every station with the seed's
relay fallback (cached everywhere, so no download is what a kill interrupts), counting
plays and acks per station, proof of play, the command publishes the broker carried.
The ``stack`` fixture (in `tests.support.fixtures`) builds one seeded with Tân An."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from audio_library.models import MediaAsset
from firmware_bridge.simulator.fleet import Fleet, FleetConfig, FleetThread
from firmware_bridge.simulator.station import SimSettings, StationSpec
from schedules.seed import FALLBACK_TITLE
from tests.support.live import send_broadcast
from tests.support.loa import wait_until
from tests.support.service import Deployment, ServiceProcess

QUICK = SimSettings(reconnect_min_s=0.2, reconnect_max_s=1.0)


@dataclass
class Stack(Deployment):
    """A seeded deployment of the service (processes) and simulated stations."""

    fleets: list[FleetThread] = field(default_factory=list)

    def stop(self) -> None:
        for fleet in self.fleets:
            fleet.stop()
        super().stop()

    def fleet(self, sids: list[str]) -> FleetThread:
        fleet = FleetThread(
            FleetConfig(
                mqtt_url=self.broker.url,
                state_dir=self.tmp / f"sim-{len(self.fleets)}",
                settings=QUICK,
            ),
            [StationSpec(sid) for sid in sids],
        )
        self.fleets.append(fleet)
        fleet.start(timeout_s=60)
        return fleet

    def sids(self) -> list[str]:
        with self.http() as http:
            response = http.get("/api/v1/stations", params={"limit": 500})
            assert response.status_code == 200, response.text
            return [s["sid"] for s in response.json()["items"]]

    def fallback(self) -> tuple[int, str, int]:
        """(id, sha256, bytes) of the seed's relay fallback, which every station caches."""
        with self.factory() as session:
            row = session.execute(
                select(MediaAsset.id, MediaAsset.sha256, MediaAsset.bytes).where(
                    MediaAsset.title == FALLBACK_TITLE
                )
            ).one()
        return int(row[0]), str(row[1]), int(row[2])

    def broadcast(self, http: httpx.Client, **payload: Any) -> dict[str, Any]:
        return send_broadcast(http, payload)

    def progress(self, http: httpx.Client, broadcast_id: int) -> dict[str, Any]:
        response = http.get(f"/api/v1/broadcasts/{broadcast_id}", params={"stations": "false"})
        assert response.status_code == 200, response.text
        progress: dict[str, Any] = response.json()["progress"]
        return progress

    def logs(self) -> str:
        return "\n".join(
            f"---- {s.log_path.name} (pid {s.proc.pid if s.proc else '-'})\n{s.log_tail(40)}"
            for s in self.services
        )


def staged(stack: Stack, fleet: FleetThread, sids: list[str]) -> None:
    """Until every station applied its desired state and holds the fallback media, and
    the service knows it (so a broadcast to whole groups goes out as one group publish)."""
    _, sha, size = stack.fallback()

    def ready(f: Fleet) -> bool:
        return all(
            f.station(s).online
            and (f.station(s).status().desired_version or 0) >= 1
            and not f.station(s).status().missing
            and f.station(s).store.has_media(sha, size)
            for s in sids
        )

    wait_until(
        lambda: fleet.call(ready), timeout_s=90, what="stations staged with the fallback media"
    )
    with stack.http() as http:

        def in_sync() -> bool:
            rows = http.get("/api/v1/dispatch/convergence").json()["items"]
            return not [r for r in rows if r["sid"] in sids]

        wait_until(in_sync, timeout_s=30, what="the service seeing every station in sync")


def started_plays(fleet: FleetThread, cmd_id: str) -> dict[str, int]:
    """How many times each station started playing ``cmd_id``."""

    def count(f: Fleet) -> dict[str, int]:
        return {
            sid: sum(
                1 for r in f.station(sid).player.history if r.cmd_id == cmd_id and r.started_at
            )
            for sid in f.sids
        }

    return fleet.call(count)


def station_acks(fleet: FleetThread, cmd_id: str) -> dict[str, str | None]:
    return fleet.call(lambda f: {sid: f.station(sid).status().acks.get(cmd_id) for sid in f.sids})


def proof_of_play(stack: Stack, cmd_id: str, count: int) -> None:
    """Until the play log holds ``count`` plays of ``cmd_id``, every one ``played``: the
    stations' events reached the service, those sent while it was down included."""

    def statuses() -> list[str]:
        with stack.http() as http:
            items = http.get(
                "/api/v1/playlog", params={"source": "broadcast", "limit": 1000}
            ).json()["items"]
        return [p["status"] for p in items if p["cmd_id"] == cmd_id]

    last: list[list[str]] = [[]]

    def done() -> bool:
        last[0] = statuses()
        return len(last[0]) == count and set(last[0]) == {"played"}

    try:
        wait_until(done, timeout_s=30, what="proof of play")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {sorted(last[0])}") from None


def published_ids(stack: Stack, title: str) -> list[tuple[str, str]]:
    """(topic, cmd_id) of every command publish the broker carried for ``title``."""
    return [
        (r.topic, r.data["cmd_id"])
        for r in stack.recorder.select("command", where=lambda d: d["body"].get("title") == title)
    ]


def all_staged(stack: Stack) -> tuple[ServiceProcess, list[str], FleetThread]:
    """The service (active) and all 108 stations online, staged with the fallback."""
    service = stack.new_service("all").start()
    service.wait_ready(worker="active")
    sids = stack.sids()
    assert len(sids) == 108
    fleet = stack.fleet(sids)
    staged(stack, fleet, sids)
    return service, sids, fleet


def play_fallback(
    stack: Stack, http: httpx.Client, title: str, targets: dict[str, list[str]], **extra: Any
) -> dict[str, Any]:
    """A broadcast of the fallback media (cached on every station), valid five minutes."""
    asset_id, _, _ = stack.fallback()
    return stack.broadcast(
        http,
        targets=targets,
        content={"asset_id": asset_id},
        title=title,
        expires_in_s=300,
        **extra,
    )


def emergency_to_all(stack: Stack, http: httpx.Client, title: str, **extra: Any) -> dict[str, Any]:
    """An emergency broadcast of the fallback media to the whole city."""
    return play_fallback(stack, http, title, {"areas": ["tan-an"]}, tier="emergency", **extra)
