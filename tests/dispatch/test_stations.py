"""Issue 3, the server side end to end: what stations send over a real Mosquitto, as the
API shows it.

Births and deaths with ``bdseq`` (power loss detected through the will; a stale death
after a quick reconnect ignored), telemetry history and latest sample, bad input from a
station (counted, logged with the station id and the reason, never blocking what comes
after), stations unknown to the registry, and the service running while the broker is
away (``/readyz`` says so until the bridge connects).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broadcaster.app import create_app
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from firmware_bridge.messages import Event, StationState, Telemetry, dump_message
from firmware_bridge.topics import Topics
from kernel.security import Role as UserRole
from stations.models import TelemetrySample
from tests.api import make_user
from tests.support.live import Live, start_server
from tests.support.loa import RawPublisher, wait_until
from tests.support.mosquitto import Mosquitto, free_port, requires_mosquitto
from tests.support.protocol import Recorder

pytestmark = requires_mosquitto()

T = Topics()
A, B, C = "lbn-cau-tre", "lbn-ngai-loi-a", "p2-kp-1"
GHOST = "ghost-station-9"  # a valid sid that the registry does not know


# ---------------------------------------------------------------------------- helpers


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime:
    assert value is not None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def station_state(live: Live, sid: str) -> dict[str, Any]:
    with live.http() as http:
        response = http.get(f"/api/v1/stations/{sid}/state")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def station_list(live: Live, **params: Any) -> dict[str, Any]:
    with live.http() as http:
        response = http.get("/api/v1/stations", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def dispatch_status(live: Live) -> dict[str, Any]:
    with live.http() as http:
        response = http.get("/api/v1/dispatch/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ingest_count(live: Live, key: str) -> int:
    return int(dispatch_status(live)["ingest"].get(key, 0))


def telemetry(live: Live, sid: str, **params: str) -> list[dict[str, Any]]:
    with live.http() as http:
        response = http.get(f"/api/v1/stations/{sid}/telemetry", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_online(
    live: Live, sids: Sequence[str], online: bool = True, timeout_s: float = 30
) -> None:
    wait_until(
        lambda: all(station_state(live, sid)["online"] is online for sid in sids),
        timeout_s=timeout_s,
        what=f"{list(sids)} {'online' if online else 'offline'} in the API",
    )


def telemetry_payload(seq: int, at: dt.datetime, **extra: Any) -> bytes:
    return dump_message(
        Telemetry.model_validate(
            {"seq": seq, "at": at, "uptime_s": 10, "volume": 60, "playing": None, **extra}
        )
    )


@pytest.fixture
def raw(live: Live) -> Iterator[RawPublisher]:
    publisher = RawPublisher(live.broker, client_id="test-raw-station")
    yield publisher
    publisher.stop()


# ---------------------------------------------------------------------------- births


def test_births_bring_stations_online_with_their_details(live: Live, raw: RawPublisher) -> None:
    sids = live.seed()
    assert len(sids) == 108
    assert station_list(live, online="true")["total"] == 0
    before = station_state(live, A)
    assert before["online"] is False
    assert before["last_seen"] is None

    started = utcnow()
    sim = live.fleet(
        [A, B],
        firmware="loa-fw-2.4.1",
        model="LOA-BRIDGE-3",
        capabilities=("file", "relay", "telemetry_amp"),
    )
    wait_online(live, [A, B])
    state = station_state(live, A)
    assert state["firmware"] == "loa-fw-2.4.1"
    assert state["model"] == "LOA-BRIDGE-3"
    assert sorted(state["capabilities"]) == ["file", "relay", "telemetry_amp"]
    assert state["bdseq"] == sim.station(A).bdseq
    assert state["offline_since"] is None
    assert started - dt.timedelta(seconds=1) <= parse_time(state["online_since"]) <= utcnow()
    first_seen = parse_time(state["last_seen"])

    # the list: items carry online/last_seen; the filter splits the registry in two
    online = station_list(live, online="true")
    assert online["total"] == 2
    assert {s["sid"] for s in online["items"]} == {A, B}
    assert all(s["online"] is True and s["last_seen"] for s in online["items"])
    offline = station_list(live, online="false")
    assert offline["total"] == 106
    assert {A, B}.isdisjoint(s["sid"] for s in offline["items"])
    assert all(s["online"] is False for s in offline["items"])
    assert station_list(live)["total"] == 108
    with live.http() as http:
        item = http.get(f"/api/v1/stations/{C}").json()
    assert item["online"] is False
    assert item["last_seen"] is None

    # any message moves last_seen: a telemetry sample, then a reconnect's birth
    raw.publish(T.telemetry(A), telemetry_payload(7, utcnow()), qos=0)
    wait_until(
        lambda: parse_time(station_state(live, A)["last_seen"]) > first_seen,
        what="last_seen moved by telemetry",
    )
    seen = parse_time(station_state(live, A)["last_seen"])
    bdseq = sim.station(A).bdseq
    assert bdseq is not None
    sim.drop_link(A)  # link flap: the station reconnects with bdseq + 1
    wait_until(
        lambda: station_state(live, A)["bdseq"] == bdseq + 1,
        timeout_s=30,
        what="the reconnect's birth",
    )
    state = station_state(live, A)
    assert state["online"] is True
    assert parse_time(state["last_seen"]) > seen
    births = live.recorder.select("station-state", sid=A, where=lambda d: d["online"])
    assert [r.data["bdseq"] for r in births][-2:] == [bdseq, bdseq + 1]


# ---------------------------------------------------------------------------- deaths


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_power_loss_marks_the_station_offline_within_keepalive_and_will_delay(
    live: Live, protocol: str, record_property: Any
) -> None:
    keepalive, will_delay = 5, 2
    live.seed()
    # a station whose clock is off by tens of seconds: the server's times must not be its
    started = utcnow()
    sim = live.fleet(
        [A],
        faults=[f"clock:{A}"],
        seed=3,
        keepalive=keepalive,
        will_delay_s=will_delay,
        protocol=protocol,
    )
    assert sim.station(A).protocol == protocol
    wait_online(live, [A])
    state = station_state(live, A)
    birth = live.recorder.wait_for("station-state", sid=A, where=lambda d: d["online"])[-1]
    station_clock = parse_time(birth.data["at"])
    online_since = parse_time(state["online_since"])
    assert started - dt.timedelta(seconds=1) <= online_since <= utcnow()
    assert abs((station_clock - online_since).total_seconds()) >= 15, (
        "the birth should carry the station's skewed clock",
        birth.data,
    )
    bdseq = state["bdseq"]

    killed_at = utcnow()
    killed_mono = time.monotonic()
    sim.kill(A, "silent")  # power loss: no DISCONNECT, the socket just goes quiet
    wait_online(live, [A], online=False, timeout_s=60)
    noticed = utcnow()
    state = station_state(live, A)
    offline_since = parse_time(state["offline_since"])
    delay = (offline_since - killed_at).total_seconds()
    bound = keepalive * 1.5 + (will_delay if protocol == "5" else 0)  # no will delay in 3.1.1
    assert killed_at <= offline_since <= noticed, (offline_since, killed_at, noticed)
    # the protocol's bound, with a generous margin for the broker's keep-alive sweep and
    # a loaded CI machine (this is a rule, not a speed target)
    assert delay <= bound + 10, f"offline {delay:.1f} s after the power loss (rule: {bound} s)"
    assert state["online_since"] is None
    assert state["bdseq"] == bdseq
    will = live.recorder.wait_for("station-state", sid=A, where=lambda d: not d["online"])[-1]
    assert will.data == {"online": False, "bdseq": bdseq}  # the will, published by the broker
    assert station_list(live, online="false", q=A)["total"] == 1
    record_property("offline_after_s", round(delay, 2))
    print(
        f"power loss of {A} (MQTT {protocol}): offline after {delay:.1f} s (will on the "
        f"broker after {will.at - killed_mono:.1f} s; rule: {bound} s)"
    )

    # power back: a new birth with the next bdseq brings it online again
    sim.restart(A)
    wait_online(live, [A])
    assert station_state(live, A)["bdseq"] == bdseq + 1


def test_a_stale_death_after_a_quick_reconnect_is_ignored(live: Live, raw: RawPublisher) -> None:
    live.seed()
    sim = live.fleet([A])
    wait_online(live, [A])
    old = station_state(live, A)["bdseq"]
    sim.drop_link(A)
    wait_until(
        lambda: station_state(live, A)["bdseq"] == old + 1,
        timeout_s=30,
        what="the reconnect's birth",
    )
    stale_before = ingest_count(live, "stale_death")
    # the previous connection's will, delivered after the new birth (what a broker does
    # on an MQTT 3.1.1 session takeover)
    raw.publish(T.state(A), dump_message(StationState(online=False, bdseq=old)), retain=True)
    wait_until(
        lambda: ingest_count(live, "stale_death") == stale_before + 1,
        what="the stale death counted",
    )
    state = station_state(live, A)
    assert state["online"] is True
    assert state["bdseq"] == old + 1
    assert state["offline_since"] is None
    assert sim.station(A).online

    # whereas a death that matches the accepted birth does mark it offline, at receipt
    deaths_before = ingest_count(live, "death")
    sent_at = utcnow()
    death = StationState(online=False, bdseq=old + 1, at=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    raw.publish(T.state(A), dump_message(death), retain=True)
    wait_until(lambda: ingest_count(live, "death") == deaths_before + 1, what="the death")
    state = station_state(live, A)
    assert state["online"] is False
    assert parse_time(state["offline_since"]) >= sent_at - dt.timedelta(seconds=1)


# ---------------------------------------------------------------------------- telemetry


def test_telemetry_history_and_the_latest_sample(live: Live, raw: RawPublisher) -> None:
    live.seed()
    live.fleet([A])
    # the simulator publishes its first sample (seq 0) right after the birth
    latest = wait_until(lambda: station_state(live, A)["telemetry"], what="first telemetry")
    assert latest["seq"] == 0
    for key in ("rssi_dbm", "amp_temp_c", "supply_v", "volume", "uptime_s"):
        assert key in latest, latest

    base = utcnow().replace(microsecond=0)
    hours = [base - dt.timedelta(hours=h) for h in (3, 2, 1)]
    for seq, at in zip((101, 102, 103), hours, strict=True):
        raw.publish(T.telemetry(A), telemetry_payload(seq, at, rssi_dbm=-70.0 - seq), qos=0)
    since = hours[0].isoformat()
    until = (hours[2] + dt.timedelta(minutes=1)).isoformat()  # not the simulator's sample
    wait_until(
        lambda: len(telemetry(live, A, **{"from": since, "to": until})) == 3,
        what="three historical samples stored",
    )
    # `from` inclusive, `to` exclusive, oldest first
    window = telemetry(live, A, **{"from": since, "to": hours[2].isoformat()})
    assert [s["seq"] for s in window] == [101, 102]
    assert [parse_time(s["at"]) for s in window] == hours[:2]
    assert window[0]["data"]["rssi_dbm"] == -171.0
    assert all(parse_time(s["received_at"]) >= base - dt.timedelta(seconds=5) for s in window)
    everything = telemetry(live, A, **{"from": since})
    assert [s["seq"] for s in everything][:3] == [101, 102, 103]
    assert 0 in [s["seq"] for s in everything]
    assert [s["seq"] for s in telemetry(live, A, **{"from": since, "limit": "2"})] == [101, 102]
    # older samples go to the history only; the latest stays the newest by station time
    assert station_state(live, A)["telemetry"]["seq"] == 0

    newer = utcnow() + dt.timedelta(seconds=30)
    raw.publish(T.telemetry(A), telemetry_payload(104, newer, amp_temp_c=71.5), qos=0)
    wait_until(
        lambda: (station_state(live, A)["telemetry"] or {}).get("seq") == 104,
        what="the newest sample as latest",
    )
    state = station_state(live, A)
    assert state["telemetry"]["amp_temp_c"] == 71.5
    assert parse_time(state["telemetry_at"]) == newer.replace(
        microsecond=newer.microsecond // 1000 * 1000
    )

    # bad ranges and parameters are refused
    with live.http() as http:
        url = f"/api/v1/stations/{A}/telemetry"
        bad: list[dict[str, str]] = [
            {"from": base.isoformat(), "to": base.isoformat()},  # empty range
            {"from": base.isoformat(), "to": hours[0].isoformat()},  # reversed
            {"from": "2026-01-01T00:00:00"},  # no offset
            {"to": "2026-01-01T00:00:00"},
            {"from": "yesterday"},
            {"limit": "0"},
            {"limit": "100000"},
        ]
        for params in bad:
            response = http.get(url, params=params)
            assert response.status_code == 422, (params, response.text)
        assert http.get(f"/api/v1/stations/{GHOST}/telemetry").status_code == 404
        assert http.get(f"/api/v1/stations/{GHOST}/state").status_code == 404


# ---------------------------------------------------------------------------- bad input


def test_bad_input_from_a_station_is_counted_logged_and_never_blocks(
    live: Live, raw: RawPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    live.seed()
    wait_until(lambda: dispatch_status(live).get("mqtt_connected"), what="bridge connected")
    bad_topics = {T.telemetry(B), T.event(B), T.reported(B), T.state(B)}
    live.recorder.expect_invalid(lambda r: r.topic in bad_topics)
    before = dispatch_status(live)
    invalid_before = dict(before["invalid"])

    oversized = json.dumps(
        {"desired_version": 1, "at": utcnow().isoformat(), "missing": [], "x": "a" * 300_000}
    ).encode()
    assert len(oversized) > 256 * 1024
    garbage = [
        (T.telemetry(B), b'{"seq": 1, "at": '),  # invalid JSON
        (T.event(B), json.dumps({"type": "play.started", "at": utcnow().isoformat()}).encode()),
        (T.reported(B), oversized),
        (T.state(B), b"\xff\xfe not utf-8"),
        (T.telemetry(B), b"[1, 2, 3]"),  # JSON, but not an object
        (T.telemetry(B), b"NaN"),
    ]
    for topic, payload in garbage:
        raw.publish(topic, payload)
    # and a burst, so the log is rate-limited while every message is still counted
    for n in range(300):
        raw.publish(T.event(B), b'{"event_id": ' + str(n).encode(), qos=0)
    # a valid message after all that still lands
    marker_at = utcnow().replace(microsecond=0)
    raw.publish(T.telemetry(B), telemetry_payload(4242, marker_at), qos=0)
    wait_until(
        lambda: [s["seq"] for s in telemetry(live, B, **{"from": marker_at.isoformat()})] == [4242],
        what="the valid sample after the garbage",
    )

    after = dispatch_status(live)
    invalid = {k: v - invalid_before.get(k, 0) for k, v in after["invalid"].items()}
    assert invalid == {"json": 303, "schema": 1, "oversize": 1, "encoding": 1}, after
    assert after["dropped"] == before["dropped"] == 0
    assert after["handler_errors"] == 0
    assert after["ingest"].get("errors", 0) == 0
    assert after["mqtt_connected"] is True
    wait_until(lambda: dispatch_status(live)["queue_depth"] == 0, what="an empty queue")
    assert station_state(live, B)["telemetry"]["seq"] == 4242

    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "firmware_bridge.client" and "invalid message" in r.getMessage()
    ]
    assert all(f"/st/{B}/" in line for line in logged), logged
    assert any("invalid JSON" in line for line in logged), logged
    assert any("too large" in line for line in logged), logged
    assert any("not UTF-8" in line for line in logged), logged
    assert any("event_id" in line and "/event" in line for line in logged), logged
    assert len(logged) < 100, f"{len(logged)} log lines for a burst: not rate-limited"
    with live.http() as http:
        assert http.get("/api/v1/stations", params={"limit": 1}).status_code == 200


def test_an_unknown_station_is_counted_logged_once_per_connection_and_not_stored(
    live: Live, raw: RawPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="broadcaster.dispatch.ingest")
    live.seed()
    wait_until(lambda: dispatch_status(live).get("mqtt_connected"), what="bridge connected")
    unknown_before = ingest_count(live, "unknown_station")

    def birth(bdseq: int) -> bytes:
        return dump_message(
            StationState(
                online=True,
                bdseq=bdseq,
                at=utcnow(),
                firmware="x",
                capabilities=["file"],
                desired_version=None,
            )
        )

    def event(n: int) -> bytes:
        return dump_message(
            Event(event_id=f"{GHOST}.e{n}", type="fault.raised", fault="other", at=utcnow())
        )

    connection = [
        birth(0),
        telemetry_payload(0, utcnow()),
        event(1),
        telemetry_payload(1, utcnow()),
    ]
    for payload, topic in zip(
        connection,
        [T.state(GHOST), T.telemetry(GHOST), T.event(GHOST), T.telemetry(GHOST)],
        strict=True,
    ):
        raw.publish(topic, payload)
    wait_until(
        lambda: ingest_count(live, "unknown_station") == unknown_before + 4,
        what="the first connection's messages counted",
    )
    # a new connection (a new birth) is logged again; its follow-ups are not
    raw.publish(T.state(GHOST), birth(1), retain=True)
    raw.publish(T.telemetry(GHOST), telemetry_payload(0, utcnow()))
    wait_until(
        lambda: ingest_count(live, "unknown_station") == unknown_before + 6,
        what="the second connection's messages counted",
    )
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "broadcaster.dispatch.ingest" and GHOST in r.getMessage()
    ]
    assert len(logged) == 2, logged
    assert all("not in the registry" in line for line in logged)

    with live.http() as http:
        assert http.get(f"/api/v1/stations/{GHOST}/state").status_code == 404
        assert http.get(f"/api/v1/stations/{GHOST}").status_code == 404
    assert station_list(live, online="true")["total"] == 0
    with live.factory() as session:
        assert session.scalar(select(func.count()).select_from(TelemetrySample)) == 0
    status = dispatch_status(live)
    assert status["ingest"].get("birth", 0) == 0
    assert status["ingest"].get("telemetry", 0) == 0
    assert status["ingest"].get("event", 0) == 0
    assert status["handler_errors"] == 0
    raw.publish(T.state(GHOST), b"", retain=True)  # clear the retained birth


# ---------------------------------------------------------------------------- no broker


def test_the_api_serves_without_a_broker_and_readyz_follows_the_bridge(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "late-broker", port=free_port())
    service_settings = settings.model_copy(update={"mqtt_url": broker.url})
    app = create_app(service_settings, role=Role.ALL)
    server, thread = start_server(app, port)
    recorder: Recorder | None = None
    try:
        admin = make_user(app.state.sessionmaker, "admin", UserRole.ADMIN)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            def readyz() -> httpx.Response:
                return http.get("/readyz")

            down = wait_until(
                lambda: (r := readyz()).status_code == 503 and r,
                what="/readyz 503 while the broker is down",
            )
            checks = down.json()["checks"]
            assert checks["database"]["ok"] is True
            assert checks["dispatch"]["ok"] is False
            assert checks["dispatch"]["broker"] is False
            assert "unreachable" in checks["dispatch"]["error"]
            # the API keeps serving meanwhile
            assert http.get("/healthz").status_code == 200
            stations = http.get("/api/v1/stations", headers=admin)
            assert stations.status_code == 200, stations.text
            status = http.get("/api/v1/dispatch/status", headers=admin).json()
            assert status["active_worker"] is True
            assert status["mqtt_connected"] is False

            broker.start()  # the broker appears on the configured port
            recorder = Recorder(broker.host, broker.port).start()
            up = wait_until(
                lambda: (r := readyz()).status_code == 200 and r,
                timeout_s=60,
                what="/readyz 200 once the broker is up",
            )
            assert up.json()["checks"]["dispatch"]["broker"] is True
            status = http.get("/api/v1/dispatch/status", headers=admin).json()
            assert status["mqtt_connected"] is True
            recorder.wait_for("server-state", where=lambda d: d["online"] is True)
    finally:
        server.should_exit = True
        thread.join(20)
        if recorder is not None:
            recorder.stop()
        broker.stop()
    if recorder is not None:
        recorder.assert_all_valid()
