"""A broadcast's API call answers with its Server-Timing: where the emergency's way out
spent its time, phase by phase (`broadcaster.web.timing`), so the benchmark and a
browser's developer tools read it from the service itself.

The phases against the whole service (``live``: app + worker over HTTP, a real
Mosquitto), the header's arithmetic on a clock of our own.
"""

from __future__ import annotations

import itertools

from broadcaster.web.timing import Phases, parse
from tests.support.live import Live
from tests.support.mosquitto import requires_mosquitto

#: the way out, in order: up to the route, the broadcast stored, committed, the broker's
#: PUBACK, the quiet moment of its fan-out, the per-station rows, the answer read
WAY_OUT = ["enter", "store", "commit", "publish", "quiet", "rows", "answer"]


def test_phases_are_durations_from_the_end_of_the_one_before() -> None:
    ticks = itertools.chain([10.0, 10.002, 10.0065, 10.0065], itertools.repeat(10.01))
    phases = Phases(clock=lambda: next(ticks))
    phases.mark("enter")
    phases.mark("store")
    phases.mark("commit")
    assert phases.header() == "enter;dur=2.0, store;dur=4.5, commit;dur=0.0, total;dur=10.0"


def test_the_header_reads_back_and_unreadable_metrics_are_left_out() -> None:
    assert parse('enter;dur=2.5, cache;desc="hit", store;dur=x, total;dur=9') == {
        "enter": 2.5,
        "total": 9.0,
    }
    assert parse(None) == {}
    assert parse("") == {}


@requires_mosquitto()
def test_an_emergency_answers_with_its_way_out_phase_by_phase(live: Live) -> None:
    live.seed()
    live.worker()
    bulletin = live.approved_tts("Cảnh báo khẩn: triều cường.")
    with live.http() as http:
        response = http.post(
            "/api/v1/broadcasts",
            json={
                "targets": {"areas": ["tan-an"]},
                "content": {"asset_id": bulletin},
                "tier": "emergency",
                "title": "Khẩn cấp có Server-Timing",
            },
        )
        assert response.status_code == 201, response.text
        timing = parse(response.headers.get("server-timing"))
        # a route that marks nothing answers without it
        listed = http.get("/api/v1/broadcasts")
        assert listed.status_code == 200
        assert "server-timing" not in listed.headers
    assert list(timing) == [*WAY_OUT, "total"], timing
    assert all(ms >= 0 for ms in timing.values()), timing
    # the phases follow one another within the request: together at most its total
    assert sum(timing[name] for name in WAY_OUT) <= timing["total"] + 0.5, timing
