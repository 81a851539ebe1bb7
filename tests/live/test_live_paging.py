"""Live paging through the API: an operator's voice (WebM/Opus chunks, as the browser's
MediaRecorder sends them) over the WebSocket, through ffmpeg and a real Icecast2, to
three hamlets' simulated stations that read the stream; a vanished browser stops them;
bad input is refused with a problem document."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from firmware_bridge.simulator import FleetThread
from tests.support.icecast import WEBM, Voice, requires_icecast
from tests.support.live import Live
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = [pytest.mark.slow, requires_icecast, requires_mosquitto()]


def three_hamlets(live: Live) -> tuple[list[str], list[str]]:
    """Three hamlet area codes and every station in them."""
    with live.http() as http:
        items = http.get("/api/v1/stations?kind=hamlet&limit=3").json()["items"]
        areas = [item["sid"] for item in items]  # a hamlet station is named after its hamlet
        sids: list[str] = []
        for area in areas:
            found = http.get(f"/api/v1/stations?area={area}&limit=50").json()["items"]
            sids.extend(s["sid"] for s in found)
    return areas, sids


def socket(live: Live) -> ClientConnection:
    """The microphone socket with the administrator's bearer token (use it in ``with``)."""
    url = live.base_url.replace("http://", "ws://") + "/api/v1/live/audio"
    return connect(url, additional_headers=live.admin, open_timeout=10)


def speak_into(ws: ClientConnection) -> tuple[Voice, threading.Thread]:
    """A voice encoded as WebM/Opus, its chunks sent as binary frames as they come."""
    voice = Voice(WEBM, stdout=subprocess.PIPE).start()

    def pump() -> None:
        assert voice.process is not None
        assert voice.process.stdout is not None
        while chunk := voice.process.stdout.read1(4096):  # type: ignore[attr-defined]
            try:
                ws.send(chunk)
            except ConnectionClosed:
                return

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return voice, thread


def frames_until(ws: ClientConnection, kind: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert frame["type"] != "error", frame
        if frame["type"] == kind:
            return dict(frame)


def stream_plays(fleet: FleetThread, sids: list[str], cmd_id: str) -> dict[str, Any]:
    out = {}
    for sid in sids:
        for play in fleet.station(sid).plays:
            if play.cmd_id == cmd_id:
                out[sid] = play
    return out


def test_voice_reaches_three_hamlets_and_a_vanished_browser_stops_them(paging: Live) -> None:
    paging.seed()
    areas, sids = three_hamlets(paging)
    assert len(areas) == 3
    fleet = paging.fleet(sids)
    with socket(paging) as ws:
        page_and_vanish(paging, ws, fleet, areas, sids)


def page_and_vanish(
    paging: Live, ws: ClientConnection, fleet: FleetThread, areas: list[str], sids: list[str]
) -> None:
    ws.send(json.dumps({"targets": {"areas": areas}, "title": "Thông báo khẩn của ấp"}))
    ready = frames_until(ws, "ready")
    assert ready["stations"] == len(sids)
    voice, _ = speak_into(ws)
    try:
        on_air = frames_until(ws, "live")
        broadcast_id = on_air["broadcast_id"]
        with paging.http() as http:
            broadcast = http.get(f"/api/v1/broadcasts/{broadcast_id}").json()
        assert broadcast["tier"] == "live"
        assert broadcast["priority"] == 7
        assert broadcast["content"]["live_session"]
        cmd_id = broadcast["cmd_id"]
        plays = paging.recorder.wait_for(
            "command", where=lambda data: data.get("cmd_id") == cmd_id, timeout_s=10
        )
        body = plays[0].data["body"]
        assert body["priority"] == 7
        assert body["stream"]["url"] == on_air["stream_url"]

        def every_station_hears() -> bool:
            got = stream_plays(fleet, sids, cmd_id)
            return len(got) == len(sids) and all(
                p.stream is not None and p.stream.bytes > 8000 for p in got.values()
            )

        wait_until(every_station_hears, timeout_s=20, what="every station reading the stream")
        # the browser vanishes (no stop message): the socket just closes
        ws.close()
        gone = time.monotonic()
        wait_until(
            lambda: all(p.outcome != "playing" for p in stream_plays(fleet, sids, cmd_id).values()),
            timeout_s=10,
            what="every station stopped",
        )
        stopped_after = time.monotonic() - gone
        assert stopped_after < 5, f"stations stopped {stopped_after:.1f} s after the browser left"
        for play in stream_plays(fleet, sids, cmd_id).values():
            assert play.outcome == "preempted"
            assert (play.reason or "").startswith("stopped by")
        with paging.http() as http:
            assert http.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "stopped"
    finally:
        voice.stop()
        ws.close()


def test_a_silent_browser_is_gone(paging: Live) -> None:
    """Audio that stops flowing (a browser frozen, a network cut without a close) ends the
    session after BROADCASTER_LIVE_IDLE_S and stops the stations."""
    paging.seed()
    _, sids = three_hamlets(paging)
    fleet = paging.fleet(sids[:2])
    with socket(paging) as ws:
        ws.send(json.dumps({"targets": {"stations": sids[:2]}}))
        frames_until(ws, "ready")
        voice, _ = speak_into(ws)
        try:
            on_air = frames_until(ws, "live")
            with paging.http() as http:
                cmd_id = http.get(f"/api/v1/broadcasts/{on_air['broadcast_id']}").json()["cmd_id"]
            wait_until(
                lambda: len(stream_plays(fleet, sids[:2], cmd_id)) == 2, timeout_s=15, what="plays"
            )
        finally:
            voice.stop()  # no more audio, the socket stays open
        ended = frames_until(ws, "ended", timeout_s=15)
    assert "no audio" in ended["reason"]
    wait_until(
        lambda: all(p.outcome != "playing" for p in stream_plays(fleet, sids[:2], cmd_id).values()),
        timeout_s=10,
        what="stations stopped",
    )


def test_refusals_are_problem_documents(paging: Live) -> None:
    paging.seed()
    url = paging.base_url.replace("http://", "ws://") + "/api/v1/live/audio"
    # no credentials: refused at once
    with connect(url, open_timeout=10) as ws:
        refused = json.loads(ws.recv(timeout=10))
        assert refused["type"] == "error"
        assert refused["code"] == "unauthenticated"
        assert refused["message_vi"]
    # garbage first frame; an area without stations; a tier live paging does not use
    for frame, code in (
        ("không phải JSON", "invalid_input"),
        (json.dumps({"targets": {"areas": ["khong-co"]}}), "invalid_input"),
        (json.dumps({"targets": {"areas": ["phuong-3"]}, "tier": "normal"}), "invalid_input"),
    ):
        with socket(paging) as ws:
            ws.send(frame)
            refused = json.loads(ws.recv(timeout=10))
            assert refused["type"] == "error", refused
            assert refused["code"] == code
            assert refused["message_vi"]


def test_emergency_paging_needs_the_emergency_right(paging: Live) -> None:
    from kernel.security import Role
    from tests.api import make_user

    paging.seed()
    operator = make_user(paging.factory, "to-phuong-3", Role.OPERATOR, ["phuong-3"])
    url = paging.base_url.replace("http://", "ws://") + "/api/v1/live/audio"
    with connect(url, additional_headers=operator, open_timeout=10) as ws:
        ws.send(json.dumps({"targets": {"areas": ["phuong-3"]}, "tier": "emergency"}))
        refused = json.loads(ws.recv(timeout=10))
    assert refused["code"] == "permission_denied_error", refused
    assert refused["message_vi"] == "Tài khoản không có quyền phát khẩn cấp"
    with connect(url, additional_headers=operator, open_timeout=10) as ws:
        ws.send(json.dumps({"targets": {"areas": ["phuong-4"]}}))
        refused = json.loads(ws.recv(timeout=10))
    assert refused["type"] == "error"
    assert refused["status"] == 403, refused


def test_a_cookie_from_another_site_is_refused(paging: Live) -> None:
    paging.seed()
    with paging.http() as http:
        token = http.headers["Authorization"].split()[1]
    url = paging.base_url.replace("http://", "ws://") + "/api/v1/live/audio"
    headers = {"Cookie": f"broadcaster_session={token}"}
    with connect(
        url, additional_headers=headers, origin="http://evil.example", open_timeout=10
    ) as ws:  # type: ignore[arg-type]
        refused = json.loads(ws.recv(timeout=10))
    assert refused["status"] == 403, refused
