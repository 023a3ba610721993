"""Fixtures of the sync engine's tests: simulators of chosen sizes served over HTTP, helpers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.sync import SyncContext
from breezeway_sim import Scale, Simulator, SimulatorServer

from simenv import SimEnv, settings_for

# Fast failure settings: a failing request gives up after two quick attempts.
FAST = {"http_max_attempts": 2, "http_retry_budget_s": 3}


@dataclass
class Env(SimEnv):
    """A served simulator, settings for it and a SyncContext over them."""

    ctx: SyncContext

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool

    def company(self, region: str) -> int:
        return self.regions[region]


@contextlib.asynccontextmanager
async def served(base: Settings, sim: Simulator, **overrides: Any) -> AsyncIterator[Env]:
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(base, sim, server.base_url, **{**FAST, **overrides})
        async with SyncContext.open(settings) as ctx:
            yield Env(sim, server, settings, ctx)


@pytest.fixture
async def env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[Env]:
    """Two small companies (6 properties each), batches of 5 records, 0.2 s heartbeats."""
    sim = Simulator(companies=2, scale="small", seed=23)
    async with served(base_settings, sim, batch_size=5, heartbeat_s=0.2) as found:
        yield found


@pytest.fixture
async def paged_env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[Env]:
    """One company big enough that full listings take many pages (page size 10)."""
    scale = Scale(properties=8, reservations_per_property=15, tasks_per_property=40, people=25,
                  supplies=25, tags=6)  # fmt: skip
    sim = Simulator(companies=1, scale=scale, seed=5)
    async with served(base_settings, sim, page_size=10) as found:
        yield found


# --- helpers -------------------------------------------------------------------------
async def log_rows(pool: asyncpg.Pool, region: str, entity: str) -> list[asyncpg.Record]:
    """The pair's etl_sync_log rows, oldest first."""
    return await pool.fetch(
        "SELECT * FROM breezeway.etl_sync_log WHERE region_code = $1 AND entity_type = $2 "
        "ORDER BY id",
        region,
        entity,
    )


async def cursor(pool: asyncpg.Pool, region: str, entity: str) -> datetime | None:
    return await runs.read_cursor(pool, region, entity)


async def live_ids(pool: asyncpg.Pool, region: str, entity: str) -> set[int]:
    rows = await pool.fetch(
        f"SELECT id FROM breezeway.{entity} WHERE region_code = $1 AND deleted_at IS NULL", region
    )
    return {row["id"] for row in rows}
