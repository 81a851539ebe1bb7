"""The `broadcaster` command line (Typer + Rich)."""

from __future__ import annotations

import getpass
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import db
from broadcaster.broker.cli import mqtt_app, stations_credentials
from broadcaster.console import console, err, fail, load_settings
from broadcaster.live.cli import live_app
from broadcaster.reorg.cli import areas_app
from broadcaster.settings import Settings
from firmware_bridge.simulator.cli import simulate
from kernel.errors import DomainError

app = typer.Typer(help="Hệ thống truyền thanh cơ sở thông minh — broadcaster", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations", no_args_is_help=True)
stations_app = typer.Typer(help="Station registry import/export", no_args_is_help=True)
users_app = typer.Typer(help="Accounts", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(stations_app, name="stations")
app.add_typer(users_app, name="users")
app.add_typer(mqtt_app, name="mqtt")
app.add_typer(areas_app, name="areas")
app.add_typer(live_app, name="live")
stations_app.command("credentials")(stations_credentials)


def _migrated(settings: Settings) -> Engine:
    engine = db.make_engine(settings.database_url)
    with console.status("Applying database migrations…"):
        db.upgrade(engine)
    return engine


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    role: Annotated[
        str,
        typer.Option(
            help="all: API and worker; api: HTTP only; worker: MQTT, outbox and jobs "
            "(one active worker, elected through PostgreSQL; SQLite: run one process)"
        ),
    ] = "all",
) -> None:
    """Run the service: API, dashboard and (unless --role api) the worker."""
    import uvicorn

    from broadcaster.app import create_app
    from broadcaster.runtime import Role

    try:
        chosen = Role(role)
    except ValueError as exc:
        err.print("[red]--role must be all, api or worker[/red]")
        raise typer.Exit(2) from exc
    _configure_logging(log_level)
    settings = load_settings()
    uvicorn.run(
        create_app(settings, role=chosen, freeze_heap=True),
        host=host,
        port=port,
        log_level=log_level.lower(),
    )


app.command("simulate")(simulate)


@app.command()
def broadcast(
    text: Annotated[str | None, typer.Option(help="speak this text (emergency tier only)")] = None,
    asset: Annotated[int | None, typer.Option(help="an approved media asset id")] = None,
    tier: Annotated[str, typer.Option(help="normal, priority or emergency")] = "emergency",
    everywhere: Annotated[bool, typer.Option("--all", help="every station")] = False,
    group: Annotated[list[str] | None, typer.Option(help="group gid, repeatable")] = None,
    area: Annotated[list[str] | None, typer.Option(help="area code, repeatable")] = None,
    station: Annotated[list[str] | None, typer.Option(help="station sid, repeatable")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    repeat: Annotated[int, typer.Option(min=1, max=100)] = 1,
    expires_in: Annotated[
        int | None,
        typer.Option(help="seconds it stays deliverable (default: emergency 1800, others 30)"),
    ] = None,
    api: Annotated[str, typer.Option(envvar="BROADCASTER_API_URL")] = "http://127.0.0.1:8000",
    username: Annotated[str | None, typer.Option(envvar="BROADCASTER_USERNAME")] = None,
    password: Annotated[str | None, typer.Option(envvar="BROADCASTER_PASSWORD")] = None,
    token: Annotated[str | None, typer.Option(envvar="BROADCASTER_API_TOKEN")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until every station answers")] = True,
) -> None:
    """Send an (emergency) broadcast through the API and follow it station by station."""
    from broadcaster import broadcast_cli

    targets = {
        "stations": station or [],
        "groups": (group or []) + (["all"] if everywhere else []),
        "areas": area or [],
    }
    content: dict[str, object] = {"text": text} if text else {"asset_id": asset}
    if (text is None) == (asset is None):
        err.print("[red]Give exactly one of --text or --asset.[/red]")
        raise typer.Exit(2)
    code = broadcast_cli.send(
        api=api,
        credentials=(username, password),
        token=token,
        payload={
            "targets": targets,
            "content": content,
            "tier": tier,
            "title": title,
            "repeat": repeat,
            "expires_in_s": expires_in,
        },
        follow=follow,
        console=console,
    )
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = load_settings()
    _migrated(settings)
    console.print("[green]Database is up to date.[/green]")


class Dataset(StrEnum):
    TAN_AN = "tan-an"


@app.command()
def seed(
    dataset: Annotated[Dataset, typer.Argument(help="which data set")] = Dataset.TAN_AN,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="build the structure of this day (YYYY-MM-DD)"),
    ] = None,
) -> None:
    """Load a data set (idempotent): Tân An city's areas, stations and groups, then the
    05:00/17:00 relay chain (stream sources, programmes, approved rules).  With
    ``--as-of 2025-07-01`` or later, the 2025 reorganisation is applied: three wards of
    Tây Ninh province, no city level, no city step in the chain."""
    import datetime as dt

    from broadcaster.reorg import tan_an as tan_an_2025

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        err.print(f"[red]Invalid date {escape(as_of or '')}[/red]")
        raise typer.Exit(2) from exc
    from audio_library.service import MediaLibrary
    from audio_library.settings import AudioSettings
    from schedules import seed as schedules_seed

    settings = load_settings()
    engine = _migrated(settings)
    factory = db.make_sessionmaker(engine)
    library = MediaLibrary(
        AudioSettings(),
        root=settings.media_dir,
        url_secret=MediaLibrary.derive_secret(settings.secret_key.get_secret_value()),
        public_base_url=settings.public_base_url,
    )
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=console
        ) as progress:
            progress.add_task("Seeding Tân An and its relay chain…", total=None)
            added, chain = schedules_seed.load_tan_an(factory, library, tz=settings.tz)
            reorganised = day is not None and tan_an_2025.load_as_of(factory, day)
    finally:
        library.shutdown()
    if reorganised:
        console.print("[green]Reorganised as of 1 July 2025:[/green] Tây Ninh, 3 wards.")
    console.print(
        f"[green]Tân An seeded:[/green] {added['areas']} areas and "
        f"{added['stations']} stations added; relay chain: {chain['stream_sources']} "
        f"stream sources, {chain['programmes']} programmes, {chain['rules']} rules added."
    )


@stations_app.command("import")
def stations_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only")] = False,
) -> None:
    """Import stations from CSV (all rows or none)."""
    from kernel.changes import Actor, commit_change
    from stations import csvio

    settings = load_settings()
    factory = db.make_sessionmaker(_migrated(settings))
    content = file.read_bytes()
    with factory() as session:
        report = csvio.import_stations(session, content, dry_run=dry_run)
        if report.errors:
            session.rollback()
            table = Table("line", "field", "error", title=f"{len(report.errors)} error(s)")
            for e in report.errors:  # a message quotes the file: never Rich markup
                table.add_row(str(e.line), escape(e.field or ""), escape(e.message))
            err.print(table)
            err.print("[red]Nothing was written.[/red]")
            raise typer.Exit(1)
        if not dry_run:
            commit_change(
                session,
                Actor.system(f"cli:{getpass.getuser()}"),
                "station.import",
                "station",
                report.disabled,
                after=csvio.import_summary(report, file.name),
            )
    verb = "would be" if dry_run else "were"
    console.print(
        f"[green]{report.rows} rows valid:[/green] {report.created} {verb} created, "
        f"{report.updated} {verb} updated, {len(report.disabled)} {verb} disabled."
    )
    if report.disabled and not dry_run:
        _revoke_now(settings, factory)


def _revoke_now(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Take broker access from stations the import disabled now, not only when the
    worker next syncs (it does, within seconds of the plan signal, if it runs)."""
    from broadcaster.broker import service as broker

    try:
        with db.read_session(factory) as session:
            report = broker.sync_registry(session, settings)
    except DomainError as exc:
        err.print(f"broker not reachable ({escape(exc.message)}); the worker revokes access")
        return
    if report is not None and report.changed:
        console.print(f"broker accounts: {escape(report.summary())}")


@stations_app.command("export")
def stations_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
) -> None:
    """Export the station registry as CSV (UTF-8 with BOM, opens in Excel)."""
    from stations import csvio
    from stations import service as stations

    settings = load_settings()
    factory = db.make_sessionmaker(_migrated(settings))
    with factory() as session:
        body = csvio.export_stations(
            stations.all_stations(session, stations.station_query(session))
        )
    if output is None:
        sys.stdout.write(body)
    else:
        output.write_text(body, encoding="utf-8")
        console.print(f"Wrote {output}")


@users_app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str | None, typer.Option(help="prompted when omitted")] = None,
) -> None:
    """Create a city administrator (there is no default account)."""
    from pydantic import ValidationError

    from broadcaster.auth import service
    from broadcaster.auth.schemas import UserCreate
    from kernel.errors import DomainError
    from kernel.security import Role

    if password is None:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            err.print("[red]Passwords do not match.[/red]")
            raise typer.Exit(1)
    settings = load_settings()
    factory = db.make_sessionmaker(_migrated(settings))
    try:
        data = UserCreate(username=username, password=password, role=Role.ADMIN, can_emergency=True)
        with db.session_scope(factory) as session:
            service.create_user(session, data)
    except ValidationError as exc:
        for e in exc.errors():
            err.print(f"[red]{'.'.join(map(str, e['loc']))}: {e['msg']}[/red]")
        raise typer.Exit(1) from exc
    except DomainError as exc:
        raise fail(exc) from exc
    console.print(f"[green]Administrator {username!r} created.[/green]")


@app.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run everything on embedded defaults (SQLite, Tân An) for a first look."""
    from broadcaster import demo as demo_module

    demo_module.run(host=host, port=port)


def main() -> None:
    app()
