"""Command-line parts of the broker credentials (mounted by `broadcaster.cli`).

- ``broadcaster mqtt bootstrap``: the embedded Mosquitto's configuration.
- ``broadcaster mqtt sync``: reconcile station accounts with the registry.
- ``broadcaster mqtt nats-init``: create the NATS cluster's authorization file holding
  the service account (clustered broker, ``BROADCASTER_MQTT_NATS_AUTH_FILE``).
- ``broadcaster stations credentials SID... | --all --output FILE``: issue (or rotate)
  station secrets and write the simulator's credentials file (JSON sid -> password).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from broadcaster import db
from broadcaster.broker import bootstrap as bootstrap_module
from broadcaster.broker import provisioning
from broadcaster.broker.service import (
    check_broker,
    dynsec_client,
    init_nats_auth,
    server_account,
    sync_registry,
    topics,
)
from broadcaster.console import console, err, fail, load_settings
from firmware_bridge.topics import Topics
from kernel import audit
from kernel.errors import DomainError
from stations.models import Station

__all__ = ["mqtt_app", "stations_credentials"]

mqtt_app = typer.Typer(
    help="MQTT broker: embedded configuration, station accounts", no_args_is_help=True
)


@mqtt_app.command("bootstrap")
def bootstrap(
    directory: Annotated[Path, typer.Option("--dir", help="where the broker's files live")] = Path(
        "var/mosquitto"
    ),
    port: Annotated[int, typer.Option(help="listener port (127.0.0.1 only)")] = 1883,
    username: Annotated[str, typer.Option(help="the service's MQTT account")] = "broadcaster",
    plugin: Annotated[
        Path | None, typer.Option(help="path of mosquitto_dynamic_security.so")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="rewrite config and service account (stop the broker)")
    ] = False,
) -> None:
    """Write mosquitto.conf and the dynamic-security file for the embedded broker."""
    settings = load_settings()
    try:
        result = bootstrap_module.bootstrap(
            directory,
            port=port,
            username=username,
            plugin=plugin,
            force=force,
            topics=Topics(settings.mqtt_topic_prefix),
        )
    except (OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    table = Table("file", "", title=f"Embedded broker in {result.directory}")
    for path in (result.config_path, result.dynsec_path, result.credentials_path):
        table.add_row(str(path), "[green]written[/green]" if path in result.written else "kept")
    console.print(table)
    if port != result.port:
        err.print(
            f"[yellow]Kept the existing listener on port {result.port}; "
            "use --force to change it.[/yellow]"
        )
    console.print(f"Start the broker:  {result.start_command}")
    console.print("Use this service account (also in credentials.env, mode 0600):")
    console.print(f"  export BROADCASTER_MQTT_URL='{result.mqtt_url}'", soft_wrap=True)


@mqtt_app.command("nats-init")
def nats_init() -> None:
    """Create the NATS authorization file with the service account of BROADCASTER_MQTT_URL."""
    settings = load_settings()
    try:
        auth = init_nats_auth(settings)
    except DomainError as exc:
        raise fail(exc) from exc
    except (OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]Wrote {auth.auth_file}[/green] (and {auth.state_file.name}).")
    console.print(
        f"Every NATS node's configuration must include {auth.auth_file} (nats-server 2.9: "
        "`include` takes a path relative to the node's configuration file)."
    )


@mqtt_app.command("sync")
def sync() -> None:
    """Reconcile every station's broker account and role with the registry."""
    settings = load_settings()
    if not settings.mqtt_dynsec:
        console.print("BROADCASTER_MQTT_DYNSEC is off: station accounts are managed elsewhere.")
        return
    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        for problem in check_broker(settings):
            err.print(f"[yellow]warning:[/yellow] {problem}")
        with db.make_sessionmaker(engine)() as session:
            report = sync_registry(session, settings)
    except DomainError as exc:
        raise fail(exc) from exc
    finally:
        engine.dispose()
    assert report is not None
    style = "yellow" if report.missing else "green"
    console.print(f"[{style}]{report.summary()}[/{style}]")


def _open_private(path: Path) -> tuple[Path, Any]:
    """A 0600 temporary file next to ``path`` (fails early if we cannot write there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return tmp, os.fdopen(fd, "w", encoding="utf-8")


def stations_credentials(
    sids: Annotated[list[str] | None, typer.Argument(help="station ids")] = None,
    all_stations: Annotated[bool, typer.Option("--all", help="every station")] = False,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="JSON file sid -> password (merged, mode 0600)"),
    ] = Path("var/station-credentials.json"),
) -> None:
    """Issue (or rotate) station MQTT secrets; write them for the simulator.

    Each secret replaces the station's previous one at once.  The file is what
    `broadcaster simulate --credentials FILE` reads; keep it private.
    """
    if bool(sids) == all_stations:
        err.print("[red]Name station ids or use --all (not both).[/red]")
        raise typer.Exit(2)
    settings = load_settings()
    if not settings.mqtt_dynsec:
        err.print("[red]BROADCASTER_MQTT_DYNSEC is off: station accounts are managed elsewhere.")
        raise typer.Exit(1)
    existing: dict[str, str] = {}
    if output.exists():
        try:
            existing = dict(json.loads(output.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            err.print(f"[red]{output} is not a credentials file: {exc}[/red]")
            raise typer.Exit(1) from exc
    engine = db.make_engine(settings.database_url)
    tmp: Path | None = None
    try:
        db.upgrade(engine)
        tmp, handle = _open_private(output)
        with handle, db.make_sessionmaker(engine)() as session, dynsec_client(settings) as dynsec:
            query = select(Station).order_by(Station.sid)
            if sids:
                query = query.where(Station.sid.in_(sids))
            stations = list(session.scalars(query))
            unknown = sorted(set(sids or ()) - {s.sid for s in stations})
            if unknown:
                err.print(f"[red]Unknown stations: {', '.join(unknown)}[/red]")
                raise typer.Exit(1)
            actor = f"cli:{getpass.getuser()}"[:64]
            with console.status(f"Issuing secrets for {len(stations)} stations…"):
                audit.record(
                    session,
                    actor=None,
                    actor_name=actor,
                    action="station.credentials.issue",
                    target_type="station",
                    targets=[s.sid for s in stations],
                    after={"count": len(stations), "output": str(output)},
                )
                issued = provisioning.issue_credentials(
                    session,
                    dynsec,
                    stations,
                    topics=topics(settings),
                    issued_by=actor,
                    server_account=server_account(settings),
                )
            existing.update({i.sid: i.password for i in issued})
            json.dump(dict(sorted(existing.items())), handle, indent=2)
            handle.write("\n")
            handle.flush()
            session.commit()
        os.replace(tmp, output)
        tmp = None
    except DomainError as exc:
        raise fail(exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        engine.dispose()
    rotated = sum(i.rotated for i in issued)
    disabled = sum(not s.enabled for s in stations)
    console.print(
        f"[green]{len(issued)} station secrets issued[/green] ({rotated} rotated"
        + (f", {disabled} disabled stations cannot connect" if disabled else "")
        + f"); written to {output} (mode 0600)."
    )
    console.print(
        f"Stations connect to {settings.mqtt_station_url} as username = sid, "
        "client id = st-{sid}."
    )
