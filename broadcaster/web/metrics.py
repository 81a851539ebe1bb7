"""``GET /metrics``: Prometheus exposition (prometheus-client), protected by a bearer
token (``BROADCASTER_METRICS_TOKEN``; unset: 404).

Read at scrape time: stations online and enabled, open alarms by severity, pending
alarm notifications, the outbox lag, a histogram of broadcast latency (published →
received by each station, last 24 h); from the active worker of this process (if any):
MQTT connection, the bridge's queue depth, its counters (received, dropped,
overflow...) and the ingest counters by kind of message.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hmac
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from broadcaster.alarms import service as alarms
from broadcaster.dispatch import outbox
from kernel.db import utcnow
from kernel.dependencies import SessionDep
from kernel.errors import NotFoundError, Unauthenticated

router = APIRouter()

#: Buckets (seconds) of the broadcast latency histogram.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The histogram covers broadcasts published in this window before the scrape.
LATENCY_WINDOW = dt.timedelta(hours=24)

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
        yield GaugeMetricFamily(
            "broadcaster_outbox_lag_seconds",
            "Age of the oldest command waiting to be published",
            v["outbox_lag"],
        )
        yield _histogram(v["latencies"])
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
        sent = CounterMetricFamily(
            "broadcaster_alarm_notifications",
            "Alarm notification messages by outcome (this worker)",
            labels=["outcome"],
        )
        for outcome, count in sorted(worker.get("alarm_notifications", {}).items()):
            sent.add_metric([outcome], count)
        yield sent
        ingest = CounterMetricFamily(
            "broadcaster_ingest_messages", "Stored station messages by outcome", labels=["kind"]
        )
        for kind, count in sorted(worker.get("ingest", {}).items()):
            ingest.add_metric([kind], count)
        yield ingest


def _histogram(latencies: list[float]) -> HistogramMetricFamily:
    counts = [0] * len(LATENCY_BUCKETS)
    for value in latencies:
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        if index < len(counts):
            counts[index] += 1
    cumulative, buckets = 0, []
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=True):
        cumulative += count
        buckets.append((str(bound), cumulative))
    buckets.append(("+Inf", len(latencies)))
    return HistogramMetricFamily(
        "broadcaster_broadcast_latency_seconds",
        "Broadcast command published -> received by a station (last 24 h)",
        buckets=buckets,
        sum_value=sum(latencies),
    )


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
        "outbox_lag": outbox.lag_seconds(session, utcnow()),
        "latencies": outbox.receive_latencies(session, utcnow() - LATENCY_WINDOW),
        "worker": status if status.get("active_worker") else None,
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(values))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
