"""Fixtures of the sync engine's tests: simulators of chosen sizes served over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_sim import Scale, Simulator

from support.syncenv import SyncEnv, served

# Fast failure settings: a failing request gives up after two quick attempts.
FAST = {"http_max_attempts": 2, "http_retry_budget_s": 3}


@pytest.fixture
async def env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[SyncEnv]:
    """Two small companies (6 properties each), batches of 5 records, 0.2 s heartbeats."""
    sim = Simulator(companies=2, scale="small", seed=23)
    sim.faults.data_rate_limit_per_minute = None  # settings_for does not pace (100,000/min)
    async with served(base_settings, sim, **FAST, batch_size=5, heartbeat_s=0.2) as found:
        yield found


@pytest.fixture
async def paged_env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[SyncEnv]:
    """One company big enough that full listings take many pages (page size 10)."""
    scale = Scale(properties=8, reservations_per_property=15, tasks_per_property=40, people=25,
                  supplies=25, tags=6)  # fmt: skip
    sim = Simulator(companies=1, scale=scale, seed=5)
    sim.faults.data_rate_limit_per_minute = None  # settings_for does not pace (100,000/min)
    async with served(base_settings, sim, **FAST, page_size=10) as found:
        yield found
