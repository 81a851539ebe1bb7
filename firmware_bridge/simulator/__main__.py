"""``python -m firmware_bridge.simulator``: the simulator without the server's CLI."""

import typer

from firmware_bridge.simulator.cli import simulate

typer.run(simulate)
