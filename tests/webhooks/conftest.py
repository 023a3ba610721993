"""Fixtures of the webhook tests (``support.webhooks``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.sync import SyncContext, run_batch
from breezeway_sim import Simulator

from support.simenv import SimEnv
from support.webhooks import Hooks, hooks_for


@pytest.fixture
async def hooks(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[Hooks]:
    sim = Simulator(companies=2, scale="small", seed=29)
    async with hooks_for(base_settings, sim) as found:
        yield found


@pytest.fixture
async def strict_hooks(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[Hooks]:
    sim = Simulator(companies=1, scale="small", seed=31)
    async with hooks_for(base_settings, sim, webhook_strict=True) as found:
        yield found


@pytest.fixture
async def synced_env(sim_env: SimEnv) -> AsyncIterator[SimEnv]:
    """``sim_env`` with its properties and tasks synced; its webhook deliveries stopped after."""
    async with SyncContext.open(sim_env.settings) as ctx:
        await run_batch(ctx, list(sim_env.settings.regions), ["properties", "tasks"])
    try:
        yield sim_env
    finally:
        await sim_env.sim.webhooks.aclose()
