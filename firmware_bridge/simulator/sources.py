"""Where the simulator's station list comes from: the server's API, a CSV file, or made up."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx

from firmware_bridge.errors import ConfigError
from firmware_bridge.simulator.config import StationSpec
from firmware_bridge.topics import is_valid_id

__all__ = ["generated_stations", "load_credentials", "stations_from_api", "stations_from_csv"]

_PAGE = 500


def generated_stations(count: int, prefix: str = "sim") -> list[StationSpec]:
    """``sim-0001`` ... ``sim-{count}``, without passwords."""
    width = max(4, len(str(count)))
    return [StationSpec(f"{prefix}-{i:0{width}d}") for i in range(1, count + 1)]


def stations_from_api(
    base_url: str,
    count: int,
    *,
    token: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[StationSpec]:
    """The first ``count`` stations of ``GET {base_url}/api/v1/stations``, paged by 500."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    specs: list[StationSpec] = []
    with httpx.Client(
        base_url=base_url.rstrip("/"), headers=headers, timeout=30.0, transport=transport
    ) as client:
        while len(specs) < count:
            limit = min(_PAGE, count - len(specs))
            try:
                response = client.get(
                    "/api/v1/stations", params={"limit": limit, "offset": len(specs)}
                )
                response.raise_for_status()
                page: Any = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ConfigError(f"cannot list stations from {base_url}: {exc}") from exc
            items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ConfigError(f"unexpected station list from {base_url}")
            for item in items:
                sid = item.get("sid") if isinstance(item, dict) else None
                if not isinstance(sid, str) or not is_valid_id(sid):
                    raise ConfigError(f"invalid station id in API answer: {sid!r}")
                specs.append(StationSpec(sid, name=item.get("name")))
            if not items or len(specs) >= int(page.get("total", 0)):
                break
    return specs[:count]


def stations_from_csv(path: Path, count: int | None = None) -> list[StationSpec]:
    """Stations from a CSV with a ``sid`` column and an optional ``secret`` column."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "sid" not in reader.fieldnames:
            raise ConfigError(f"{path}: the CSV needs a 'sid' column")
        specs = []
        for row in reader:
            sid = (row.get("sid") or "").strip()
            if not sid:
                continue
            if not is_valid_id(sid):
                raise ConfigError(f"{path}: invalid sid {sid!r}")
            secret = (row.get("secret") or "").strip() or None
            specs.append(StationSpec(sid, password=secret, name=row.get("name")))
    return specs if count is None else specs[:count]


def load_credentials(path: Path) -> dict[str, str]:
    """A JSON object mapping sid to MQTT password."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read credentials {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(f"{path}: expected a JSON object of sid -> password")
    return dict(data)
