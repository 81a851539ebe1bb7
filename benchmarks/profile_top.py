"""The top functions of a py-spy profile in collapsed-stack form (``py-spy record
--format raw``, as ``bench_broadcast.py --profile DIR`` writes it).

    python benchmarks/profile_top.py DIR/service-1000.txt [--under Ingestor.__call__] [--top 25]

Prints, for each function (``name (file)``), its inclusive share (stacks it is on) and
self share (stacks it tops) of the samples; ``--under NAME`` keeps only the stacks that
pass through a frame whose name contains NAME (one thread's work: the ack path is
``Ingestor.__call__``, the outbox publisher ``publish_pending``).  The sampling rate, for
the duration line, is the one the benchmark wrote beside the profile (``sampling-hz``:
its ``--profile-hz``), else ``--hz`` (default 20, the benchmark's default).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``."""
    frame = _LINE.sub(")", frame.strip())
    name, found, where = frame.rpartition(" (")
    if not found:
        return frame
    return f"{name} ({Path(where.rstrip(')')).name})"


#: written by ``bench_broadcast.py --profile DIR`` beside its profiles
SAMPLING_HZ_FILE = "sampling-hz"


def sampling_hz(profile: Path, default: float = 20.0) -> float:
    """The rate ``profile`` was sampled at, as its benchmark wrote it beside it."""
    try:
        return float((profile.parent / SAMPLING_HZ_FILE).read_text().strip())
    except (OSError, ValueError):
        return default


def top(path: Path, under: str | None, limit: int, hz: float = 20.0) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        if under is not None and not any(under in f for f in frames):
            continue
        count = int(count_text)
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples\n"
    scope = f" under {under}" if under else ""
    rows = [f"{total} samples ({total / hz:.1f} s at {hz:g} Hz){scope}"]
    rows.append(f"{'incl %':>7} {'self %':>7}  function")
    for name, count in inclusive.most_common(limit):
        rows.append(f"{100 * count / total:7.1f} {100 * own[name] / total:7.1f}  {name}")
    rows.append("")
    rows.append("by self time:")
    for name, count in own.most_common(limit):
        rows.append(f"{100 * inclusive[name] / total:7.1f} {100 * count / total:7.1f}  {name}")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under", help="only stacks through a frame containing this")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--hz", type=float, help="the sampling rate (default: the benchmark's, else 20)"
    )
    args = parser.parse_args()
    sys.stdout.write(top(args.profile, args.under, args.top, args.hz or sampling_hz(args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
