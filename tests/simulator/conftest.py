"""Fixtures of the simulator tests: a small simulator, an in-process API helper
(``support.simapi.Api``), a real server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from breezeway_sim import Simulator, SimulatorServer

from support.served import Receiver, served_app
from support.simapi import Api


@pytest.fixture
def sim() -> Simulator:
    """Two small companies; the auth limit is off so tests log in freely (limit tests set it)."""
    simulator = Simulator(companies=2, scale="small", seed=1)
    simulator.faults.auth_rate_limit_per_minute = None
    return simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    """The API helper over an in-process transport (no sockets)."""
    transport = httpx.ASGITransport(app=sim.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        yield Api(client, sim)


@pytest.fixture
async def api_for() -> AsyncIterator[Callable[[Simulator], Awaitable[Api]]]:
    """Make an in-process ``Api`` for a simulator of the test's own."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(simulator: Simulator) -> Api:
            transport = httpx.ASGITransport(app=simulator.asgi_app())
            client = httpx.AsyncClient(transport=transport, base_url="http://sim.test")
            await stack.enter_async_context(client)
            return Api(client, simulator)

        yield make


@pytest.fixture
async def control_api(sim: Simulator) -> AsyncIterator[Api]:
    """Like ``api``, with the ``/_sim/`` control endpoints enabled."""
    transport = httpx.ASGITransport(app=sim.asgi_app(control=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        yield Api(client, sim)


@pytest.fixture
async def server(sim: Simulator) -> AsyncIterator[SimulatorServer]:
    """The simulator over real HTTP on 127.0.0.1, on a free port."""
    async with SimulatorServer(sim, host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def http_api(sim: Simulator, server: SimulatorServer) -> AsyncIterator[Api]:
    """The API helper over real HTTP to ``server``."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield Api(client, sim)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook ``Receiver`` served on a free port of 127.0.0.1."""
    found = Receiver()
    async with served_app(found.app) as base:
        found.url = f"{base}/hook"
        yield found
