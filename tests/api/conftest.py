"""Fixtures of the API client tests: a simulator over real HTTP and a ``BreezewayApi`` on it
(``support.apienv.ApiEnv``), every request it sends recorded."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.config import Settings
from breezeway_sim import Scale, Simulator, SimulatorServer

from support.apienv import ApiEnv, EnvFactory, record_requests
from support.simenv import settings_for


@pytest.fixture
async def make_env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[EnvFactory]:
    """``await make_env(companies=2, scale="small", regions=None, pacing_window_s=None,
    **settings)``: a fresh simulator served over HTTP, and an API client on it."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            companies: int = 2,
            scale: Scale | str = "small",
            seed: int = 11,
            regions: dict[str, dict[str, object]] | None = None,
            pacing_window_s: float | None = None,
            **overrides: object,
        ) -> ApiEnv:
            sim = Simulator(companies=companies, scale=scale, seed=seed)
            server = await stack.enter_async_context(SimulatorServer(sim, port=0))
            if regions is not None:
                overrides["regions"] = regions
            settings = settings_for(base_settings, sim, server.base_url, **overrides)
            extra = {} if pacing_window_s is None else {"pacing_window_s": pacing_window_s}
            api = BreezewayApi(settings, clean_db, **extra)
            stack.push_async_callback(api.aclose)
            env = ApiEnv(sim, server, settings, api, clean_db)
            record_requests(api.http, env.sent, time.monotonic)
            return env

        yield make


@pytest.fixture
async def env(make_env: EnvFactory) -> ApiEnv:
    """Two small companies (regions ``region_1`` and ``region_2``), default limits."""
    return await make_env()
