"""``broadcaster live icecast-config``: our Icecast2 configuration for live paging
(mounted by `broadcaster.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broadcaster.console import console
from broadcaster.live.icecast import write_config

__all__ = ["live_app"]

live_app = typer.Typer(help="Live paging (Icecast2)", no_args_is_help=True)


@live_app.command("icecast-config")
def icecast_config(
    directory: Annotated[Path, typer.Option("--dir", help="where icecast.xml goes")] = Path(
        "var/icecast"
    ),
    port: Annotated[int, typer.Option(help="listener port")] = 8010,
    host: Annotated[str, typer.Option(help="listener address")] = "127.0.0.1",
) -> None:
    """Write icecast.xml (random passwords, no burst on connect) and print the value of
    BROADCASTER_LIVE_ICECAST_URL; start it with ``icecast2 -c DIR/icecast.xml``."""
    setup = write_config(directory, port=port, host=host)
    console.print(f"Wrote {setup.config_path} (start it: icecast2 -c {setup.config_path})")
    console.print(f"BROADCASTER_LIVE_ICECAST_URL={setup.source_url}", soft_wrap=True)
