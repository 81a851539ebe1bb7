"""Spoken emergency benchmark: an emergency with a text (Vietnamese speech made on the
spot) on a freshly started service until every station has RECEIVED it, beside a bare
MQTT publish-and-ack loop over the same broker in the same run.

Setup, the simulator (``--sim-processes``, default one per core) and the baseline are
those of ``bench_broadcast.py``: Tân An plus bench stations, ``broadcaster serve --role
all`` and the simulator as child processes; the service warms its audio process pool at
start (``BROADCASTER_SPEECH_WARM_UP``), while the stations connect.  Round 1 is the first
spoken emergency the service ever makes (``first_*`` in the summary); each round posts
``{"targets": {"areas": ["tan-an"]}, "content": {"text": ...}, "tier": "emergency"}``
with a different text (no cached speech), measured from just before the POST:

- ``api_call_s``: until the API answered (speech synthesis and loudness, the broadcast
  and its command stored);
- ``received_all_broker_s``: until a subscriber on ``st/+/ack`` saw N RECEIVED acks;
- ``received_all_stored_s``: until the service had committed N targets at RECEIVED+;
- ``target_s``: 1 s plus twice the bare loop (the issue's target) and ``met``.

The stations announce proposal 0005 (``media_follows``), so the service sends the play
at once and its audio in a ``media`` command once spoken: ``api_call_s`` still includes
the speech, the RECEIVED figures do not.  ``--no-media-follows``: stations of today's
``loa/v1``, which get the play only once it is spoken (the figures before proposal 0005).

Each round's broadcast is stopped before the next, and the next waits until the service
is quiet again (``--settle-s``, at most 60 s; each round's ``settle_s``), so each round
is one emergency on a settled service; ``--settle-s 0``: the next round 2 s after the
last is stopped (the service still storing that round's acks, events and downloads).

    python benchmarks/bench_emergency.py --out FILE.json [--sizes 108,1000] [--rounds 3]
        [--no-media-follows] [--settle-s 0]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_broadcast as bb  # noqa: E402
import httpx  # noqa: E402

from tests.support.process import stop_children_on_sigterm  # noqa: E402

TEXTS = [
    "Cảnh báo triều cường: nước dâng cao tại các phường ven sông lúc 17 giờ hôm nay. "
    "Bà con di chuyển tài sản lên cao, không đi qua vùng ngập.",
    "Cảnh báo mưa lớn kèm dông lốc chiều nay. Người dân chằng chống nhà cửa, "
    "hạn chế ra đường khi có sấm sét.",
    "Thông báo khẩn: mất điện diện rộng từ 14 giờ. Bà con chuẩn bị đèn, nước sạch "
    "và theo dõi thông báo tiếp theo trên loa truyền thanh.",
    "Cảnh báo cháy lan tại khu vực chợ. Người dân tránh xa khu vực, nhường đường "
    "cho xe chữa cháy và làm theo hướng dẫn của lực lượng chức năng.",
    "Cảnh báo xâm nhập mặn: độ mặn trên sông Vàm Cỏ Tây vượt 4 phần nghìn. "
    "Bà con không lấy nước sông tưới cây, dự trữ nước ngọt.",
]


def emergency_round(
    http: httpx.Client,
    watch: bb.AckWatch,
    stored: bb.StoredCounts,
    server_pid: int,
    n: int,
    *rest: Any,  # the fallback asset (unused), the round's index, the lead time
) -> dict[str, Any]:
    index, lead_s = int(rest[1]), float(rest[2])
    server = bb.ProcWatch(server_pid)
    t0 = bb.now()
    response = http.post(
        "/api/v1/broadcasts",
        json={
            "targets": {"areas": ["tan-an"]},
            "content": {"text": TEXTS[index % len(TEXTS)] + f" Bản tin số {index + 1}."},
            "tier": "emergency",
            "title": f"Bench khẩn cấp đọc {n} #{index + 1}",
            "expires_in_s": 300,
            "lead_s": lead_s,
        },
    )
    api_s = bb.now() - t0
    response.raise_for_status()
    made = response.json()
    cmd_id = made["cmd_id"]
    out: dict[str, Any] = {
        "round": index + 1,
        "route": made["route"],
        "api_call_s": round(api_s, 3),
    }
    broker_all, stored_all = bb.wait_received(watch, stored, cmd_id, n, t0)
    out["server"] = server.read()
    out.update(bb.received_figures(watch, cmd_id, t0, broker_all))
    out["received_stored"] = stored.answered(cmd_id)
    out["received_all_stored_s"] = round(stored_all, 3) if stored_all is not None else None
    bb.end_broadcast(http, made["id"])
    return out


def summarise(result: dict[str, Any]) -> None:
    rounds = result.get("rounds") or []
    base = bb.median_of(bb.baseline_rounds(result), "all_replies_s")
    keys = (
        "api_call_s",
        "published_broker_s",
        "received_first_broker_s",
        "received_all_broker_s",
        "received_all_stored_s",
        "delivery_spread_s",
    )
    figures = {key: bb.median_of(rounds, key) for key in keys}
    # the service's first spoken emergency: the warm-up round when there is one (it is
    # left out of the medians, not out of this figure)
    every = (result.get("warmup_rounds") or []) + rounds
    first = {f"first_{key}": every[0].get(key) for key in keys} if every else {}
    if every:
        first["round"] = every[0].get("round")
    target = round(1.0 + 2 * base, 3) if isinstance(base, int | float) else None
    first_all = first.get("first_received_all_broker_s")
    result["summary"] = {
        "median_of_rounds": figures,
        "first_emergency": first,
        "baseline_all_replies_s": base,
        "target_s": target,
        "first_met_target": (
            None if target is None or first_all is None else bool(first_all <= target)
        ),
        "median_met_target": (
            None
            if target is None or figures["received_all_broker_s"] is None
            else bool(figures["received_all_broker_s"] <= target)
        ),
        "ratio_received_all_broker_vs_baseline": bb.ratio(figures["received_all_broker_s"], base),
    }


def main() -> int:
    stop_children_on_sigterm()
    return bb.rounds_main(
        __doc__,
        "emergency",
        emergency_round,
        summarise,
        default_sizes="108,1000",
        media_follows=True,
        settle_s=60.0,
    )


if __name__ == "__main__":
    raise SystemExit(main())
