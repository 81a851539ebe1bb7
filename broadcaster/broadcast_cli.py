"""`broadcaster broadcast`: send a broadcast through the API and follow its progress."""

from __future__ import annotations

import json
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _token(
    client: httpx.Client, credentials: tuple[str | None, str | None], token: str | None
) -> str:
    if token:
        return token
    username, password = credentials
    if not username or not password:
        raise SystemExit("give --token, or --username and --password (or their env variables)")
    response = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    if response.status_code != 200:
        raise SystemExit(f"login failed: {response.json().get('detail')}")
    return str(response.json()["access_token"])


def send(
    *,
    api: str,
    credentials: tuple[str | None, str | None],
    token: str | None,
    payload: dict[str, Any],
    follow: bool,
    console: Console,
) -> int:
    with httpx.Client(base_url=api, timeout=60) as client:
        bearer = _token(client, credentials, token)
        headers = {"Authorization": f"Bearer {bearer}"}
        body = {k: v for k, v in payload.items() if v is not None}
        response = client.post("/api/v1/broadcasts", json=body, headers=headers)
        if response.status_code != 201:
            detail = response.json().get("detail")
            reason = json.dumps(detail, ensure_ascii=False)
            console.print(f"[red]Refused ({response.status_code}):[/red] {reason}")
            return 1
        created = response.json()
        console.print(
            f"Broadcast [bold]#{created['id']}[/bold] «{created['title']}» to "
            f"{created['station_count']} station(s), command {created['cmd_id']} "
            f"via {created['route']}"
        )
        if not follow:
            return 0
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            received = progress.add_task("received", total=created["station_count"])
            finished = progress.add_task("finished", total=created["station_count"])
            with client.stream(
                "GET", f"/api/v1/broadcasts/{created['id']}/events", headers=headers, timeout=None
            ) as stream:
                event = ""
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "progress":
                        counts = json.loads(line.split(":", 1)[1])
                        progress.update(received, completed=counts["received"])
                        progress.update(finished, completed=counts["finished"])
                    elif event == "done":
                        break
        final = client.get(f"/api/v1/broadcasts/{created['id']}", headers=headers).json()
        console.print({k: v for k, v in final["progress"]["by_status"].items() if v})
        return 0
