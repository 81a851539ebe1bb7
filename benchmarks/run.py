"""Run every benchmark (``benchmarks/bench_*.py``) and collect their JSON results.

Each benchmark is a standalone script taking ``--out FILE.json``.  Results land in
``benchmarks/results/<name>.json`` and a combined ``benchmarks/results/summary.json``.
``python benchmarks/run.py registry simulator`` runs only those whose names contain a
given word.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(word in s.stem for word in argv)]
    summary: dict[str, object] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    failed = 0
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        out = RESULTS / f"{name}.json"
        print(f"== {name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(script), "--out", str(out)], check=False)
        if proc.returncode != 0 or not out.exists():
            print(f"   FAILED (exit {proc.returncode})")
            summary[name] = {"error": f"exit code {proc.returncode}"}
            failed += 1
            continue
        summary[name] = json.loads(out.read_text())
        print(f"   done in {time.monotonic() - started:.1f} s -> {out.relative_to(HERE.parent)}")
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
