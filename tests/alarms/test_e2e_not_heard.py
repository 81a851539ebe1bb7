"""Issue 12, the speaker-line case of truthful proof of play, end to end: the real
service (API, pages and the active worker), Mosquitto and two simulated stations.  One
is given a speaker-line fault by the simulator's fault injection; a broadcast to both is
reported played by both, and the play log (API and the ``/nhat-ky`` page) shows the
faulty station's play as not heard and the healthy one's as played.  Once the line is
repaired and the alarm has cleared, the same station's next play counts as played."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from broadcaster.dispatch import playlog
from broadcaster.settings import Settings
from firmware_bridge.simulator.faults import Fault
from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = [requires_mosquitto(), pytest.mark.slow]

SICK, WELL = "p2-kp-1", "p2-kp-2"  # two stations of phường 2
NOT_HEARD_VI, PLAYED_VI = "Không nghe được (loa lỗi)", "Đã phát"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Alarms evaluated every second (the ``live`` fixture starts the service with it)."""
    return settings.model_copy(update={"alarm_eval_interval_s": 1.0, "alarm_settle_s": 0.5})


def api(live: Live, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    with live.http() as http:
        response = http.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def speaker_alarms(live: Live, state: str) -> list[dict[str, Any]]:
    params = {"sid": SICK, "condition": "speaker_line", "state": state}
    items: list[dict[str, Any]] = api(live, "GET", "/api/v1/alarms", params=params)["items"]
    return items


def broadcast(live: Live, asset_id: int, sids: list[str]) -> str:
    with live.http() as http:
        made = send_broadcast(
            http,
            {"targets": {"stations": sids}, "content": {"asset_id": asset_id}, "lead_s": 0},
        )
    cmd_id: str = made["cmd_id"]
    return cmd_id


def plays(live: Live, cmd_id: str) -> dict[str, dict[str, Any]]:
    """The play log's rows of the broadcast `cmd_id`, by station."""
    params = {"source": "broadcast", "area": "phuong-2", "limit": 500}
    items = api(live, "GET", "/api/v1/playlog", params=params)["items"]
    return {p["sid"]: p for p in items if p["cmd_id"] == cmd_id}


def reported(live: Live, sid: str, cmd_id: str) -> str | None:
    """What the simulated station itself says of the play (its outcome)."""
    station = live.fleets[0].station(sid)
    return next((p.outcome for p in station.plays if p.cmd_id == cmd_id), None)


def page_rows(page: str) -> dict[str, list[str]]:
    """The detail table's rows (``#playlog``), as plain text, by station id."""
    table = re.search(r'<table[^>]*id="playlog".*?</table>', page, re.S)
    assert table is not None, "no play log table"
    rows: dict[str, list[str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S):
        sid = re.search(r"<code>([^<]+)</code>", row)
        if sid is not None:
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
            rows.setdefault(sid.group(1), []).append(text)
    return rows


def test_a_play_during_a_speaker_line_fault_is_not_heard_in_the_play_log(live: Live) -> None:
    live.seed()
    api(
        live,
        "PUT",
        f"/api/v1/alarms/thresholds/stations/{SICK}",
        json={"thresholds": {"clear_hold_s": 1}},
    )
    sim = live.fleet([SICK, WELL])
    for sid in (SICK, WELL):  # both have their plan before anything else
        live.recorder.wait_for("reported", sid, timeout_s=30)
    bulletin = live.approved_tts("Mời bà con khu phố một đi tiêm phòng.")

    # the speaker line of one station breaks: its alarm opens
    sim.inject(SICK, Fault.SPEAKER)
    wait_until(lambda: speaker_alarms(live, "open"), timeout_s=20, what="the speaker-line alarm")

    # one broadcast to both: each station reports it played to the end ...
    cmd_id = broadcast(live, bulletin, [SICK, WELL])
    wait_until(
        lambda: all(reported(live, sid, cmd_id) == "finished" for sid in (SICK, WELL)),
        timeout_s=60,
        what="both stations report the broadcast finished",
    )
    # ... and the play log believes only the healthy one
    wait_until(
        lambda: (
            {sid: p["status"] for sid, p in plays(live, cmd_id).items()}
            == {SICK: "not_heard", WELL: "played"}
        ),
        timeout_s=20,
        what="the play log reconciled",
    )
    rows = plays(live, cmd_id)
    assert rows[SICK]["reason"] == playlog.NOT_HEARD_REASON
    assert rows[SICK]["played_ms"] > 0  # played, yet unheard
    assert rows[WELL]["played_ms"] > 0
    listed = api(live, "GET", "/api/v1/playlog", params={"status": "not_heard"})["items"]
    assert [(p["sid"], p["cmd_id"]) for p in listed] == [(SICK, cmd_id)]

    # the page: the faulty station's row says not heard, the healthy one's played
    shown = page_rows(live.page("/nhat-ky?nguon=broadcast&dia_ban=phuong-2"))
    (sick_row,) = shown[SICK]
    (well_row,) = shown[WELL]
    assert NOT_HEARD_VI in sick_row, sick_row
    assert PLAYED_VI in well_row, well_row
    assert NOT_HEARD_VI not in well_row, well_row
    only = page_rows(live.page("/nhat-ky?trang_thai=not_heard"))
    assert list(only) == [SICK], only

    # the line is repaired: the alarm clears, and the next play is heard again
    sim.inject(SICK, Fault.SPEAKER, active=False)
    wait_until(
        lambda: speaker_alarms(live, "cleared") and not speaker_alarms(live, "open"),
        timeout_s=30,
        what="the speaker-line alarm to clear",
    )
    again = broadcast(live, bulletin, [SICK])
    wait_until(
        lambda: (p := plays(live, again).get(SICK)) is not None and p["status"] == "played",
        timeout_s=60,
        what="the repaired station's play counted as played",
    )
    newest, older = page_rows(live.page(f"/nhat-ky?nguon=broadcast&tram={SICK}"))[SICK]
    assert PLAYED_VI in newest, newest
    assert NOT_HEARD_VI not in newest, newest
    assert NOT_HEARD_VI in older, older
