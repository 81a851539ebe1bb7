"""What a benchmark ran on, recorded in its JSON so runs on different days compare.

The same code gave the broadcast benchmark 2.0x one day and 3.2x another on this
shared machine; without the CPU, its clock, the load and the installed versions in the
report, such runs cannot be told apart afterwards.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.process import cpu_seconds

#: the distributions whose speed the rigs depend on (the MQTT stack, validation, the
#: web stack, the databases)
PACKAGES = (
    "paho-mqtt",
    "pydantic",
    "pydantic-core",
    "jsonschema-rs",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "sqlalchemy",
    "psycopg",
)


def _cpuinfo() -> dict[str, Any]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {"model": platform.processor() or None, "mhz": []}
    model: str | None = None
    mhz: list[float] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz.append(round(float(value)))
    return {"model": model, "mhz": mhz}


def mosquitto_version() -> str | None:
    """The installed Mosquitto's version (``mosquitto -h``), None without one."""
    try:
        out = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, check=False, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.split("\n", 1)[0]
    return first.removeprefix("mosquitto version ") or None


def _busiest_processes(limit: int = 5) -> list[dict[str, Any]]:
    """The processes that used the most CPU since they started (other tenants of the
    machine: a busy neighbour shows here)."""
    rows: list[dict[str, Any]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # a process may end while we look
            name = (entry / "comm").read_text().strip()
            cpu_s = cpu_seconds(int(entry.name))
        except OSError:
            continue
        rows.append({"pid": int(entry.name), "name": name, "cpu_s": round(cpu_s, 1)})
    rows.sort(key=lambda row: row["cpu_s"], reverse=True)
    return rows[:limit]


_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times() -> dict[str, float]:
    """The machine's CPU seconds so far, all cores (``/proc/stat``); ``steal`` is time
    the hypervisor gave this virtual machine's cores to someone else."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return {}
    return {name: int(value) / ticks for name, value in zip(_STAT_FIELDS, first[1:], strict=False)}


def cpu_shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How the machine's CPU time between two :func:`cpu_times` went (shares of 1)."""
    spent = {name: after[name] - before[name] for name in before if name in after}
    total = sum(spent.values())
    if total <= 0:
        return {}
    return {name: round(value / total, 3) for name, value in spent.items()}


def cpu_state() -> dict[str, Any]:
    """What moves during a run: load average, core clocks, the machine's CPU times."""
    return {
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_mhz": _cpuinfo()["mhz"],
        "cpu_times_s": cpu_times(),
    }


def describe_machine() -> dict[str, Any]:
    """The machine, its load and the installed versions, as JSON-ready values."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpuinfo()["model"],
        "mosquitto": mosquitto_version(),
        "packages": versions,
        "busiest_processes": _busiest_processes(),
        **cpu_state(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(describe_machine(), indent=2))
