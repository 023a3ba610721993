"""Test fixtures: a real PostgreSQL with a throwaway database per test session.

The server is ``DATABASE_URL`` when set, else the one on 127.0.0.1:5432 (trust
auth, user postgres), else an embedded one. Each session creates its own
database and drops it at the end; ``clean_db`` empties the tables between tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import structlog

from breezeway_daemon.config import Settings, load_settings
from breezeway_daemon.db import schema
from breezeway_daemon.db.pool import create_pool
from breezeway_daemon.sync import SyncContext
from breezeway_sim import Simulator, SimulatorServer

from simenv import SimEnv, settings_for

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TABLES = (
    "tasks", "reservations", "properties", "people", "supplies", "tags", "etl_sync_log",
    "api_tokens", "sync_cursors", "rejected_records", "alert_history", "alert_listing_sizes",
)  # fmt: skip


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL (to its maintenance database)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if asyncio.run(_reachable(LOCAL_SERVER)):
        yield LOCAL_SERVER
        return
    from breezeway_daemon.db.embedded import _start

    server = _start(Path(tempfile.mkdtemp(prefix="bw-test-pg-")) / "pgdata")
    try:
        yield server.get_uri("postgres")  # type: ignore[attr-defined]
    finally:
        server.cleanup()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    name = f"bw_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(_with_database(server_url, name))
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(drop())


@pytest.fixture(scope="session")
def base_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("state")
    return load_settings(
        Path("/nonexistent/bw-test.env"),
        database_url=database_url,
        state_dir=state,
    )


@pytest.fixture(scope="session")
async def pool(base_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(base_settings)
    yield pool
    await pool.close()


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database of its own on the session's server, dropped afterwards."""
    name = f"bw_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def clean_db(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The session database with every table emptied."""
    tables = ", ".join(f"breezeway.{table}" for table in TABLES)
    await pool.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    return pool


# --- the simulator ------------------------------------------------------------------
@pytest.fixture
async def sim_env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[SimEnv]:
    """Two small companies served over HTTP; the database emptied first."""
    sim = Simulator(companies=2, scale="small", seed=11)
    async with SimulatorServer(sim, port=0) as server:
        yield SimEnv(sim, server, settings_for(base_settings, sim, server.base_url))


@pytest.fixture
async def sync_ctx(sim_env: SimEnv) -> AsyncIterator[SyncContext]:
    """A SyncContext (its own pool and API client) for ``sim_env``."""
    async with SyncContext.open(sim_env.settings) as ctx:
        yield ctx


# --- logging ----------------------------------------------------------------------------
@pytest.fixture
def saved_logging() -> Iterator[None]:
    """For tests that configure logging (``cli.main`` does): the session gets its own back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
