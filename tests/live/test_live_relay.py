"""Relaying a live stream URL: the service pulls it into its Icecast and the stations
play the mount; the relay ends everywhere when its source ends or when the broadcast is
stopped; a URL that cannot be opened is refused in Vietnamese and nothing airs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.icecast import Voice, requires_icecast
from tests.support.live import Live
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = [pytest.mark.slow, requires_icecast, requires_mosquitto()]

MP3 = ["-c:a", "libmp3lame", "-b:a", "64k", "-ac", "1", "-ar", "44100", "-flush_packets", "1"]


def icecast_of(live: Live) -> tuple[str, str]:
    """(push base ``icecast://source:pw@host:port``, listen base ``http://host:port``)."""
    assert live.settings.live_icecast_url is not None
    parts = urlsplit(live.settings.live_icecast_url.get_secret_value())
    return (
        f"icecast://source:{parts.password}@{parts.hostname}:{parts.port}",
        f"http://{parts.hostname}:{parts.port}",
    )


def external_radio(live: Live) -> tuple[Voice, str]:
    """Another radio's live stream: a voice pushed to its own mount."""
    push, listen = icecast_of(live)
    voice = Voice([*MP3, "-content_type", "audio/mpeg", "-f", "mp3", f"{push}/radio.mp3"])
    voice.start()

    def up() -> bool:
        try:
            with httpx.stream("GET", f"{listen}/radio.mp3", timeout=2) as response:
                return response.status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout_s=15, what="the external radio on air")
    return voice, f"{listen}/radio.mp3"


def plays_of(live: Live, sids: list[str], cmd_id: str) -> dict[str, Any]:
    fleet = live.fleets[-1]
    return {sid: play for sid in sids for play in fleet.station(sid).plays if play.cmd_id == cmd_id}


def test_relay_until_its_source_ends_then_stop_from_the_broadcast(paging: Live) -> None:
    paging.seed()
    with paging.http() as http:
        sids = [s["sid"] for s in http.get("/api/v1/stations?area=phuong-3").json()["items"]]
    paging.fleet(sids)
    voice, url = external_radio(paging)
    try:
        with paging.http() as http:
            made = http.post(
                "/api/v1/live/relays",
                json={"targets": {"areas": ["phuong-3"]}, "url": url, "title": "Tiếp sóng"},
            )
            assert made.status_code == 201, made.text
            relay = made.json()
            assert relay["stations"] == len(sids)
            broadcast = http.get(f"/api/v1/broadcasts/{relay['broadcast_id']}").json()
        assert broadcast["tier"] == "live"
        cmd_id = broadcast["cmd_id"]
        wait_until(
            lambda: (
                len(plays_of(paging, sids, cmd_id)) == len(sids)
                and all(
                    p.stream and p.stream.bytes > 4000
                    for p in plays_of(paging, sids, cmd_id).values()
                )
            ),
            timeout_s=20,
            what="every station reading the relay",
        )
    finally:
        voice.stop()  # the source ends: ffmpeg ends, the relay ends, stations stop
    wait_until(
        lambda: all(p.outcome != "playing" for p in plays_of(paging, sids, cmd_id).values()),
        timeout_s=15,
        what="stations stopped after the source ended",
    )
    with paging.http() as http:
        assert http.get(f"/api/v1/broadcasts/{relay['broadcast_id']}").json()["status"] == "stopped"

    # a second relay, stopped from the broadcast API: the pull ends too
    voice, url = external_radio(paging)
    try:
        with paging.http() as http:
            relay = http.post(
                "/api/v1/live/relays", json={"targets": {"areas": ["phuong-3"]}, "url": url}
            ).json()
            stream_url = relay["stream_url"]
            stopped = http.post(f"/api/v1/broadcasts/{relay['broadcast_id']}/stop")
            assert stopped.status_code == 200, stopped.text

        def mount_gone() -> bool:
            try:
                return httpx.get(stream_url, timeout=2).status_code == 404
            except httpx.ReadTimeout:
                return False

        wait_until(mount_gone, timeout_s=10, what="the relay's mount gone")
    finally:
        voice.stop()


def test_a_stream_that_cannot_be_opened_is_refused(paging: Live) -> None:
    paging.seed()
    with paging.http() as http:
        refused = http.post(
            "/api/v1/live/relays",
            json={"targets": {"areas": ["phuong-3"]}, "url": "http://127.0.0.1:9/none.mp3"},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["message_vi"].startswith("Không phát được luồng trực tiếp")
        assert http.get("/api/v1/broadcasts").json()["total"] == 0
        bad = http.post(
            "/api/v1/live/relays",
            json={"targets": {"areas": ["phuong-3"]}, "url": "file:///etc/passwd"},
        )
        assert bad.status_code == 422
