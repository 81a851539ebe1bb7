"""End to end: the active worker runs the reorganisation job (at local midnight, and
every 5 minutes), and a plan it applies reaches the stations: the 2025 Tân An change,
scheduled earlier and due today, ends the city step of the relay chain, and a station's
retained `desired` playlist no longer carries it."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from broadcaster.reorg import service as reorg
from broadcaster.reorg import tan_an as tan_an_2025
from kernel.changes import Actor, commit_change
from schedules import seed
from stations.models import Reorganisation, ReorgStatus
from tests.support.live import Live
from tests.support.loa import wait_until

SID = "lbn-cau-tre"
CITY_STEP = "/tan-an.mp3"


def _state(live: Live) -> dict[str, object]:
    with live.http() as http:
        state: dict[str, object] = http.get(f"/api/v1/stations/{SID}/state").json()
    return state


def _last_desired(live: Live) -> str:
    found = [r for r in live.recorder.select("desired") if r.topic.endswith(f"/st/{SID}/desired")]
    return json.dumps(found[-1].data) if found else ""


def test_the_worker_applies_a_due_plan_and_the_stations_follow(live: Live) -> None:
    live.seed()
    seed.load(live.factory, live.app.state.media_library)
    live.fleet([SID])
    wait_until(lambda: CITY_STEP in _last_desired(live), timeout_s=60, what="the chain")
    wait_until(lambda: _state(live)["in_sync"], timeout_s=60, what="initial sync")
    version = int(str(_state(live)["desired_version"]))

    worker = live.worker()
    jobs = [j for j in worker.scheduler.get_jobs() if j.func == worker._reorganise]
    cron = [j.trigger for j in jobs if isinstance(j.trigger, CronTrigger)]
    assert len(cron) == 1
    assert str(cron[0].timezone) == live.settings.timezone
    assert {str(f) for f in cron[0].fields if f.name in ("hour", "minute", "second")} == {"0"}
    assert any(isinstance(j.trigger, IntervalTrigger) for j in jobs)

    # scheduled yesterday for today (its date has come since)
    today = dt.datetime.now(ZoneInfo(live.settings.timezone)).date()
    plan = tan_an_2025.plan(end_rules=tan_an_2025.CITY_RULES).model_copy(
        update={"effective": today}
    )
    with live.factory() as session:
        record, after = reorg.submit(session, plan, by="admin", today=today - dt.timedelta(days=1))
        assert record.status is ReorgStatus.SCHEDULED
        commit_change(
            session,
            Actor.system("admin"),
            "area.reorganise.schedule",
            "area_reorganisation",
            [str(record.id)],
            after=after,
            plan=False,
        )
        record_id = record.id
    worker._reorganise()  # what the 5-minute tick (or midnight) runs
    with live.factory() as session:
        assert session.get_one(Reorganisation, record_id).status is ReorgStatus.APPLIED
    # a rebuild already under way when the plan was applied may publish (and the station
    # apply) one more version with the city step: wait for the one without it
    wait_until(lambda: CITY_STEP not in _last_desired(live), timeout_s=60, what="the new chain")
    last = json.loads(_last_desired(live))
    assert int(last["version"]) > version
    assert "/vov1.mp3" in _last_desired(live)
    wait_until(
        lambda: int(str(_state(live)["applied_version"] or 0)) >= int(last["version"]),
        timeout_s=60,
        what="the station applied the new plan",
    )
    worker._reorganise()  # idempotent: nothing more to apply
    with live.http() as http:
        plans = http.get("/api/v1/areas/reorganisations").json()
    assert [(p["id"], p["status"]) for p in plans] == [(record_id, "applied")]
