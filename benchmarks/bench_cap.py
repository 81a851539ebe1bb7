"""CAP-in benchmark: a CAP 1.2 alert posted to the ingest endpoint until every station
has RECEIVED the broadcast it became, beside a bare MQTT publish-and-ack loop over the
same broker in the same run.

Setup, the simulator and the baseline are those of ``bench_broadcast.py`` (Tân An plus
bench stations, ``broadcaster serve --role all`` and the simulator as child processes).
Each round posts a Vietnamese flood alert (risk level 4, geocode ``tan-an``: every
station) from a pre-authorised source, measured from just before the POST:

- ``api_call_s``: until the ingest answered (validation, area mapping, Vietnamese
  speech synthesis of headline + instruction, the broadcast stored);
- ``received_all_broker_s``: until a subscriber on ``st/+/ack`` saw N RECEIVED acks;
- ``received_all_stored_s``: until the service had committed N targets at RECEIVED+.

Each round's broadcast is stopped before the next.  ``--media-follows``: the stations
announce proposal 0005, so the alert's play leaves before its speech and its audio
follows (``api_call_s`` still includes the speech, the RECEIVED figures do not).

    python benchmarks/bench_cap.py --out FILE.json [--sizes 108] [--rounds 3]
        [--media-follows]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_broadcast as bb  # noqa: E402
import httpx  # noqa: E402

from tests.alerts.capdocs import flood_alert  # noqa: E402
from tests.support.process import stop_children_on_sigterm  # noqa: E402

_source: dict[str, str] = {}


def _token(http: httpx.Client) -> str:
    if "token" not in _source:
        made = http.post("/api/v1/alert-sources", json={"name": "bench", "auto_air": True})
        made.raise_for_status()
        _source["token"] = made.json()["token"]
    return _source["token"]


def cap_round(
    http: httpx.Client,
    watch: bb.AckWatch,
    stored: bb.StoredCounts,
    server_pid: int,
    n: int,
    *rest: Any,  # the fallback asset, the round's index, the lead time (unused: the API's)
) -> dict[str, Any]:
    index = int(rest[1])
    headers = {"X-Alert-Token": _token(http), "Content-Type": "application/cap+xml"}
    document = flood_alert(f"BENCH-{n}-{index + 1}-{os.getpid()}", geocode="tan-an", risk_level=4)
    server = bb.ProcWatch(server_pid)
    t0 = bb.now()
    response = http.post("/api/v1/alerts/cap", content=document, headers=headers)
    api_s = bb.now() - t0
    response.raise_for_status()
    made = response.json()
    out: dict[str, Any] = {
        "round": index + 1,
        "api_call_s": round(api_s, 3),
        "outcome": made["outcome"],
        "station_count": made["station_count"],
    }
    if not made["aired"]:
        out["error"] = f"not aired: {made['message']}"
        return out
    cmd_id = http.get(f"/api/v1/broadcasts/{made['broadcast_id']}").json()["cmd_id"]
    broker_all, stored_all = bb.wait_received(watch, stored, cmd_id, n, t0)
    out["server"] = server.read()
    out.update(bb.received_figures(watch, cmd_id, t0, broker_all))
    out["received_stored"] = stored.answered(cmd_id)
    out["received_all_stored_s"] = round(stored_all, 3) if stored_all is not None else None
    bb.end_broadcast(http, made["broadcast_id"])
    return out


def summarise(result: dict[str, Any]) -> None:
    rounds = result.get("rounds") or []
    base = bb.median_of(bb.baseline_rounds(result), "all_replies_s")
    figures = {
        key: bb.median_of(rounds, key)
        for key in ("api_call_s", "received_all_broker_s", "received_all_stored_s")
    }
    result["summary"] = {
        "median_of_rounds": figures,
        "baseline_all_replies_s": base,
        "ratio_received_all_broker_vs_baseline": bb.ratio(figures["received_all_broker_s"], base),
        "ratio_received_all_stored_vs_baseline": bb.ratio(figures["received_all_stored_s"], base),
    }


def main() -> int:
    stop_children_on_sigterm()
    return bb.rounds_main(
        __doc__, "cap", cap_round, summarise, default_sizes="108", before_size=_source.clear
    )


if __name__ == "__main__":
    raise SystemExit(main())
