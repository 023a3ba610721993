"""The Breezeway API simulator: all of BREEZEWAY_API.md over real HTTP, with data, time and faults.

    from breezeway_sim import Simulator, Scale, SimulatorServer

    sim = Simulator(companies=2, scale="small", seed=1)       # or scale="prod" / Scale(...)
    async with SimulatorServer(sim, port=0) as server:        # uvicorn in this event loop
        ...  # point the client at server.base_url with sim.companies[i].client_id/secret
    sim.advance(hours=1)                                      # records change (sim.rates)
    sim.truth(1001, "tasks")                                  # what a perfect sync holds

Where to read more: ``simulation`` (the ``Simulator``: clock, truth, credentials, scope rules),
``faults`` (every fault setting), ``stats`` (counters), ``generate`` (what data looks like),
``evolve`` (rates), ``query``/``listings`` (filter, sort and paging decisions), ``control``
(the ``/_sim/`` endpoints), ``cli`` (``breezeway-daemon simulate``).
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
