"""Fixtures of the simulator tests: a small simulator, an in-process API helper, a real server.

Helpers come as fixtures (``api``), not imports, so this directory needs no package files.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from breezeway_sim import Simulator, SimulatorServer

API = "/public/inventory/v1"
LOGIN = "/public/auth/v1/"
REFRESH = "/public/auth/v1/refresh"


class Api:
    """An httpx client plus the calls every test needs."""

    API = API
    LOGIN = LOGIN
    REFRESH = REFRESH

    def __init__(self, client: httpx.AsyncClient, sim: Simulator) -> None:
        self.client = client
        self.sim = sim

    async def login(self, index: int = 0) -> dict[str, str]:
        """The token pair of company ``index`` (asserts the login worked)."""
        company = self.sim.companies[index]
        answer = await self.client.post(
            LOGIN, json={"client_id": company.client_id, "client_secret": company.client_secret}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def headers(self, index: int = 0) -> dict[str, str]:
        """``Authorization: JWT <access token>`` for company ``index``."""
        return {"Authorization": f"JWT {(await self.login(index))['access_token']}"}

    async def get(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return await self.client.get(API + path, params=params, headers=headers)

    async def get_all(self, path: str, headers: dict[str, str], **params: Any) -> list[dict]:
        """Every record of a paged listing, page by page (ascending unless told)."""
        params = {"sort_order": "asc", "limit": 100, **params}
        records: list[dict] = []
        page = 1
        while True:
            answer = await self.get(path, headers, **params, page=page)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            records.extend(body["results"])
            if page >= body["total_pages"]:
                return records
            page += 1


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
