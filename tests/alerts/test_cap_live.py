"""CAP end to end: the real service over HTTP, Mosquitto and 108 simulated stations."""

from __future__ import annotations

from stations import tan_an
from tests.alerts.capdocs import FLOOD_BOX, box_polygon, flood_alert, inside, reference
from tests.support.live import Live
from tests.support.loa import wait_until


def test_flood_polygon_reaches_exactly_the_stations_inside_and_cancel_stops_it(
    live: Live,
) -> None:
    sids = live.seed()
    fleet = live.fleet(sids)
    wait_until(
        lambda: all((fleet.station(s).desired_version or 0) >= 1 for s in sids),
        timeout_s=90,
        what="every station applied its desired state",
    )
    expected = sorted(
        s.sid for s in tan_an.stations() if inside(FLOOD_BOX, s.latitude, s.longitude)
    )
    outside = sorted(set(sids) - set(expected))
    assert expected
    assert outside
    with live.http() as http:
        source = http.post("/api/v1/alert-sources", json={"name": "PCTT", "auto_air": True})
        assert source.status_code == 201, source.text
        token = {"X-Alert-Token": source.json()["token"], "Content-Type": "application/cap+xml"}
        sent = http.post(
            "/api/v1/alerts/cap",
            content=flood_alert("LA-LU-E2E", polygon=box_polygon(), risk_level=5),
            headers=token,
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["aired"] is True
        broadcast_id = sent.json()["broadcast_id"]
        cmd_id = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["cmd_id"]

        def playing(sid: str) -> bool:
            current = fleet.station(sid).playing
            return current is not None and current.cmd_id == cmd_id

        wait_until(
            lambda: all(playing(s) for s in expected),
            timeout_s=60,
            what="every station inside the polygon playing the alert",
        )
        # nothing was ever sent to a station outside the polygon
        to_outside = live.recorder.select(
            "command", where=lambda d: d.get("cmd_id") == cmd_id and d.get("type") == "play"
        )
        assert {r.sid for r in to_outside} == set(expected)
        assert not any(cmd_id in fleet.station(s).acks for s in outside)

        cancel = http.post(
            "/api/v1/alerts/cap",
            content=flood_alert(
                "LA-LU-E2E-HUY",
                msg_type="Cancel",
                references=reference("LA-LU-E2E"),
                with_info=False,
            ),
            headers=token,
        )
        assert cancel.status_code == 202, cancel.text
        assert cancel.json()["stopped_broadcasts"] == [broadcast_id]
        wait_until(
            lambda: not any(playing(s) for s in expected),
            timeout_s=30,
            what="every station stopped",
        )
        for sid in expected:
            plays = [p for p in fleet.station(sid).plays if p.cmd_id == cmd_id]
            assert plays
            assert all("stopped by" in (p.reason or "") for p in plays), plays
        assert http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "stopped"
