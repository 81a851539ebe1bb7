"""``broadcaster simulate``: run N virtual stations against a broker.

:func:`simulate` is a plain Typer command function; the composition root registers it
(``app.command("simulate")(simulate)``) and ``python -m firmware_bridge.simulator``
runs it stand-alone. With ``--processes N`` (default: one per core) the stations are
split into N slices, each run by its own process (:class:`~.processes.ProcessFleet`), and
the summary adds the slices up. It resolves the station list (``--api``, ``--csv`` or generated
``sim-0001``...), runs the fleet on an asyncio loop with a Rich live summary, and on
Ctrl-C or SIGTERM stops every station cleanly (each publishes its own death).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from firmware_bridge.errors import ConfigError
from firmware_bridge.messages import MEDIA_FOLLOWS, SMART_CAPABILITIES
from firmware_bridge.simulator.config import SimSettings, StationSpec
from firmware_bridge.simulator.faults import FaultSpec
from firmware_bridge.simulator.fleet import Fleet, FleetConfig, FleetSummary
from firmware_bridge.simulator.heap import station_heap
from firmware_bridge.simulator.processes import ProcessFleet, default_processes, stop_on_signals
from firmware_bridge.simulator.sources import (
    generated_stations,
    load_credentials,
    stations_from_api,
    stations_from_csv,
)

__all__ = ["simulate"]

log = logging.getLogger(__name__)


def simulate(
    stations: Annotated[
        int, typer.Option("--stations", "-n", min=1, help="How many stations.")
    ] = 10,
    api: Annotated[
        str | None, typer.Option(help="Take stations from GET {API}/api/v1/stations.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="BROADCASTER_API_TOKEN", help="Bearer token for --api.")
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", exists=True, dir_okay=False, help="CSV with sid[,secret] columns."),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON object sid -> MQTT password."),
    ] = None,
    mqtt_url: Annotated[
        str,
        typer.Option(
            envvar="BROADCASTER_MQTT_URL",
            help="Broker: mqtt://\\[user:pass@]host:port or mqtts://...",
        ),
    ] = "mqtt://127.0.0.1:1883",
    state_dir: Annotated[
        Path, typer.Option(help="Per-station flash: bdseq, desired, media cache, spool.")
    ] = Path("var/simulator"),
    speed: Annotated[
        float, typer.Option(min=0.01, help="Station time runs this many times faster.")
    ] = 1.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="KIND[:FRACTION | :sid1,sid2], repeatable (power, mains, flap, ...)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for faults and noise.")] = None,
    topic_prefix: Annotated[str, typer.Option(help="Topic prefix.")] = "loa/v1",
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Run the stations in this many processes, each a slice (default: one per core).",
        ),
    ] = None,
    media_follows: Annotated[
        bool,
        typer.Option(
            help="Announce proposal 0005 (a spoken emergency's play may come before its "
            "audio, which follows in a 'media' command); off: today's loa/v1 firmware.",
        ),
    ] = False,
    live: Annotated[bool, typer.Option(help="Show the live summary (off when not a TTY).")] = True,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "WARNING",
) -> None:
    """Run virtual loudspeaker stations that speak loa/v1 to the broker."""
    console = Console(stderr=True)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    try:
        specs = _resolve_stations(stations, api, token, csv_file, credentials)
        faults = [FaultSpec.parse(text) for text in fault or []]
        config = FleetConfig(
            mqtt_url=mqtt_url,
            state_dir=state_dir,
            topic_prefix=topic_prefix,
            speed=speed,
            seed=seed,
            settings=SimSettings(
                capabilities=(*SMART_CAPABILITIES, MEDIA_FOLLOWS)
                if media_follows
                else SMART_CAPABILITIES
            ),
        )
        count = min(processes or default_processes(), len(specs))
        fleet: Fleet | ProcessFleet
        if count > 1:
            fleet = ProcessFleet(config, specs, faults, processes=count, log_level=log_level)
        else:
            fleet = Fleet(config, specs, faults)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    show = live and console.is_terminal and sys.stderr.isatty()
    asyncio.run(_run(fleet, console, show=show, duration=duration))


def _resolve_stations(
    count: int,
    api: str | None,
    token: str | None,
    csv_file: Path | None,
    credentials: Path | None,
) -> list[StationSpec]:
    if api and csv_file:
        raise ConfigError("use either --api or --csv, not both")
    if api:
        specs = stations_from_api(api, count, token=token)
    elif csv_file:
        specs = stations_from_csv(csv_file, count)
    else:
        specs = generated_stations(count)
    if credentials is not None:
        secrets = load_credentials(credentials)
        specs = [replace(s, password=secrets.get(s.sid, s.password)) for s in specs]
    if not specs:
        raise ConfigError("no stations to simulate")
    return specs


async def _run(
    fleet: Fleet | ProcessFleet, console: Console, *, show: bool, duration: float | None
) -> None:
    stop = stop_on_signals()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)
    await fleet.start()
    # a process fleet's children run their stations (and their heaps) themselves
    heap = station_heap() if isinstance(fleet, Fleet) else contextlib.nullcontext()
    try:
        async with heap:
            await _show(fleet, console, stop, show=show)
    finally:
        console.print("stopping: publishing deaths and disconnecting...")
        await fleet.stop()
        console.print(_line(fleet.summary()))


async def _show(
    fleet: Fleet | ProcessFleet, console: Console, stop: asyncio.Event, *, show: bool
) -> None:
    if show:
        with Live(_table(fleet.summary()), console=console, refresh_per_second=2) as view:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                view.update(_table(fleet.summary()))
    else:
        last = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10.0)
            summary = fleet.summary()
            if summary != last:
                console.print(_line(summary))
                last = summary


def _line(s: FleetSummary) -> str:
    return (
        f"{s.online}/{s.stations} online, {s.playing} playing, {s.events_sent} events sent, "
        f"{s.spooled} spooled, {s.faulted} faulty now ({s.fault_injected} with injected faults)"
    )


def _table(s: FleetSummary) -> Table:
    table = Table(title="loa/v1 station simulator", show_header=False)
    table.add_row("stations", str(s.stations))
    table.add_row("online", f"[green]{s.online}[/green] / {s.alive} powered")
    table.add_row("playing", str(s.playing))
    table.add_row("events sent", str(s.events_sent))
    table.add_row("spooled (offline)", str(s.spooled))
    table.add_row("faulty now", f"[yellow]{s.faulted}[/yellow] / {s.fault_injected} injected")
    table.add_row("connects", str(s.connects))
    return table
