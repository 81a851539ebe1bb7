"""What every `broadcaster` command-line module shares: the Rich consoles, loading the
settings (a bad one ends the command with exit status 2) and a domain error's exit."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from broadcaster.settings import Settings
from kernel.errors import DomainError

__all__ = ["console", "err", "fail", "load_settings"]

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        err.print(f"[red]Invalid settings:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def fail(exc: DomainError) -> typer.Exit:
    """Print a domain error's message; the exit (status 1) to raise."""
    err.print(f"[red]{escape(exc.message)}[/red]")
    return typer.Exit(1)
