"""An emergency is not queued behind a city-wide republish of ``desired`` (issue 14,
items 2 and 3: "the emergency publish must not wait behind anything that is not
needed to make it durable"; "the worker stays responsive to emergencies while it
does").

The whole service (``live``: app + worker over HTTP, a real Mosquitto whose every
message is recorded and schema-checked) with 3,000 stations in the registry.  Every
station's default volume changes in one statement (a city-wide change: every
document differs), and as soon as the first republished ``desired`` crosses the
broker an emergency broadcast is sent to the whole city.  The republish goes out in
paced batches (``desired.PUBLISH_BATCH``) on the worker's rebuild, the emergency on
the outbox publisher: its one group publish must cross the broker before the
republish's last document, with republished documents after it.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert, select, update

from broadcaster import db
from broadcaster.dispatch import desired
from kernel.signals import plan_changed
from stations.models import Area, AreaLevel, Station, StationKind
from tests.support.live import Live, send_broadcast
from tests.support.loa import wait_until
from tests.support.mosquitto import requires_mosquitto

pytestmark = [requires_mosquitto(), pytest.mark.timeout(900)]  # 3,000 stations, twice

STATIONS = 3_000  # six batches of the republish


def _grow_registry(live: Live, n: int) -> None:
    """Tân An and ``n - 108`` more stations in its hamlets (not simulated: a retained
    ``desired`` is published for every enabled station, online or not)."""
    live.seed()
    with db.session_scope(live.factory) as session:
        hamlets = list(session.scalars(select(Area.id).where(Area.level == AreaLevel.HAMLET)))
        session.execute(
            insert(Station),
            [
                {
                    "sid": f"them-{i:05d}",
                    "name": f"Trạm thêm {i}",
                    "name_folded": f"tram them {i}",
                    "kind": StationKind.SMART,
                    "area_id": hamlets[i % len(hamlets)],
                    "capabilities": ["file"],
                    "default_volume": 70,
                    "enabled": True,
                }
                for i in range(n - 108)
            ],
        )
        plan_changed(session, "test: more stations")


def _desired_count(live: Live) -> int:
    return sum(1 for r in live.recorder.snapshot() if r.schema == "desired")


def test_an_emergency_is_published_during_a_city_wide_republish(live: Live) -> None:
    assert STATIONS > 2 * desired.PUBLISH_BATCH
    _grow_registry(live, STATIONS)
    bulletin = live.approved_tts("Cảnh báo khẩn: nước dâng.")
    worker = live.worker()
    # every station's first document is out (the initial rebuild)
    wait_until(lambda: _desired_count(live) >= STATIONS, timeout_s=300, what="the first republish")
    wait_until(
        lambda: worker.last_rebuild is not None and worker.last_rebuild.failed == 0,
        timeout_s=60,
        what="the rebuild settled",
    )
    time.sleep(3)  # a quiet moment: nothing else pending
    before = len(live.recorder.snapshot())

    # a city-wide change: every station's document changes
    with db.session_scope(live.factory) as session:
        session.execute(update(Station).values(default_volume=55))
        plan_changed(session, "test: city-wide volume")

    def republished() -> int:
        return sum(1 for r in live.recorder.snapshot()[before:] if r.schema == "desired")

    wait_until(lambda: republished() >= 1, timeout_s=120, what="the republish starting")
    sent_at = time.monotonic()
    with live.http() as http:
        made = send_broadcast(
            http,
            {
                "targets": {"areas": ["tan-an"]},
                "content": {"asset_id": bulletin},
                "tier": "emergency",
                "title": "Khẩn cấp giữa lúc phát lại kế hoạch",
            },
        )
    wait_until(
        lambda: republished() >= STATIONS, timeout_s=300, what="the whole republish crossing"
    )
    after = live.recorder.snapshot()[before:]
    order = [
        ("cmd", r.at)
        if r.schema == "command" and r.data["cmd_id"] == made["cmd_id"]
        else ("desired", r.at)
        for r in after
        if r.schema == "desired" or r.schema == "command"
    ]
    commands = [i for i, (kind, _) in enumerate(order) if kind == "cmd"]
    assert commands, f"the emergency {made['cmd_id']} never crossed the broker"
    first = commands[0]
    desired_after = sum(1 for kind, _ in order[first:] if kind == "desired")
    assert desired_after > 0, (
        "the emergency crossed the broker only after the whole republish "
        f"({republished()} documents)"
    )
    # every republished document changed (the volume) and was counted once per station
    sids = {r.sid for r in after if r.schema == "desired"}
    assert len(sids) == STATIONS
    print(
        f"\nemergency published {order[first][1] - sent_at:.2f} s after the API call, "
        f"ahead of {desired_after} of {STATIONS} republished documents"
    )
