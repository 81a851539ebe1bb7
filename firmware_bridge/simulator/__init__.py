"""The loa/v1 station simulator: many virtual station controllers in one process.

Start here: :class:`FleetThread` (blocking API for tests and scripts),
:func:`run_fleet` (asyncio), :func:`firmware_bridge.simulator.cli.simulate` (CLI).
"""

from firmware_bridge.simulator.config import SimSettings, StationSpec, StationStatus
from firmware_bridge.simulator.faults import Fault, FaultSettings, FaultSpec
from firmware_bridge.simulator.fleet import Fleet, FleetConfig, FleetSummary, FleetThread, run_fleet
from firmware_bridge.simulator.player import PlayRecord

__all__ = [
    "Fault",
    "FaultSettings",
    "FaultSpec",
    "Fleet",
    "FleetConfig",
    "FleetSummary",
    "FleetThread",
    "PlayRecord",
    "SimSettings",
    "StationSpec",
    "StationStatus",
    "run_fleet",
]
