"""`broadcaster demo`: the whole system on embedded defaults, for a first look.

Migrates the SQLite database under ``./var``, seeds Tân An, creates a demo
administrator with a random password (written to ``var/demo-credentials.txt``),
starts the service on http://127.0.0.1:8000 and prints where to look.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.auth import service as auth
from broadcaster.auth.models import User
from broadcaster.auth.schemas import UserCreate
from broadcaster.settings import Settings
from kernel.security import Role
from stations import tan_an

DEMO_USER = "demo-admin"


def _demo_credentials(settings: Settings, var_dir: Path) -> tuple[str, str]:
    """The demo administrator's credentials, created on the first run."""
    creds = var_dir / "demo-credentials.txt"
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    factory = db.make_sessionmaker(engine)
    with db.session_scope(factory) as session:
        tan_an.load(session)
        user = session.scalar(select(User).where(User.username == DEMO_USER))
        if user is None or not creds.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                auth.create_user(
                    session,
                    UserCreate(
                        username=DEMO_USER,
                        password=password,
                        role=Role.ADMIN,
                        can_emergency=True,
                        full_name="Quản trị viên (demo)",
                    ),
                )
            else:
                user.password_hash = auth.hash_password(password)
            creds.parent.mkdir(parents=True, exist_ok=True)
            creds.write_text(f"{DEMO_USER}\n{password}\n", encoding="utf-8")
            creds.chmod(0o600)
    engine.dispose()
    username, password = creds.read_text(encoding="utf-8").split()[:2]
    return username, password


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    console = Console()
    settings = Settings()
    var_dir = Path("var")
    with console.status("Preparing the database and the Tân An registry…"):
        username, password = _demo_credentials(settings, var_dir)

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            console.print("[red]The service did not start; is port 8000 taken?[/red]")
            raise SystemExit(1)
        time.sleep(0.1)

    with httpx.Client(base_url=base, timeout=10) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        stations = client.get("/api/v1/stations?limit=1000", headers=headers).json()
        units = client.get("/api/v1/areas?parent=tan-an&limit=100", headers=headers).json()

    kinds: dict[str, int] = {}
    for item in stations["items"]:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    table = Table(title="broadcaster — Tân An demo", show_header=False)
    table.add_row("API", f"{base}/api/v1/stations?limit=200")
    table.add_row("API docs", f"{base}/docs")
    table.add_row("Login", f"{username} / {password}  (saved in var/demo-credentials.txt)")
    table.add_row(
        "Registry",
        f"{stations['total']} stations ({kinds.get('hamlet', 0)} hamlet, "
        f"{kinds.get('smart', 0)} smart) in {units['total']} wards/communes",
    )
    console.print(table)
    console.print("Try it from a shell:")
    console.print(
        f"  TOKEN=$(curl -s -d 'username={username}&password={password}' "
        f"{base}/api/v1/auth/token | python3 -c 'import json,sys; "
        'print(json.load(sys.stdin)["access_token"])\')',
        soft_wrap=True,
    )
    console.print(
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/api/v1/stations?limit=200'",
        soft_wrap=True,
    )
    console.print("Press Ctrl-C to stop.")
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)
