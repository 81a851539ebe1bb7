"""``GET /metrics``: Prometheus exposition (prometheus-client), protected by a bearer
token (``BROADCASTER_METRICS_TOKEN``; unset: 404).

Gauges are read at scrape time: stations online and enabled, open alarms by severity,
pending alarm notifications; from the active worker of this process (if any): MQTT
connection, the bridge's queue depth, and its counters (received, dropped, overflow...)
and the ingest counters by kind of message.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broadcaster.alarms import service as alarms
from kernel.dependencies import SessionDep
from kernel.errors import NotFoundError, Unauthenticated

router = APIRouter()

#: Bridge counters exported as ``broadcaster_bridge_<name>_total`` (the ones counted by
#: reason, ``invalid`` and ``quarantined``, are summed).
BRIDGE_COUNTERS = ("received", "invalid", "quarantined", "dropped", "overflow", "reconnects")


class _Snapshot(Collector):
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def collect(self) -> Iterator[Metric]:
        v = self.values
        yield GaugeMetricFamily("broadcaster_stations_online", "Stations online", v["online"])
        yield GaugeMetricFamily(
            "broadcaster_stations_enabled", "Stations registered and enabled", v["enabled"]
        )
        active = GaugeMetricFamily(
            "broadcaster_alarms_active", "Open alarms by severity", labels=["severity"]
        )
        for severity, count in v["alarms"].items():
            active.add_metric([severity], count)
        yield active
        yield GaugeMetricFamily(
            "broadcaster_alarm_notifications_pending",
            "Alarm notifications waiting to be sent",
            v["pending"],
        )
        worker: dict[str, Any] | None = v["worker"]
        yield GaugeMetricFamily(
            "broadcaster_worker_active",
            "1 if this process runs the active worker",
            int(bool(worker)),
        )
        if not worker:
            return
        yield GaugeMetricFamily(
            "broadcaster_mqtt_connected", "MQTT bridge connected", int(worker["mqtt_connected"])
        )
        yield GaugeMetricFamily(
            "broadcaster_bridge_queue_depth", "Inbound messages queued", worker["queue_depth"]
        )
        for name in BRIDGE_COUNTERS:
            value = worker[name]
            total = sum(value.values()) if isinstance(value, dict) else value
            yield CounterMetricFamily(f"broadcaster_bridge_{name}", f"MQTT bridge: {name}", total)
        ingest = CounterMetricFamily(
            "broadcaster_ingest_messages", "Stored station messages by outcome", labels=["kind"]
        )
        for kind, count in sorted(worker.get("ingest", {}).items()):
            ingest.add_metric([kind], count)
        yield ingest


def _authorise(request: Request) -> None:
    token = request.app.state.settings.metrics_token
    if token is None:
        raise NotFoundError("metrics are not enabled", message_vi="Chưa bật số liệu giám sát")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
        raise Unauthenticated("a valid metrics token is required", message_vi="Cần mã truy cập")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, session: SessionDep) -> Response:
    _authorise(request)
    online, enabled = alarms.stations_online(session)
    runtime = getattr(request.app.state, "runtime", None)
    status = runtime.status() if runtime is not None else {}
    values = {
        "online": online,
        "enabled": enabled,
        "alarms": {s.value: n for s, n in alarms.active_counts(session).items()},
        "pending": alarms.pending_count(session),
        "worker": status if status.get("active_worker") else None,
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(values))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
