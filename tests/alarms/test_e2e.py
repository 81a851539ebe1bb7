"""Issue 12 end to end: the real service (API + active worker), Mosquitto and simulated
stations with injected faults.  An amplifier overheating and a station going offline
raise their alarms, which are e-mailed once to the technician subscribed to that area
(a real SMTP server), not to another area's, posted once to a signed webhook, shown by
the API and `/metrics`, and cleared when the fault goes away."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from broadcaster.settings import Settings
from firmware_bridge.simulator.faults import Fault
from tests.support.live import Live
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto
from tests.support.notify import SmtpSink, WebhookSink

pytestmark = [requires_mosquitto(), pytest.mark.slow]

HOT, FAR = "p2-kp-1", "lbn-cau-tre"  # phường 2; xã Lợi Bình Nhơn
TECH_WARD, TECH_COMMUNE = "kt-phuong2@example.vn", "kt-loibinhnhon@example.vn"
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-0123456789abcdef"
SECRET = "webhook-secret-0123456789abcdef"


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink) -> Settings:
    """The service's settings with the local SMTP server, fast alarm jobs and a metrics
    token (the ``live`` fixture starts the service with them)."""
    return settings.model_copy(
        update={
            "alarm_smtp_host": "127.0.0.1",
            "alarm_smtp_port": smtp.port,
            "alarm_settle_s": 0.5,
            "alarm_eval_interval_s": 1.0,
            "metrics_token": SecretStr(TOKEN),
        }
    )


def api(live: Live, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    with live.http() as http:
        response = http.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def alarms(live: Live, sid: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api(live, "GET", "/api/v1/alarms", params={"sid": sid, **params})[
        "items"
    ]
    return items


def raised_mails(smtp: SmtpSink, to: str) -> list[str]:
    return [str(m["Subject"]) for m in smtp.to(to) if str(m["Subject"]).startswith("[Phát sinh]")]


def hook_events(hooks: WebhookSink) -> list[dict[str, Any]]:
    events = []
    for hook in hooks.hooks:
        stamp = hook.headers["X-Broadcaster-Timestamp"]
        signed = hmac.new(SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256)
        assert hook.headers["X-Broadcaster-Signature"] == f"sha256={signed.hexdigest()}"
        events.extend(json.loads(hook.body)["events"])
    return events


def test_overheat_and_offline_alarms_reach_the_right_people_once(
    live: Live, smtp: SmtpSink, hooks: WebhookSink
) -> None:
    live.seed()
    for area, to in (("phuong-2", TECH_WARD), ("xa-loi-binh-nhon", TECH_COMMUNE)):
        body = {"name": to, "channel": "email", "target": to, "area_code": area}
        api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=body)
    hook = {"name": "Trực ban", "channel": "webhook", "target": hooks.url, "secret": SECRET}
    api(live, "POST", "/api/v1/alarms/subscriptions", 201, json=hook | {"min_severity": "critical"})
    for sid in (HOT, FAR):
        api(
            live,
            "PUT",
            f"/api/v1/alarms/thresholds/stations/{sid}",
            json={"thresholds": {"offline_after_s": 10, "clear_hold_s": 1}},
        )
    sim = live.fleet([HOT, FAR], will_delay_s=0)

    # the amplifier overheats: one critical alarm, one e-mail to phường 2, one webhook
    sim.inject(HOT, Fault.OVERHEAT)
    (alarm,) = wait_until(
        lambda: alarms(live, HOT, state="open"), timeout_s=30, what="the overheat alarm"
    )
    assert (alarm["condition"], alarm["severity"]) == ("amp_temperature", "critical")
    assert alarm["title_vi"] == "Nhiệt độ bộ khuếch đại cao"
    wait_until(lambda: raised_mails(smtp, TECH_WARD), timeout_s=30, what="the e-mail")
    wait_until(lambda: hook_events(hooks), timeout_s=30, what="the webhook")
    assert raised_mails(smtp, TECH_WARD) == [
        f"[Phát sinh] Nhiệt độ bộ khuếch đại cao — {alarm['station']['name']} ({HOT})"
    ]
    assert smtp.to(TECH_COMMUNE) == []
    assert [(e["sid"], e["event"], e["condition"]) for e in hook_events(hooks)] == [
        (HOT, "raised", "amp_temperature")
    ]

    # scraped while the alarm is open
    with live.http() as http:
        scraped = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert samples[("broadcaster_alarms_active", (("severity", "critical"),))] == 1
    assert samples[("broadcaster_stations_online", ())] == 2
    assert samples[("broadcaster_worker_active", ())] == 1
    assert ("broadcaster_bridge_queue_depth", ()) in samples
    assert ("broadcaster_bridge_dropped_total", ()) in samples
    assert ("broadcaster_alarm_notifications_total", (("outcome", "sent"),)) in samples
    dashboard = (ROOT / "deploy" / "grafana" / "broadcaster.json").read_text()
    names = {name for name, _ in samples}
    assert set(re.findall(r"broadcaster_\w+", dashboard)) <= names  # the dashboard's series exist

    # the fan is fixed: the alarm clears, and the clear is told once too
    sim.inject(HOT, Fault.OVERHEAT, active=False)
    wait_until(lambda: alarms(live, HOT, state="cleared"), timeout_s=30, what="the alarm to clear")
    assert alarms(live, HOT, state="open") == []
    wait_until(
        lambda: [e for e in hook_events(hooks) if e["event"] == "cleared"],
        timeout_s=30,
        what="the cleared webhook",
    )
    assert [e["event"] for e in hook_events(hooks)] == ["raised", "cleared"]
    wait_until(lambda: len(smtp.to(TECH_WARD)) == 2, timeout_s=30, what="the cleared e-mail")

    # the commune's station loses power: offline past its threshold (10 s)
    sim.kill(FAR, "abort")
    (offline,) = wait_until(
        lambda: alarms(live, FAR, state="open"), timeout_s=60, what="the offline alarm"
    )
    assert offline["condition"] == "station_offline"
    wait_until(lambda: raised_mails(smtp, TECH_COMMUNE), timeout_s=30, what="the e-mail")
    assert raised_mails(smtp, TECH_COMMUNE) == [
        f"[Phát sinh] Trạm mất kết nối — {offline['station']['name']} ({FAR})"
    ]
    assert len(raised_mails(smtp, TECH_WARD)) == 1  # phường 2 is not told
    sim.restart(FAR)
    wait_until(
        lambda: alarms(live, FAR, state="cleared"), timeout_s=60, what="the offline alarm to clear"
    )
    offline_hooks = [e for e in hook_events(hooks) if e["sid"] == FAR]
    wait_until(
        lambda: len([e for e in hook_events(hooks) if e["sid"] == FAR]) == 2,
        timeout_s=30,
        what="the offline webhooks",
    )
    offline_hooks = [e["event"] for e in hook_events(hooks) if e["sid"] == FAR]
    assert offline_hooks == ["raised", "cleared"]
    deliveries = api(live, "GET", f"/api/v1/alarms/{offline['id']}/deliveries")
    assert sorted((d["event"], d["status"]) for d in deliveries) == [
        ("cleared", "sent"),
        ("cleared", "sent"),
        ("raised", "sent"),
        ("raised", "sent"),
    ]
