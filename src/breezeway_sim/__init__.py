"""The Breezeway API simulator: all of BREEZEWAY_API.md over real HTTP, with data, time and faults.

Used from Python as README's "The simulator" shows. Read more in ``simulation`` (the
``Simulator``), ``faults``, ``stats``, ``generate``, ``evolve``, ``query``/``listings``,
``control`` (the ``/_sim/`` endpoints) and ``cli`` (``breezeway-daemon simulate``).
"""

from .companies import Company, region_env_lines
from .evolve import EntityRates, Rates
from .faults import BAD_CHILD_KINDS, BAD_RECORD_KINDS, Faults
from .generate import PRESETS, Scale
from .server import SimulatorServer
from .simulation import Simulator
from .stats import ClientStats, Stats

__all__ = [
    "BAD_CHILD_KINDS",
    "BAD_RECORD_KINDS",
    "PRESETS",
    "ClientStats",
    "Company",
    "EntityRates",
    "Faults",
    "Rates",
    "Scale",
    "Simulator",
    "SimulatorServer",
    "Stats",
    "region_env_lines",
]
