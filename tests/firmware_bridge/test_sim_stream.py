"""The simulator plays a stream as a station does: it opens the HTTP stream and reads
its bytes (counted, with the time of the first byte), reopens it when it breaks, and
gives up a stream that stays dead: a live operator's stream whose source is gone stops
the station by itself, even without a ``stop`` command."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from firmware_bridge.messages import LIVE, Command, PlayBody
from tests.support.loa import FAST, SimRig, wait_until
from tests.support.media_server import LocalHTTPServer
from tests.support.mosquitto import requires_mosquitto

pytestmark = requires_mosquitto()


class LiveSource(LocalHTTPServer):
    """``/live.mp3``: audio-like bytes every 50 ms while :attr:`on_air`, then 404."""

    def __init__(self) -> None:
        self.on_air = threading.Event()
        self.on_air.set()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/live.mp3" or not source.on_air.is_set():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.end_headers()
                while source.on_air.is_set():
                    try:
                        self.wfile.write(b"\xff\xfb\x90\x64" + b"\x00" * 400)
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.05)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        super().__init__(Handler)


def test_a_stream_is_read_and_a_dead_one_given_up(sim: SimRig) -> None:
    fleet = sim.fleet(["st-1"], settings=replace(FAST, relay_open_timeout_s=1.5))
    with LiveSource() as source:
        play = Command.new(
            "play",
            PlayBody(
                priority=LIVE,
                stream={"url": f"{source.base_url}/live.mp3"},
                until=datetime.now().astimezone() + timedelta(minutes=10),
            ),
            ttl_s=600,
        )
        sent = time.time()
        assert sim.bridge.publish_command_to_station("st-1", play)

        def reading() -> Any:
            plays = [p for p in fleet.station("st-1").plays if p.cmd_id == play.cmd_id]
            return plays[0] if plays and plays[0].stream and plays[0].stream.bytes > 4000 else None

        record = wait_until(reading, timeout_s=10, what="the station reading the stream")
        assert record.outcome == "playing"
        assert record.source == "stream"
        assert record.stream.first_byte_at is not None
        assert sent <= record.stream.first_byte_at < sent + 5
        # the source goes away (its operator's browser, the service...): no stop command
        source.on_air.clear()
        gone = time.monotonic()

        def ended() -> Any:
            plays = [p for p in fleet.station("st-1").plays if p.cmd_id == play.cmd_id]
            return plays[0] if plays[0].outcome != "playing" else None

        done = wait_until(ended, timeout_s=10, what="the dead stream given up")
        assert time.monotonic() - gone < 1.5 + 2.5
        assert done.outcome == "failed"
        assert "stream lost" in (done.reason or "")
        final = sim.recorder.wait_for(
            "ack", "st-1", lambda d: d["cmd_id"] == play.cmd_id and d["status"] == "FAILED"
        )
        assert "stream lost" in final[0].data["reason"]
        assert sim.recorder.wait_for(
            "event", "st-1", lambda d: d.get("cmd_id") == play.cmd_id and d["type"] == "play.failed"
        )
