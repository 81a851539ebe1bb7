"""Run by ``scripts/check_floors.py`` inside an environment holding the lowest allowed
versions of every runtime dependency: exercise what the code needs from each of them."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    from importlib.metadata import version

    for name in ("fastapi", "starlette", "pydantic", "sqlalchemy", "paho-mqtt", "python-multipart"):
        print(f"  {name} {version(name)}")

    from fastapi.testclient import TestClient

    from broadcaster.app import create_app
    from broadcaster.runtime import Role as ProcessRole
    from broadcaster.settings import Environment, Settings
    from firmware_bridge.client import Bridge, BridgeConfig
    from firmware_bridge.messages import MessageKind, parse_message
    from kernel.security import Role
    from tests.api import make_user

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            environment=Environment.TEST,
            database_url=f"sqlite:///{tmp}/floors.db",
            media_dir=Path(tmp) / "media",
            secret_key="floor-check-secret-0123456789abcdef-0123456789",  # noqa: S106
            mqtt_url="mqtt://127.0.0.1:1",
            mqtt_dynsec=False,
        )
        app = create_app(settings, role=ProcessRole.API)
        with TestClient(app) as client:
            headers = make_user(app.state.sessionmaker, "floors", Role.ADMIN)
            assert client.get("/readyz").status_code == 200
            assert client.get("/api/v1/stations", headers=headers).status_code == 200
            assert client.get("/api/v1/stations").status_code == 401
            bad = client.get("/api/v1/playlog?offset=99999999999999999999", headers=headers)
            assert bad.status_code == 422, bad.text
            login = client.post("/api/v1/auth/token", data={"username": "floors", "password": "x"})
            assert login.status_code == 401, login.text
            big = client.post(
                "/api/v1/areas",
                content=b"{" + b" " * 2_000_000 + b"}",
                headers={**headers, "Content-Type": "application/json"},
            )
            assert big.status_code == 413, big.status_code
            upload = client.post(
                "/api/v1/stations/import",
                files={"file": ("s.csv", b"sid,name,kind,area_code\nBAD,x,smart,no\n", "text/csv")},
                headers=headers,
            )
            assert upload.status_code == 422, upload.text
            document = client.get("/openapi.json").json()
            assert "Problem" in document["components"]["schemas"]
    telemetry = json.dumps(
        {"seq": 1, "at": "2026-11-26T05:00:00+07:00", "uptime_s": 5, "volume": 70, "playing": None}
    ).encode()
    parse_message(MessageKind.TELEMETRY, telemetry)
    bridge = Bridge(BridgeConfig(url="mqtt://127.0.0.1:1"), lambda batch: None)
    bridge.start()
    bridge.stop(timeout_s=1)
    print("  smoke test passed")


if __name__ == "__main__":
    sys.exit(main())
