"""Desired state end to end: rule changes reach stations; offline stations catch up;
stations play from their cache while the link is down."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.live import Live
from tests.support.loa import wait_until

# plans "in two hours" and "in 15 seconds": across midnight at the end of the day
pytestmark = pytest.mark.calendar

LBN = ["lbn-cau-tre", "lbn-ngai-loi-a", "lbn-smart-1"]
OTHER = "p2-kp-1"


def _versions(live: Live, sids: list[str]) -> dict[str, tuple[int, int | None]]:
    with live.http() as http:
        states = {sid: http.get(f"/api/v1/stations/{sid}/state").json() for sid in sids}
    return {sid: (s["desired_version"], s["applied_version"]) for sid, s in states.items()}


def _in_sync(live: Live, sids: list[str]) -> bool:
    with live.http() as http:
        return all(http.get(f"/api/v1/stations/{sid}/state").json()["in_sync"] for sid in sids)


def test_rule_change_reaches_every_affected_station(live: Live) -> None:
    live.seed()
    fleet = live.fleet([*LBN, OTHER])
    wait_until(lambda: _in_sync(live, [*LBN, OTHER]), timeout_s=60, what="initial sync")
    before = _versions(live, [*LBN, OTHER])
    bulletin = live.approved_tts("Bản tin nông nghiệp: hướng dẫn phòng trừ sâu bệnh trên lúa.")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    rule_id = live.approved_rule(asset_id=bulletin, at=at, groups=["xa-loi-binh-nhon"])
    wait_until(
        lambda: all(_versions(live, [s])[s][1] == before[s][0] + 1 for s in LBN),
        timeout_s=30,
        what="the commune applied the new version",
    )
    assert _in_sync(live, LBN)
    assert _versions(live, [OTHER])[OTHER] == before[OTHER]  # not affected, not republished
    with live.http() as http:
        playlist = http.get(
            f"/api/v1/stations/{LBN[0]}/playlist",
            params={"date": at.astimezone(dt.timezone(dt.timedelta(hours=7))).date().isoformat()},
        ).json()
        assert [i["rule_id"] for i in playlist["items"]].count(rule_id) == 1
        # move it an hour later: one more version, once, for the affected stations only
        moved = (
            (at + dt.timedelta(hours=1))
            .astimezone(dt.timezone(dt.timedelta(hours=7)))
            .replace(tzinfo=None)
        )
        patched = http.patch(
            f"/api/v1/schedules/rules/{rule_id}",
            json={
                "recurrence": {"when": {"kind": "once", "at": moved.isoformat(timespec="seconds")}}
            },
        )
        assert patched.status_code == 200, patched.text
        if patched.json()["approval"] != "approved":
            assert (
                http.post(
                    f"/api/v1/schedules/rules/{rule_id}/approve", headers=live.approver()
                ).status_code
                == 200
            )
    wait_until(
        lambda: all(_versions(live, [s])[s][1] == before[s][0] + 2 for s in LBN),
        timeout_s=30,
        what="the change applied",
    )
    assert _versions(live, [OTHER])[OTHER] == before[OTHER]
    desired = [
        r for r in live.recorder.select("desired") if r.topic.endswith(f"/st/{LBN[0]}/desired")
    ]
    versions = [r.data["version"] for r in desired]
    assert versions == sorted(set(versions))  # each version published once, in order
    assert fleet.station(LBN[0]).desired_version == before[LBN[0]][0] + 2


def test_offline_station_applies_the_change_after_reconnecting(live: Live) -> None:
    live.seed()
    sid = LBN[0]
    fleet = live.fleet([sid])
    wait_until(lambda: _in_sync(live, [sid]), timeout_s=60, what="initial sync")
    version = _versions(live, [sid])[sid][0]
    fleet.kill(sid, "abort")
    bulletin = live.approved_tts("Thông báo lịch cắt điện ngày mai.")
    live.approved_rule(
        asset_id=bulletin,
        at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3),
        groups=["xa-loi-binh-nhon"],
    )
    wait_until(
        lambda: _versions(live, [sid])[sid][0] == version + 1, timeout_s=30, what="published"
    )
    assert _versions(live, [sid])[sid][1] == version  # the station has not seen it yet
    fleet.restart(sid)
    wait_until(
        lambda: _versions(live, [sid])[sid][1] == version + 1,
        timeout_s=30,
        what="applied after reconnect",
    )
    assert _in_sync(live, [sid])


def test_scheduled_item_plays_from_cache_while_the_link_is_down(live: Live) -> None:
    live.seed()
    sid = LBN[0]
    fleet = live.fleet([sid])
    wait_until(lambda: _in_sync(live, [sid]), timeout_s=60, what="initial sync")
    bulletin = live.approved_tts("Bản tin phát theo lịch khi mất kết nối.")
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)).replace(microsecond=0)
    rule_id = live.approved_rule(asset_id=bulletin, at=at, groups=["xa-loi-binh-nhon"])
    wait_until(
        lambda: _in_sync(live, [sid]) and _versions(live, [sid])[sid][1] >= 2,
        timeout_s=30,
        what="plan applied and media cached",
    )
    assert fleet.station(sid).missing == ()
    live.broker.stop()  # the whole link is down: no broker for the station or the server
    wait_until(
        lambda: any(
            p.item_id and p.item_id.startswith(f"r{rule_id}-") and p.outcome == "finished"
            for p in fleet.station(sid).plays
        ),
        timeout_s=60,
        what="the item played from the cache",
    )
    assert not fleet.station(sid).online
    live.broker.start()
    with live.http() as http:

        def logged() -> list[dict[str, object]]:
            items = http.get(
                "/api/v1/playlog", params={"station": sid, "source": "schedule"}
            ).json()["items"]
            return [p for p in items if p["rule_id"] == rule_id]

        wait_until(
            lambda: logged() and logged()[0]["status"] == "played",
            timeout_s=60,
            what="spooled events reconciled",
        )
        play = logged()[0]
        assert play["started_at"] is not None
        assert play["played_ms"] > 0
