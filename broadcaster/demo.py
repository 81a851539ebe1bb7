"""`broadcaster demo` (what `make demo` runs): the whole system on embedded defaults.

1. a local Mosquitto with the dynamic-security plugin under ``var/mosquitto`` (unless
   ``BROADCASTER_MQTT_URL`` names a broker), on a free port near 18830;
2. the SQLite database under ``var/``, migrated; Tân An seeded with its 05:00/17:00
   relay chain; a demo administrator and a demo approver with random passwords
   (``var/demo-credentials.txt``); an MQTT secret for every station
   (``var/station-credentials.json``);
3. Icecast2 for live paging under ``var/icecast`` (unless
   ``BROADCASTER_LIVE_ICECAST_URL`` names one), on a free port near 18000;
4. the service (API, dashboard and worker) on http://127.0.0.1:8000;
5. the simulator for every station (`broadcaster simulate` in its own process);
6. a short demo programme scheduled a minute after start on every station, so the
   stations play it and the play log fills within two minutes.

Ctrl-C stops the service, then the simulator, then the broker (they run in their own
process groups, so the terminal's Ctrl-C reaches the demo alone and the service's bridge
disconnects from a broker that is still there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.service import MediaLibrary
from audio_library.settings import AudioSettings
from broadcaster import db
from broadcaster.app import create_app
from broadcaster.auth import service as auth
from broadcaster.auth.models import User
from broadcaster.auth.schemas import UserCreate
from broadcaster.broker import bootstrap as broker_bootstrap
from broadcaster.broker import provisioning
from broadcaster.broker.service import dynsec_client, server_account, topics
from broadcaster.live.icecast import IcecastServer, find_icecast, start_on_a_free_port
from broadcaster.runtime import Role
from broadcaster.settings import Settings
from kernel.security import Role as UserRole
from schedules import seed as schedules_seed
from stations import tan_an
from stations.models import Station

VAR = Path("var")
ADMIN = "demo-admin"
APPROVER = "demo-duyet"
DEMO_TEXT = (
    "Đài truyền thanh thông minh thành phố Tân An xin kính chào quý vị. "
    "Đây là chương trình phát thử của hệ thống. "
    "Mời bà con theo dõi bản tin thời tiết và lịch tiêm chủng trong tuần."
)


def _free_port(preferred: int) -> int:
    port: int
    for port in (preferred, *range(preferred + 1, preferred + 50)):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


class Demo:
    def __init__(self, host: str, port: int) -> None:
        self.console = Console()
        self.host = host
        self.port = port
        self.base = f"http://{host}:{port}"
        self.children: list[subprocess.Popen[bytes]] = []
        self.settings = Settings(public_base_url=self.base)
        self.streaming: IcecastServer | None = None

    # ------------------------------------------------------------------ broker

    def broker(self) -> None:
        if os.environ.get("BROADCASTER_MQTT_URL"):
            self.console.print(f"Using the configured broker ({self.settings.mqtt_url}).")
            return
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        directory = VAR / "mosquitto"
        port = _free_port(18830)
        result = broker_bootstrap.bootstrap(directory, port=port)
        if result.port != port and not _wait_port(result.port, 0.2):
            port = result.port
        log = open(directory / "mosquitto.stdout", "ab")  # noqa: SIM115 - lives with the child
        # its own process group: a terminal's Ctrl-C reaches the demo alone, which stops
        # the service (its bridge disconnects cleanly), then the stations, then the broker
        child = subprocess.Popen(
            [mosquitto, "-c", str(result.config_path)], stdout=log, stderr=log, process_group=0
        )
        self.children.append(child)
        if not _wait_port(result.port, 10):
            raise SystemExit(f"Mosquitto did not start; see {directory / 'mosquitto.log'}")
        self.settings = self.settings.model_copy(
            update={"mqtt_url": result.mqtt_url, "mqtt_dynsec": True}
        )
        self.console.print(f"Mosquitto (dynamic security) on 127.0.0.1:{result.port}")

    def icecast(self) -> None:
        """Icecast2 for live paging (the dashboard's "Trực tiếp" page)."""
        if self.settings.live_icecast_url is not None:
            self.console.print("Using the configured Icecast for live paging.")
            return
        if find_icecast() is None:
            self.console.print("Icecast2 is not installed: live paging is off.")
            return
        try:  # near 18000; on the next free port if another server takes the one chosen
            self.streaming, setup = start_on_a_free_port(VAR / "icecast", lambda: _free_port(18000))
        except RuntimeError as exc:
            self.console.print(f"Live paging is off: {exc}")
            return
        self.settings = self.settings.model_copy(
            update={"live_icecast_url": SecretStr(setup.source_url)}
        )
        self.console.print(f"Icecast2 (live paging) on {setup.public_url}")

    # ------------------------------------------------------------------ data

    def prepare(self) -> tuple[dict[str, str], int]:
        """Migrate, seed, accounts and station secrets; return logins and the station count."""
        engine = db.make_engine(self.settings.database_url)
        db.upgrade(engine)
        factory = db.make_sessionmaker(engine)
        library = MediaLibrary(
            AudioSettings(),
            root=self.settings.media_dir,
            url_secret=MediaLibrary.derive_secret(self.settings.secret_key.get_secret_value()),
            public_base_url=self.settings.public_base_url,
        )
        try:
            schedules_seed.load_tan_an(factory, library, tz=self.settings.tz)
        finally:
            library.shutdown()
        logins = self._accounts(factory)
        with factory() as session:
            stations = list(session.scalars(select(Station).order_by(Station.sid)))
            if self.settings.mqtt_dynsec:
                with dynsec_client(self.settings) as dynsec:
                    issued = provisioning.issue_credentials(
                        session,
                        dynsec,
                        stations,
                        topics=topics(self.settings),
                        issued_by="demo",
                        server_account=server_account(self.settings),
                    )
                creds = VAR / "station-credentials.json"
                creds.write_text(json.dumps({i.sid: i.password for i in issued}, indent=2))
                creds.chmod(0o600)
            session.commit()
        engine.dispose()
        return logins, len(stations)

    def _accounts(self, factory: sessionmaker[Session]) -> dict[str, str]:
        path = VAR / "demo-credentials.txt"
        saved: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                name, _, password = line.partition(" ")
                if password:
                    saved[name] = password
        with db.session_scope(factory) as session:
            for name, role, full_name in (
                (ADMIN, UserRole.ADMIN, "Quản trị viên (demo)"),
                (APPROVER, UserRole.APPROVER, "Lãnh đạo duyệt tin (demo)"),
            ):
                user = session.scalar(select(User).where(User.username == name))
                if user is not None and name in saved:
                    continue
                password = secrets.token_urlsafe(12)
                saved[name] = password
                if user is None:
                    auth.create_user(
                        session,
                        UserCreate(
                            username=name,
                            password=password,
                            role=role,
                            can_emergency=role is UserRole.ADMIN,
                            areas=[] if role is UserRole.ADMIN else [tan_an.CITY_CODE],
                            full_name=full_name,
                        ),
                    )
                else:
                    user.password_hash = auth.hash_password(password)
        path.write_text("".join(f"{n} {p}\n" for n, p in saved.items()), encoding="utf-8")
        path.chmod(0o600)
        return saved

    # ------------------------------------------------------------------ service

    def serve(self) -> tuple[uvicorn.Server, threading.Thread]:
        app = create_app(self.settings, role=Role.ALL)
        server = uvicorn.Server(
            uvicorn.Config(app, host=self.host, port=self.port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise SystemExit(f"The service did not start; is port {self.port} taken?")
            time.sleep(0.1)
        return server, thread

    def simulate(self, token: str, count: int) -> None:
        station_url = self.settings.mqtt_station_url
        command = [
            sys.executable,
            "-m",
            "firmware_bridge.simulator",
            "--stations",
            str(count),
            "--api",
            self.base,
            "--token",
            token,
            "--mqtt-url",
            station_url,
            "--state-dir",
            str(VAR / "simulator"),
            "--no-live",
        ]
        creds = VAR / "station-credentials.json"
        if self.settings.mqtt_dynsec and creds.exists():
            command += ["--credentials", str(creds)]
        log = open(VAR / "simulator.log", "ab")  # noqa: SIM115 - lives with the child
        env = {**os.environ, "BROADCASTER_MQTT_URL": station_url}
        self.children.append(
            subprocess.Popen(command, stdout=log, stderr=log, env=env, process_group=0)
        )

    def demo_programme(
        self, http: httpx.Client, admin: dict[str, str], approver: dict[str, str]
    ) -> dt.datetime:
        """A short bulletin on every station a minute from now (approved by the approver)."""
        asset = http.post(
            "/api/v1/media/tts",
            json={"text": DEMO_TEXT, "title": "Chương trình phát thử", "category": "tin-tuc"},
            headers=admin,
        ).json()
        http.post(f"/api/v1/media/{asset['id']}/approve", json={"note": "demo"}, headers=approver)
        programme = http.post(
            "/api/v1/programmes",
            json={
                "title": "Phát thử (demo)",
                "items": [{"kind": "asset", "asset_id": asset["id"]}],
            },
            headers=admin,
        ).json()
        tz = ZoneInfo(self.settings.timezone)
        at = (dt.datetime.now(tz) + dt.timedelta(seconds=60)).replace(microsecond=0, tzinfo=None)
        rule = http.post(
            "/api/v1/schedules/rules",
            json={
                "title": "Phát thử toàn thành phố (demo)",
                "programme_id": programme["id"],
                "targets": {"groups": ["all"]},
                "tier": "priority",
                "recurrence": {"when": {"kind": "once", "at": at.isoformat()}},
            },
            headers=admin,
        ).json()
        http.post(f"/api/v1/schedules/rules/{rule['id']}/approve", json={}, headers=approver)
        return at.replace(tzinfo=tz)

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        VAR.mkdir(exist_ok=True)
        signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
        service: tuple[uvicorn.Server, threading.Thread] | None = None
        try:
            with self.console.status("Starting the broker…"):
                self.broker()
            with self.console.status("Starting Icecast for live paging…"):
                self.icecast()
            with self.console.status("Preparing the database, Tân An and station accounts…"):
                logins, count = self.prepare()
            with self.console.status("Starting the service…"):
                service = self.serve()
            self._show(service[1], logins, count)
        finally:
            if service is not None:  # first, while the broker is still there
                server, thread = service
                server.should_exit = True
                thread.join(15)
            self._stop_children()

    def _login(self, http: httpx.Client, name: str, password: str) -> dict[str, str]:
        token = http.post("/api/v1/auth/token", data={"username": name, "password": password})
        token.raise_for_status()
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def _show(self, thread: threading.Thread, logins: dict[str, str], count: int) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as http:
            admin = self._login(http, ADMIN, logins[ADMIN])
            approver = self._login(http, APPROVER, logins[APPROVER])
            self.simulate(admin["Authorization"].split()[1], count)
            with self.console.status(f"Waiting for {count} simulated stations…"):
                online = self._wait_online(http, admin, count, timeout_s=60)
            at = self.demo_programme(http, admin, approver)
            table = Table(title="broadcaster — Tân An demo", show_header=False)
            table.add_row("Dashboard", f"{self.base}/  (Vietnamese; API docs at {self.base}/docs)")
            table.add_row(
                "Stations",
                f"{online} of {count} online (simulated, {self.base}/api/v1/stations?online=true)",
            )
            table.add_row(
                "Logins", f"{ADMIN} / {logins[ADMIN]}  ·  {APPROVER} / {logins[APPROVER]}"
            )
            table.add_row("", "(saved in var/demo-credentials.txt)")
            table.add_row(
                "Demo programme",
                f"on every station at {at:%H:%M:%S} (play log: {self.base}/api/v1/playlog)",
            )
            table.add_row("Broker", self.settings.mqtt_station_url)
            table.add_row(
                "Live paging",
                f"{self.base}/truc-tiep"
                if self.settings.live_icecast_url is not None
                else "off (no Icecast)",
            )
            self.console.print(table)
            self.console.print("Fire an emergency broadcast from another shell:")
            self.console.print(
                f"  .venv/bin/broadcaster broadcast --all --tier emergency "
                f"--text 'Cảnh báo triều cường, người dân chú ý an toàn' "
                f"--api {self.base} --username {ADMIN} --password '{logins[ADMIN]}'",
                soft_wrap=True,
            )
            self.console.print("Press Ctrl-C to stop.")
            self._follow(http, admin, thread)

    def _wait_online(
        self, http: httpx.Client, headers: dict[str, str], count: int, timeout_s: float
    ) -> int:
        deadline = time.monotonic() + timeout_s
        online = 0
        while time.monotonic() < deadline:
            online = int(
                http.get("/api/v1/stations?online=true&limit=1", headers=headers).json()["total"]
            )
            if online >= count:
                break
            time.sleep(0.5)
        return online

    def _follow(
        self, http: httpx.Client, headers: dict[str, str], thread: threading.Thread
    ) -> None:
        last = ""
        with contextlib.suppress(KeyboardInterrupt):
            while thread.is_alive():
                online = http.get("/api/v1/stations?online=true&limit=1", headers=headers).json()[
                    "total"
                ]
                played = http.get("/api/v1/playlog?status=played&limit=1", headers=headers).json()[
                    "total"
                ]
                line = f"{online} stations online · {played} plays logged as played"
                if line != last:
                    now = dt.datetime.now(ZoneInfo(self.settings.timezone))
                    self.console.print(f"[dim]{now:%H:%M:%S}[/dim] {line}")
                    last = line
                time.sleep(5)

    def _stop_children(self) -> None:
        if self.streaming is not None:
            self.streaming.stop()
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    Demo(host, port).run()
