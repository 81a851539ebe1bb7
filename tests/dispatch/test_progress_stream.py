"""The broadcast progress stream (server-sent events) end to end: pushed by one hub per
process, keep-alives, resuming with Last-Event-ID, and many open streams that neither
read the database each nor hold a connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from broadcaster.dispatch.progress_hub import ProgressHub
from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until

TEXT = "Cảnh báo triều cường. Người dân khẩn trương di chuyển đến nơi an toàn."


@dataclass
class Event:
    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> dict[str, object]:
        assert self.data is not None
        value: dict[str, object] = json.loads(self.data)
        return value


def events(response: httpx.Response) -> Iterator[Event]:
    """Parse a text/event-stream body as the browser does (comments kept apart)."""
    current = Event()
    for line in response.iter_lines():
        if line == "":
            if current.event or current.data is not None or current.comments:
                yield current
            current = Event()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "data":
                current.data = value if current.data is None else current.data + "\n" + value
            elif name == "retry":
                current.retry = int(value)


def _commune_broadcast(live: Live, http: httpx.Client, group: str) -> dict[str, object]:
    return send_broadcast(
        http,
        {
            "targets": {"groups": [group]},
            "content": {"text": TEXT},
            "tier": "emergency",
            "title": "Cảnh báo triều cường",
        },
    )


def _hub(live: Live) -> ProgressHub:
    hub: ProgressHub = live.app.state.progress_hub
    return hub


def test_progress_is_pushed_until_done_and_a_reconnect_resumes(live: Live) -> None:
    sids = live.seed()
    commune = [s for s in sids if s.startswith("lbn-")]
    live.fleet(commune)
    wait_until(
        lambda: all((live.fleets[0].station(s).desired_version or 0) >= 1 for s in commune),
        timeout_s=60,
        what="the commune's stations applied their desired state",
    )
    with live.http() as http:
        made = _commune_broadcast(live, http, "xa-loi-binh-nhon")
        url = f"/api/v1/broadcasts/{made['id']}/events"
        seen: list[Event] = []
        with http.stream("GET", url, timeout=120) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            for event in events(response):
                seen.append(event)
                if event.event == "done":
                    break
        progress = [e for e in seen if e.event == "progress"]
        assert progress, seen
        # every event names its state; a state is sent once
        ids = [e.id for e in progress]
        assert all(ids)
        assert len(set(ids)) == len(ids)
        assert all(e.retry == 2000 for e in progress)
        last = progress[-1].json()
        assert last["total"] == len(commune)
        assert last["finished"] == last["total"] == last["succeeded"]
        assert seen[-1].json() == {"status": "finished"}

        # the browser reconnects with the last id it saw: nothing it already has again
        with http.stream(
            "GET", url, headers={"Last-Event-ID": str(ids[-1])}, timeout=30
        ) as response:
            again = list(events(response))
        assert [e.event for e in again] == ["done"]
        # an old id: the current state, then done
        with http.stream(
            "GET", url, headers={"Last-Event-ID": str(ids[0])}, timeout=30
        ) as response:
            again = list(events(response))
        assert [e.event for e in again] == ["progress", "done"]
        assert again[0].id == ids[-1]


def test_an_idle_stream_sends_keep_alives(live: Live) -> None:
    live.seed()  # no station online: the broadcast waits for them (its validity window)
    live.app.state.settings.sse_keepalive_s = 0.3
    with live.http() as http:
        made = _commune_broadcast(live, http, "xa-loi-binh-nhon")
        url = f"/api/v1/broadcasts/{made['id']}/events"
        with http.stream("GET", url, timeout=30) as response:
            stream = events(response)
            first = next(stream)
            assert first.event == "progress"
            assert first.json()["received"] == 0
            # the command's publication may move it (SENT) once; then only keep-alives
            later = [next(stream) for _ in range(4)]
        pings = [e for e in later if e.event is None]
        assert len(pings) >= 3, later
        assert all(p.comments == ["keep-alive"] and p.data is None for p in pings)
        # stopping it reaches the stream at once: the route wakes the hub
        with http.stream("GET", url, timeout=30) as response:
            stream = events(response)
            assert next(stream).event == "progress"
            stopped = http.post(f"/api/v1/broadcasts/{made['id']}/stop")
            assert stopped.status_code == 200, stopped.text
            rest = [e for e in stream if e.event is not None]
        assert rest[-1].event == "done"
        assert rest[-1].json() == {"status": "stopped"}


def test_an_unknown_or_hidden_broadcast_is_a_problem_not_a_stream(live: Live) -> None:
    live.seed()
    with live.http() as http:
        response = http.get("/api/v1/broadcasts/999999/events")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["message_vi"]


def test_many_open_streams_share_one_reader_and_hold_no_connection(live: Live) -> None:
    """Forty streams (more than the 30 connections of the database pool) on one
    broadcast: the hub reads its progress about once a second whatever the number of
    streams, and the registry still answers."""
    live.seed()
    live.app.state.settings.sse_keepalive_s = 60
    hub = _hub(live)
    with live.http() as http:
        made = _commune_broadcast(live, http, "xa-loi-binh-nhon")
    url = f"{live.base_url}/api/v1/broadcasts/{made['id']}/events"
    opened = threading.Barrier(41)
    release = threading.Event()
    errors: list[str] = []

    def one() -> None:
        try:
            with (
                httpx.Client(headers=live.admin, timeout=60) as client,
                client.stream("GET", url) as response,
            ):
                stream = events(response)  # dropping the iterator would close the response
                assert next(stream).event == "progress"
                opened.wait(30)
                release.wait(60)
        except Exception as exc:  # reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, daemon=True) for _ in range(40)]
    for thread in threads:
        thread.start()
    try:
        opened.wait(60)
        assert hub.watching() == {made["id"]: 40}, errors[:3]
        before = hub.refreshes
        started = time.monotonic()
        with live.http() as http:
            for _ in range(5):
                t = time.monotonic()
                listed = http.get("/api/v1/stations?limit=200", timeout=10)
                assert listed.status_code == 200
                assert time.monotonic() - t < 5  # not queued behind the streams
            time.sleep(2)
        elapsed = time.monotonic() - started
        # one reader for all forty: about one read per poll interval (plus wake-ups)
        assert hub.refreshes - before <= elapsed / hub.poll_s + 3
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    wait_until(lambda: hub.watching() == {}, timeout_s=10, what="every stream unsubscribed")
