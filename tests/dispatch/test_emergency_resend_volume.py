"""Emergencies end to end (real broker, the service over HTTP, simulated stations):
"send again to those who missed it", and the emergency tier's forced volume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.dispatch.attention import SIGNAL_TAG
from broadcaster.settings import Settings
from kernel.security import Role
from tests.api import make_user
from tests.support.live import Live, send_broadcast, start_live
from tests.support.loa import wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.protocol import Recorder

ALERT = "Cảnh báo lũ. Người dân di chuyển đến nơi an toàn."


def _applied(live: Live, sids: list[str]) -> bool:
    fleet = live.fleets[0]
    return all((fleet.station(sid).desired_version or 0) >= 1 for sid in sids)


def _read(http: httpx.Client, broadcast_id: int) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    return body


def test_send_again_reaches_the_station_that_missed_it(live: Live) -> None:
    """A station offline past the validity window ends EXPIRED; once it is back, "send
    again" goes to it alone, under a new cmd_id of the same broadcast: it plays, the
    page/API follow its latest copy, and the broadcast ends finished with both played."""
    online, gone = sorted(s for s in live.seed() if s.startswith("lbn-"))[:2]
    fleet = live.fleet([online, gone], protocol="5", session_expiry_s=0, will_delay_s=0)
    wait_until(lambda: _applied(live, [online, gone]), timeout_s=60, what="applied")
    fleet.kill(gone, "abort")
    operator = make_user(live.factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    with live.http() as http:
        wait_until(
            lambda: not http.get(f"/api/v1/stations/{gone}").json()["online"],
            timeout_s=60,
            what="offline",
        )
        made = send_broadcast(
            http,
            {
                "targets": {"stations": [online, gone]},
                "content": {"text": ALERT},
                "tier": "emergency",
                "expires_in_s": 20,
            },
        )
        broadcast_id, first_cmd = made["id"], made["cmd_id"]
        # nothing missed yet (the window is open): nothing to send again
        early = http.post(f"/api/v1/broadcasts/{broadcast_id}/resend")
        assert early.status_code == 409, early.text
        assert early.json()["message_vi"] == "Không có trạm nào bị lỡ lượt phát này"
        wait_until(
            lambda: _read(http, broadcast_id)["status"] == "finished",
            timeout_s=60,
            what="finished with one station missed",
        )
        before = {r["sid"]: r for r in _read(http, broadcast_id)["stations"]}
        assert before[online]["status"] == "SUCCEEDED"
        assert before[gone]["status"] == "EXPIRED"

        # an operator without the emergency permission may not send an emergency again
        refused = httpx.post(
            f"{live.base_url}/api/v1/broadcasts/{broadcast_id}/resend", headers=operator
        )
        assert refused.status_code in (403, 404), refused.text

        fleet.restart(gone)
        wait_until(lambda: fleet.station(gone).online, timeout_s=30, what="back online")
        again = http.post(f"/api/v1/broadcasts/{broadcast_id}/resend")
        assert again.status_code == 200, again.text
        body = again.json()
        assert body["status"] == "active"  # under way again until the copy settles
        [second_cmd] = body["resends"]
        assert second_cmd != first_cmd
        assert body["cmd_id"] == first_cmd  # the original stays the broadcast's command
        rows = {r["sid"]: r for r in body["stations"]}
        assert rows[online]["status"] == "SUCCEEDED"  # not sent again: it heard it
        assert rows[gone]["status"] in ("PENDING", "SENT", "RECEIVED", "IN_PROGRESS")

        wait_until(
            lambda: any(p.cmd_id == second_cmd and p.started_at for p in fleet.station(gone).plays),
            timeout_s=30,
            what="the missed station plays the copy",
        )
        # the copy went to the station that missed it, and to no other
        copies = [r.sid for r in live.recorder.select("command") if r.data["cmd_id"] == second_cmd]
        assert set(copies) == {gone}
        wait_until(
            lambda: _read(http, broadcast_id)["status"] == "finished",
            timeout_s=60,
            what="finished again",
        )
        read = _read(http, broadcast_id)
        final = {r["sid"]: r for r in read["stations"]}
        assert final[gone]["status"] == "SUCCEEDED"
        assert final[gone]["play_status"] == "played"
        assert read["progress"]["succeeded"] == read["progress"]["total"] == 2
        assert read["progress"]["by_status"]["EXPIRED"] == 0
        entries = http.get("/api/v1/audit", params={"action": "broadcast.resend"}).json()
        assert entries["items"][0]["after"]["cmd_id"] == second_cmd
        # nobody left to reach
        done = http.post(f"/api/v1/broadcasts/{broadcast_id}/resend")
        assert done.status_code == 409


def test_a_stopped_broadcast_is_not_sent_again(live: Live) -> None:
    [sid] = sorted(s for s in live.seed() if s.startswith("lbn-"))[:1]
    fleet = live.fleet([sid])
    wait_until(lambda: _applied(live, [sid]), timeout_s=60, what="applied")
    assert fleet.station(sid).online
    with live.http() as http:
        made = send_broadcast(
            http, {"targets": {"stations": [sid]}, "content": {"text": ALERT}, "tier": "emergency"}
        )
        stopped = http.post(f"/api/v1/broadcasts/{made['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        refused = http.post(f"/api/v1/broadcasts/{made['id']}/resend")
        assert refused.status_code == 409
        assert refused.json()["message_vi"] == "Lượt phát đã bị dừng theo lệnh, không gửi lại"
        missing = http.post("/api/v1/broadcasts/999999/resend")
        assert missing.status_code == 404


def test_emergency_plays_at_full_volume_and_the_station_keeps_its_own(live: Live) -> None:
    """A station turned down to 45 % plays the emergency at 100 % (the configured
    emergency volume) and is back at 45 % afterwards; a normal broadcast plays at 45 %."""
    [sid] = sorted(s for s in live.seed() if s.startswith("lbn-"))[:1]
    fleet = live.fleet([sid])
    wait_until(lambda: _applied(live, [sid]), timeout_s=60, what="applied")
    with live.http() as http:
        turned = http.post(f"/api/v1/stations/{sid}/commands", json={"type": "volume", "level": 45})
        assert turned.status_code == 201, turned.text
        wait_until(lambda: fleet.station(sid).volume == 45, timeout_s=20, what="turned down")
        made = send_broadcast(
            http,
            {"targets": {"stations": [sid]}, "content": {"text": ALERT}, "tier": "emergency"},
        )
        cmd_id = made["cmd_id"]
        # the play command carries the forced volume (schema-checked by the recorder)
        [published] = wait_until(
            lambda: [r for r in live.recorder.select("command") if r.data["cmd_id"] == cmd_id],
            what="the play command published",
        )
        assert published.data["body"]["volume"] == 100

        def play() -> Any:
            return next((p for p in fleet.station(sid).plays if p.cmd_id == cmd_id), None)

        wait_until(lambda: (p := play()) and p.started_at, timeout_s=30, what="playing")
        assert fleet.station(sid).playing is not None
        assert fleet.station(sid).playing.volume == 100  # what it plays at now
        wait_until(lambda: play().outcome == "finished", timeout_s=60, what="played")
        assert play().volume == 100
        status = fleet.station(sid)
        assert status.playing is None
        assert status.volume == 45  # its own volume again

        bulletin = live.approved_tts("Bản tin ngắn.")
        normal = send_broadcast(
            http, {"targets": {"stations": [sid]}, "content": {"asset_id": bulletin}}
        )
        [published] = wait_until(
            lambda: [
                r for r in live.recorder.select("command") if r.data["cmd_id"] == normal["cmd_id"]
            ],
            what="the normal play published",
        )
        assert "volume" not in published.data["body"]
        wait_until(
            lambda: any(
                p.cmd_id == normal["cmd_id"] and p.outcome == "finished"
                for p in fleet.station(sid).plays
            ),
            timeout_s=60,
            what="normal played",
        )
        [normal_play] = [p for p in fleet.station(sid).plays if p.cmd_id == normal["cmd_id"]]
        assert normal_play.volume == 45


@pytest.fixture
def live_attention(
    settings: Settings, tmp_path: Path, persistent_broker: Mosquitto, persistent_recorder: Recorder
) -> Iterator[Live]:
    """The service with ``BROADCASTER_EMERGENCY_ATTENTION=true``."""
    harness = start_live(
        settings.model_copy(update={"emergency_attention": True}),
        tmp_path,
        persistent_broker,
        persistent_recorder,
    )
    try:
        yield harness
    finally:
        harness.stop()


def test_emergency_is_preceded_by_the_attention_signal(live_attention: Live) -> None:
    """The service made the chime at start (a library asset, approved, no download);
    the emergency's play carries it as ``attention`` and the station plays it first, at
    the emergency's volume; a normal broadcast goes without it."""
    live = live_attention
    [sid] = sorted(s for s in live.seed() if s.startswith("lbn-"))[:1]
    fleet = live.fleet([sid])
    wait_until(lambda: _applied(live, [sid]), timeout_s=60, what="applied")
    with live.http() as http:
        library = http.get("/api/v1/media", params={"category": "jingle"}).json()["items"]
        [signal] = [a for a in library if SIGNAL_TAG in a["tags"]]
        assert signal["status"] == "ready"
        assert 3000 <= signal["duration_ms"] <= 5000
        made = send_broadcast(
            http,
            {"targets": {"stations": [sid]}, "content": {"text": ALERT}, "tier": "emergency"},
        )
        cmd_id = made["cmd_id"]
        [published] = wait_until(
            lambda: [r for r in live.recorder.select("command") if r.data["cmd_id"] == cmd_id],
            what="the play command published",
        )
        attention = published.data["body"]["attention"]
        assert attention["sha256"] == signal["sha256"]
        assert attention["duration_ms"] == signal["duration_ms"]

        def play() -> Any:
            return next((p for p in fleet.station(sid).plays if p.cmd_id == cmd_id), None)

        wait_until(lambda: (p := play()) and p.outcome == "finished", timeout_s=60, what="played")
        record = play()
        assert record.attention_ms is not None
        assert abs(record.attention_ms - signal["duration_ms"]) < 100
        assert record.volume == 100
        # the play lasted the chime plus the spoken text
        assert (record.ended_at - record.started_at).total_seconds() * 1000 > signal["duration_ms"]
        bulletin = live.approved_tts("Bản tin ngắn.")
        normal = send_broadcast(
            http, {"targets": {"stations": [sid]}, "content": {"asset_id": bulletin}}
        )
        [plain] = wait_until(
            lambda: [
                r for r in live.recorder.select("command") if r.data["cmd_id"] == normal["cmd_id"]
            ],
            what="the normal play published",
        )
        assert "attention" not in plain.data["body"]
