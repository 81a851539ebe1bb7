"""loa/v1 validation cost per message: the compiled fast path (jsonschema-rs) beside
the Python validator (`jsonschema`) it fronts, and beside a bare ``json.loads`` of the
same payload, measured in the same run.

Every command and ack a station takes or sends, and every ack and event the service
ingests, is checked against its JSON Schema (``firmware_bridge.schema``).  For each
kind (an ack, a play.started event, an emergency play command, a 20-item desired
document) this reports the median per-message time of:

- ``bare_loads_us``: ``json.loads`` of the payload (what any reader pays);
- ``jsonschema_us``: the Python validator alone (what every message cost before the
  fast path: ``best_match(iter_errors(...))``);
- ``fast_path_us``: ``validate_payload`` as it is now (jsonschema-rs accepts; the
  Python validator is only asked about what it does not accept);
- ``parse_message_us``: the whole inbound path now (size check, UTF-8, JSON,
  validation, the pydantic model);

and the ratios ``jsonschema / fast_path`` and ``parse_message / bare_loads``.

    python benchmarks/bench_validation.py --out v.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonschema.exceptions import best_match  # noqa: E402
from timing import report_json  # noqa: E402

from firmware_bridge import schema  # noqa: E402
from firmware_bridge.messages import (  # noqa: E402
    EMERGENCY,
    Ack,
    Command,
    Event,
    PlayBody,
    dump_message,
    parse_message,
)
from firmware_bridge.schema import MessageKind, validate_payload  # noqa: E402
from tests.support.loa import desired, file_item  # noqa: E402

NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
MEDIA = {"url": "http://m/a.mp3", "sha256": "a" * 64, "bytes": 35_316, "duration_ms": 4_349}


def payloads() -> dict[str, tuple[MessageKind, bytes]]:
    play = PlayBody(priority=EMERGENCY, media=MEDIA, start_at=NOW, repeat=3, volume=100)
    items = [
        file_item(f"i-{n}", MEDIA, NOW + timedelta(minutes=30 * n), title=f"Bản tin {n}")
        for n in range(20)
    ]
    return {
        "ack": (MessageKind.ACK, dump_message(Ack(cmd_id="c-1", status="RECEIVED", at=NOW))),
        "event": (
            MessageKind.EVENT,
            dump_message(Event(event_id="e-1", type="play.started", at=NOW, cmd_id="c-1")),
        ),
        "command_play": (MessageKind.COMMAND, dump_message(Command.new("play", play, now=NOW))),
        "desired_20_items": (
            MessageKind.DESIRED,
            dump_message(desired(7, items, now=NOW, groups=["tan-an", "phuong-3"])),
        ),
    }


def per_call_us(fn: Callable[[], object], budget_s: float = 0.4, repeats: int = 7) -> float:
    """Median over ``repeats`` batches of the per-call time in microseconds."""
    calls = 1
    while True:  # size a batch to about budget_s / repeats
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - started > budget_s / repeats / 4 or calls > 1_000_000:
            break
        calls *= 4
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return round(statistics.median(samples), 2)


def measure(kind: MessageKind, payload: bytes) -> dict[str, Any]:
    document = json.loads(payload)
    python = schema._validators()[kind]
    assert schema._surely_valid(kind, document), kind  # the fast path is what is measured
    figures = {
        "bytes": len(payload),
        "bare_loads_us": per_call_us(lambda: json.loads(payload)),
        "jsonschema_us": per_call_us(lambda: best_match(python.iter_errors(document))),
        "fast_path_us": per_call_us(lambda: validate_payload(kind, document)),
        "parse_message_us": per_call_us(lambda: parse_message(kind, payload)),
    }
    figures["ratio_jsonschema_vs_fast_path"] = round(
        figures["jsonschema_us"] / figures["fast_path_us"], 1
    )
    figures["ratio_parse_message_vs_bare_loads"] = round(
        figures["parse_message_us"] / figures["bare_loads_us"], 1
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summary = {
        "benchmark": "validation",
        "python": sys.version.split()[0],
        "kinds": {name: measure(kind, payload) for name, (kind, payload) in payloads().items()},
    }
    report_json(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
