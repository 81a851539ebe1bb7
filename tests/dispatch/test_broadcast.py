"""Broadcasts end to end: real broker, the service over HTTP, simulated stations."""

from __future__ import annotations

import pytest

from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until


def _applied(live: Live, sids: list[str]) -> bool:
    fleet = live.fleets[0]
    return all((fleet.station(sid).desired_version or 0) >= 1 for sid in sids)


def test_emergency_reaches_every_station_and_preempts(live: Live) -> None:
    sids = live.seed()
    assert len(sids) == 108
    fleet = live.fleet(sids)
    wait_until(
        lambda: _applied(live, sids), timeout_s=60, what="every station applied its desired state"
    )
    bulletin = live.approved_tts("Thông báo lịch tiêm chủng mở rộng tại trạm y tế xã. " * 4)
    lbn = [s for s in sids if s.startswith("lbn-")]
    with live.http() as http:
        normal = send_broadcast(
            http,
            {
                "targets": {"groups": ["xa-loi-binh-nhon"]},
                "content": {"asset_id": bulletin},
                "tier": "normal",
            },
        )
        assert normal["route"] == "groups"
        assert normal["groups"] == ["xa-loi-binh-nhon"]
        normal_cmd = normal["cmd_id"]
        wait_until(
            lambda: all(
                (p := fleet.station(s).playing) is not None and p.cmd_id == normal_cmd for s in lbn
            ),
            timeout_s=20,
            what="the commune playing the normal bulletin",
        )
        body = send_broadcast(
            http,
            {
                "targets": {"areas": ["tan-an"]},
                "content": {
                    "text": "Cảnh báo triều cường. Người dân khẩn trương di chuyển đến nơi an toàn."
                },
                "tier": "emergency",
                "title": "Cảnh báo triều cường",
            },
        )
        assert body["route"] == "groups"
        assert body["groups"] == ["all"]
        assert body["priority"] == 9
        assert "stands in for approval" in body["approval_note"]
        broadcast_id = body["id"]

        def everyone_received() -> bool:
            progress = http.get(f"/api/v1/broadcasts/{broadcast_id}?stations=false").json()[
                "progress"
            ]
            return progress["received"] == 108

        wait_until(everyone_received, timeout_s=30, what="RECEIVED from all 108 stations")
        # exactly one play command reached the broker for the emergency, under one cmd_id
        published = live.recorder.select("command")
        emergency_cmds = {
            r.data["cmd_id"] for r in published if r.data["body"].get("priority") == 9
        }
        assert emergency_cmds == {body["cmd_id"]}
        # the commune's normal bulletin was preempted, and the play log says partial
        wait_until(
            lambda: all(
                any(
                    p.cmd_id == normal_cmd and p.outcome == "preempted"
                    for p in fleet.station(s).plays
                )
                for s in lbn
            ),
            timeout_s=20,
            what="preemption reported",
        )

        def reconciled() -> list[str]:
            log = http.get(
                "/api/v1/playlog",
                params={"area": "xa-loi-binh-nhon", "source": "broadcast", "limit": 500},
            ).json()
            return [p["status"] for p in log["items"] if p["cmd_id"] == normal_cmd]

        wait_until(
            lambda: reconciled() and all(s == "partial" for s in reconciled()),
            timeout_s=20,
            what="partial",
        )
        assert len(reconciled()) == len(lbn)
        # the audit log names who sent the emergency
        entries = http.get("/api/v1/audit", params={"action": "broadcast.create"}).json()["items"]
        assert entries[0]["actor"] == "admin"
        assert entries[0]["after"]["tier"] == "emergency"


def test_expired_command_is_never_played(live: Live) -> None:
    live.seed()
    target = "lbn-cau-tre"
    fleet = live.fleet([target])
    wait_until(lambda: _applied(live, [target]), timeout_s=30, what="applied")
    bulletin = live.approved_tts("Bản tin ngắn.")
    fleet.kill(target, "abort")  # offline (the broker keeps its persistent session)
    with live.http() as http:
        wait_until(
            lambda: not http.get(f"/api/v1/stations/{target}").json()["online"],
            timeout_s=60,
            what="offline",
        )
        made = send_broadcast(
            http,
            {
                "targets": {"stations": [target]},
                "content": {"asset_id": bulletin},
                "expires_in_s": 2,
                "lead_s": 0,
            },
        )
        cmd_id = made["cmd_id"]
        broadcast_id = made["id"]
        wait_until(
            lambda: (
                http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["stations"][0]["status"]
                == "EXPIRED"
            ),
            timeout_s=20,
            what="EXPIRED",
        )
        fleet.restart(target)
        wait_until(lambda: fleet.station(target).online, timeout_s=30, what="back online")
        wait_until(
            lambda: cmd_id in fleet.station(target).acks,
            timeout_s=20,
            what="queued command delivered",
        )
        assert fleet.station(target).acks[cmd_id] == "EXPIRED"
        assert not any(p.cmd_id == cmd_id for p in fleet.station(target).plays if p.started_at)
        stations = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["stations"]
        assert stations == [
            {
                "sid": target,
                "area": "Ấp Cầu Tre",
                "status": "EXPIRED",
                "reason": stations[0]["reason"],
                "updated_at": stations[0]["updated_at"],
                "play_status": "missed",
                "offline_since": None,
            }
        ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"targets": {}, "content": {"asset_id": 1}}, "targets"),
        ({"targets": {"groups": ["nope"]}, "content": {"asset_id": 1}}, "targets"),
        ({"targets": {"areas": ["tan-an"]}, "content": {"asset_id": 999}}, "content"),
        (
            {
                "targets": {"areas": ["tan-an"]},
                "content": {"stream_source_id": 999},
                "until": "2099-01-01T00:00:00+07:00",
            },
            "content",
        ),
        ({"targets": {"areas": ["tan-an"]}, "content": {"text": "xin chào"}}, "content"),
        (
            {
                "targets": {"areas": ["tan-an"]},
                "content": {"asset_id": 1},
                "start_at": "2001-01-01T00:00:00+07:00",
            },
            "start_at",
        ),
        (
            {"targets": {"areas": ["tan-an"]}, "content": {"asset_id": 1}, "expires_in_s": 0},
            "expires_in_s",
        ),
    ],
)
def test_bad_broadcasts(live: Live, payload: dict[str, object], field: str) -> None:
    live.seed()
    with live.http() as http:
        response = http.post("/api/v1/broadcasts", json=payload)
    assert response.status_code == 422, response.text
    assert field in [str(p) for p in response.json()["detail"][0]["loc"]]


def test_emergency_reaches_a_station_that_comes_back_within_its_window(live: Live) -> None:
    """Offline at send time: one station reconnects inside the validity window and plays
    the emergency (a late copy with a fresh start); one stays offline and is missed."""
    sids = sorted(s for s in live.seed() if s.startswith("lbn-"))[:3]
    online, late, gone = sids
    # no session kept by the broker once offline: only the service can reach them again
    fleet = live.fleet(sids, protocol="5", session_expiry_s=0, will_delay_s=0)
    wait_until(lambda: _applied(live, sids), timeout_s=60, what="applied")
    fleet.kill(late, "abort")
    fleet.kill(gone, "abort")
    with live.http() as http:

        def offline(sid: str) -> bool:
            return not http.get(f"/api/v1/stations/{sid}").json()["online"]

        wait_until(lambda: offline(late) and offline(gone), timeout_s=60, what="offline")
        made = send_broadcast(
            http,
            {
                "targets": {"stations": sids},
                "content": {"text": "Cảnh báo lũ. Người dân di chuyển đến nơi an toàn."},
                "tier": "emergency",
                "expires_in_s": 30,
            },
        )
        broadcast_id, cmd_id = made["id"], made["cmd_id"]

        def rows() -> dict[str, dict[str, object]]:
            found = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["stations"]
            return {r["sid"]: r for r in found}

        wait_until(
            lambda: rows()[online]["status"] == "SUCCEEDED", timeout_s=30, what="played online"
        )
        waiting = rows()
        for sid in (late, gone):  # not yet reached, offline since a known time
            assert waiting[sid]["status"] == "SENT"
            assert waiting[sid]["offline_since"] is not None
        assert http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "active"

        fleet.restart(late)
        wait_until(lambda: rows()[late]["status"] == "SUCCEEDED", timeout_s=30, what="played late")
        assert rows()[late]["play_status"] == "played"
        assert any(p.cmd_id == cmd_id and p.started_at for p in fleet.station(late).plays)
        # the late copy: same cmd_id, to that station only, starting after it came back
        copies = [r for r in live.recorder.select("command") if r.data["cmd_id"] == cmd_id]
        assert [r.sid for r in copies].count(late) == 2
        first, again = [r for r in copies if r.sid == late]
        assert again.data["body"]["start_at"] > first.data["body"]["start_at"]
        assert [r.sid for r in copies].count(gone) == 1

        def finished() -> bool:
            return http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "finished"

        wait_until(finished, timeout_s=60, what="the broadcast ends when the window closes")
        read = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()
        final = {r["sid"]: r for r in read["stations"]}
        assert final[online]["status"] == final[late]["status"] == "SUCCEEDED"
        assert final[gone]["status"] == "EXPIRED"  # missed, never a success
        assert final[gone]["play_status"] == "missed"
        assert final[gone]["offline_since"] is None
        assert read["progress"]["succeeded"] == 2
        assert read["progress"]["finished"] == 3
