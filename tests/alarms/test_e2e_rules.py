"""Issue 12, every alarm rule end to end: the real service (API, pages and the active
worker), Mosquitto and a simulated station given the fault by the simulator's fault
injection (`firmware_bridge.simulator.faults`).  For each rule, with a small threshold:
the alarm is raised within its threshold plus 10 s, is listed on the alarms page, is
e-mailed once to the technician subscribed to the station's ward (a real SMTP server)
and to nobody else, is posted once to the webhook with a valid HMAC signature, and clears
when the fault is removed (the clear told once too).

Then a commune-wide power cut across 10 stations of one commune is one digest e-mail."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from broadcaster.alarms.rules import CONDITION_TITLES_VI, Condition
from broadcaster.settings import Settings
from firmware_bridge.simulator import FaultSettings
from firmware_bridge.simulator.faults import Fault
from firmware_bridge.simulator.fleet import FleetThread
from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto
from tests.support.notify import SmtpSink, WebhookSink

pytestmark = [requires_mosquitto(), pytest.mark.slow]

SID = "p2-kp-1"  # phường 2
WARD, OTHER = "phuong-2", "xa-loi-binh-nhon"
TECH_WARD, TECH_OTHER = "kt-phuong2@example.vn", "kt-loibinhnhon@example.vn"
SECRET = "webhook-secret-0123456789abcdef"
WINDOW_S = 20.0  # the counting window of flapping, missed plays and unacknowledged commands


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, request: pytest.FixtureRequest) -> Settings:
    """Fast alarm jobs; a test marked ``settle(s)`` waits ``s`` for a digest to form."""
    marker = request.node.get_closest_marker("settle")
    return settings.model_copy(
        update={
            "alarm_smtp_host": "127.0.0.1",
            "alarm_smtp_port": smtp.port,
            "alarm_settle_s": marker.args[0] if marker else 0.5,
            "alarm_eval_interval_s": 1.0,
            "alarm_count_window_s": WINDOW_S,
            "metrics_token": SecretStr("metrics-token-0123456789abcdef"),
        }
    )


def api(live: Live, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    with live.http() as http:
        response = http.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def alarms(live: Live, sid: str, condition: str, state: str) -> list[dict[str, Any]]:
    params = {"sid": sid, "condition": condition, "state": state}
    items: list[dict[str, Any]] = api(live, "GET", "/api/v1/alarms", params=params)["items"]
    return items


def mailed(smtp: SmtpSink, to: str, event: str, title: str, sid: str) -> int:
    """How many e-mail lines to `to` tell `event` ("Phát sinh", "Đã hết") of the alarm
    `title` at `sid` (a digest lists several events, one a line)."""
    return sum(
        1
        for message in smtp.to(to)
        for line in message.get_content().splitlines()
        if line.startswith(f"[{event}]") and f": {title} — " in line and f"({sid}" in line
    )


def hook_events(hooks: WebhookSink, condition: str, sid: str) -> list[str]:
    """The webhook's events about the alarm, each signature checked."""
    events = []
    for hook in hooks.hooks:
        stamp = hook.headers["X-Broadcaster-Timestamp"]
        signed = hmac.new(SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256)
        assert hook.headers["X-Broadcaster-Signature"] == f"sha256={signed.hexdigest()}"
        events.extend(
            e["event"]
            for e in json.loads(hook.body)["events"]
            if e["condition"] == condition and e["sid"] == sid
        )
    return events


# --- how each fault is provoked and removed -------------------------------------------


Step = Callable[[Live, FleetThread], None]


def inject(fault: Fault, active: bool = True) -> Step:
    return lambda _live, sim: sim.inject(SID, fault, active)


def kill(_live: Live, sim: FleetThread) -> None:
    sim.kill(SID, "abort")  # the power is cut: no DISCONNECT, the will fires


def restart(_live: Live, sim: FleetThread) -> None:
    sim.restart(SID)


def stall_then_replan(live: Live, sim: FleetThread) -> None:
    """Downloads stall, then the plan changes (its volume): the station stays behind."""
    sim.inject(SID, Fault.STALL)
    api(live, "PATCH", f"/api/v1/stations/{SID}", json={"default_volume": 55})


def corrupt_then_new_media(live: Live, sim: FleetThread) -> None:
    """Downloads arrive damaged, then a programme with new media is planned for the
    ward: the station applies the plan with the file missing."""
    sim.inject(SID, Fault.CORRUPT)
    asset = live.approved_tts("Thông báo lịch tiêm phòng dại cho chó mèo tại phường 2.")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    live.approved_rule(asset_id=asset, at=at, groups=[WARD])


def deaf_then_broadcast(live: Live, sim: FleetThread) -> None:
    """The station stops answering commands; a broadcast to it expires unacknowledged
    (its play is missed)."""
    sim.inject(SID, Fault.DEAF)
    asset = live.approved_tts("Mời bà con đến nhà văn hoá khu phố họp tổ dân phố.")
    with live.http() as http:
        send_broadcast(
            http,
            {
                "targets": {"stations": [SID]},
                "content": {"asset_id": asset},
                "expires_in_s": 3,
                "lead_s": 0,
            },
        )


@dataclass(frozen=True)
class Case:
    condition: Condition
    severity: str
    provoke: Step
    remove: Step
    threshold_s: float  # how long the condition takes to count (the rule's threshold)
    thresholds: dict[str, float] = field(default_factory=dict)
    clear_s: float = 30.0


CASES = [
    Case(
        Condition.STATION_OFFLINE,
        "critical",
        kill,
        restart,
        10,
        {"offline_after_s": 10},
        clear_s=60,
    ),
    Case(
        Condition.LINK_FLAPPING,
        "warning",
        inject(Fault.FLAP),
        inject(Fault.FLAP, False),
        12,  # three reconnects, one every 1.5-2.5 s plus the reconnect back-off
        {"flap_reconnects_per_hour": 2},
        clear_s=WINDOW_S + 30,
    ),
    Case(Condition.MAINS_LOST, "warning", inject(Fault.MAINS), inject(Fault.MAINS, False), 0),
    Case(Condition.BATTERY_LOW, "critical", inject(Fault.FLAT), inject(Fault.FLAT, False), 0),
    Case(
        Condition.AMP_TEMPERATURE,
        "warning",
        inject(Fault.WARM),
        inject(Fault.WARM, False),
        0,
        {"amp_temp_warning_c": 60, "amp_temp_critical_c": 80},
    ),
    Case(
        Condition.AMP_TEMPERATURE,
        "critical",
        inject(Fault.OVERHEAT),
        inject(Fault.OVERHEAT, False),
        0,
        {"amp_temp_warning_c": 60, "amp_temp_critical_c": 80},
    ),
    Case(
        Condition.SPEAKER_LINE, "critical", inject(Fault.SPEAKER), inject(Fault.SPEAKER, False), 0
    ),
    Case(Condition.STORAGE_LOW, "warning", inject(Fault.STORAGE), inject(Fault.STORAGE, False), 0),
    Case(Condition.CLOCK_OFFSET, "warning", inject(Fault.CLOCK), inject(Fault.CLOCK, False), 0),
    Case(
        Condition.PLAN_BEHIND,
        "warning",
        stall_then_replan,
        inject(Fault.STALL, False),
        10,
        {"plan_behind_s": 10},
    ),
    Case(
        Condition.MEDIA_MISSING,
        "warning",
        corrupt_then_new_media,
        inject(Fault.CORRUPT, False),
        10,
        {"media_missing_s": 10},
    ),
    Case(
        Condition.PLAYS_MISSED,
        "warning",
        deaf_then_broadcast,
        inject(Fault.DEAF, False),
        3,  # the broadcast's validity
        clear_s=WINDOW_S + 30,
    ),
    Case(
        Condition.COMMANDS_UNACKED,
        "warning",
        deaf_then_broadcast,
        inject(Fault.DEAF, False),
        3,
        clear_s=WINDOW_S + 30,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.condition.value}-{c.severity}")
def test_each_rule_end_to_end(live: Live, smtp: SmtpSink, hooks: WebhookSink, case: Case) -> None:
    live.seed()
    for area, to in ((WARD, TECH_WARD), (OTHER, TECH_OTHER)):
        body = {"name": to, "channel": "email", "target": to, "area_code": area}
        api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=body)
    hook = {"name": "Trực ban", "channel": "webhook", "target": hooks.url, "secret": SECRET}
    api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=hook)
    thresholds = {"clear_hold_s": 1} | case.thresholds
    api(
        live,
        "PUT",
        f"/api/v1/alarms/thresholds/stations/{SID}",
        json={"thresholds": thresholds},
    )
    sim = live.fleet(
        [SID],
        will_delay_s=0,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        fault_settings=FaultSettings(flap_every_s=(1.5, 2.5)),
    )
    # the station has its plan before the fault
    live.recorder.wait_for("reported", SID, timeout_s=30)
    condition, title = case.condition.value, CONDITION_TITLES_VI[case.condition]

    started = time.monotonic()
    case.provoke(live, sim)
    (alarm,) = wait_until(
        lambda: alarms(live, SID, condition, "open"),
        timeout_s=case.threshold_s + 10 + (time.monotonic() - started),  # provoking included
        what=f"the {condition} alarm",
    )
    assert alarm["severity"] == case.severity
    assert alarm["title_vi"] == title
    assert f'<code class="small">{SID}</code>' in live.page("/canh-bao?trang_thai=open")
    assert title in live.page("/canh-bao?trang_thai=open")
    wait_until(
        lambda: mailed(smtp, TECH_WARD, "Phát sinh", title, SID), timeout_s=30, what="the e-mail"
    )
    wait_until(lambda: hook_events(hooks, condition, SID), timeout_s=30, what="the webhook")

    case.remove(live, sim)
    wait_until(
        lambda: (
            alarms(live, SID, condition, "cleared") and not alarms(live, SID, condition, "open")
        ),
        timeout_s=case.clear_s,
        what="the alarm to clear",
    )
    wait_until(
        lambda: hook_events(hooks, condition, SID) == ["raised", "cleared"],
        timeout_s=30,
        what="the cleared webhook",
    )
    wait_until(
        lambda: mailed(smtp, TECH_WARD, "Đã hết", title, SID), timeout_s=30, what="the e-mail"
    )
    # once each, and never to the other commune's technician
    assert mailed(smtp, TECH_WARD, "Phát sinh", title, SID) == 1
    assert mailed(smtp, TECH_WARD, "Đã hết", title, SID) == 1
    assert smtp.to(TECH_OTHER) == []
    assert len(alarms(live, SID, condition, "cleared")) == 1


@pytest.mark.settle(5.0)
def test_a_commune_wide_power_cut_of_ten_stations_is_one_digest(
    live: Live, smtp: SmtpSink, hooks: WebhookSink
) -> None:
    """Mains power is lost across the commune (its 7 stations and 3 more registered for
    the test): its technician gets one e-mail listing the 10 stations, the webhook one
    post with 10 events, the ward's technician nothing."""
    sids = live.seed()
    commune = [s for s in sids if s.startswith("lbn-")]
    area = api(live, "GET", f"/api/v1/stations/{commune[0]}")["area_code"]
    for n in range(10 - len(commune)):
        sid = f"lbn-them-{n + 1}"
        body = {"sid": sid, "name": f"Trạm bổ sung {n + 1}", "kind": "smart", "area_code": area}
        api(live, "POST", "/api/v1/stations", 201, json=body)
        commune.append(sid)
    assert len(commune) == 10
    for where, to in ((WARD, TECH_WARD), (OTHER, TECH_OTHER)):
        body = {"name": to, "channel": "email", "target": to, "area_code": where}
        api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=body)
    hook = {"name": "Trực ban", "channel": "webhook", "target": hooks.url, "secret": SECRET}
    api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=hook)
    sim = live.fleet(commune, will_delay_s=0)

    for sid in commune:  # the power cut
        sim.inject(sid, Fault.MAINS)
    title = CONDITION_TITLES_VI[Condition.MAINS_LOST]
    wait_until(
        lambda: len(alarms_of(live, Condition.MAINS_LOST)) == 10,
        timeout_s=20,
        what="ten mains alarms",
    )
    (mail,) = wait_until(lambda: smtp.to(TECH_OTHER), timeout_s=30, what="the digest")
    assert mail["Subject"] == "[Cảnh báo] 10 sự kiện tại 10 trạm"
    assert sum(mailed(smtp, TECH_OTHER, "Phát sinh", title, sid) for sid in commune) == 10
    (post,) = wait_until(lambda: hooks.hooks, timeout_s=30, what="the webhook digest")
    assert sorted(e["sid"] for e in json.loads(post.body)["events"]) == sorted(commune)
    assert (
        sorted(hook_events(hooks, Condition.MAINS_LOST.value, s)[0] for s in commune)
        == ["raised"] * 10
    )
    time.sleep(6)  # nothing more arrives (past another settle): one message each
    assert len(smtp.to(TECH_OTHER)) == 1
    assert len(hooks.hooks) == 1
    assert smtp.to(TECH_WARD) == []


def alarms_of(live: Live, condition: Condition) -> list[dict[str, Any]]:
    params = {"condition": condition.value, "state": "open", "limit": "100"}
    items: list[dict[str, Any]] = api(live, "GET", "/api/v1/alarms", params=params)["items"]
    return items
