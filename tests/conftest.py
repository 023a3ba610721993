"""Test fixtures: a real PostgreSQL with a throwaway database per test session.

The server is ``DATABASE_URL`` when set, else the one on 127.0.0.1:5432 (trust
auth, user postgres), else an embedded one. Each session creates its own
database and drops it at the end; ``clean_db`` empties the tables between tests.
What the fixtures are built from lives in ``tests/support/``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog

from breezeway_daemon.config import Settings, load_settings
from breezeway_daemon.db.pool import create_pool
from breezeway_daemon.sync import SyncContext
from breezeway_sim import Simulator, SimulatorServer

from support.daemon import NotifySocket
from support.database import (
    LOCAL_SERVER,
    EmbeddedServer,
    create_database,
    drop_database,
    empty_tables,
    reachable,
)
from support.monitoring import ServedDaemon
from support.simenv import (
    NO_ENV_FILE,
    SimEnv,
    daemon_env_file_text,
    regions_for,
    settings_for,
    write_private,
)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL (to its maintenance database)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if asyncio.run(reachable(LOCAL_SERVER)):
        yield LOCAL_SERVER
        return
    server = EmbeddedServer("bw-test-pg-")
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    url = asyncio.run(create_database("session", server=server_url, prefix="bw_test"))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url, server=server_url))


@pytest.fixture(scope="session")
def base_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("state")
    return load_settings(NO_ENV_FILE, database_url=database_url, state_dir=state)


@pytest.fixture(scope="session")
async def pool(base_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(base_settings)
    yield pool
    await pool.close()


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database of its own on the session's server, dropped afterwards."""
    url = await create_database("empty", server=server_url, prefix="bw_test", migrated=False)
    try:
        yield url
    finally:
        await drop_database(url, server=server_url)


@pytest.fixture
async def clean_db(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The session database with every table emptied."""
    await empty_tables(pool)
    return pool


# --- the simulator ------------------------------------------------------------------
@pytest.fixture
async def sim_env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[SimEnv]:
    """Two small companies served over HTTP; the database emptied first."""
    sim = Simulator(companies=2, scale="small", seed=11)
    sim.faults.data_rate_limit_per_minute = None  # settings_for does not pace (100,000/min)
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


@pytest.fixture
async def served_daemon(
    sim_env: SimEnv, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[ServedDaemon]]]:
    """``await served_daemon(**settings)``: a ready daemon on ``sim_env`` with its listener
    on a free port (``secrets``: regions' client secrets; ``database_url``: another
    database; ``journal_socket``: as under systemd; ``wait_ready=False``: do not wait)."""
    notify = NotifySocket(tmp_path / "notify.sock")
    started: list[ServedDaemon] = []

    async def start(
        secrets: dict[str, str] | None = None,
        database_url: str | None = None,
        wait_ready: bool = True,
        journal_socket: Path | None = None,
        **settings: object,
    ) -> ServedDaemon:
        text = daemon_env_file_text(
            database_url or sim_env.settings.dsn(), sim_env.settings.api_base_url, tmp_path,
            regions_for(sim_env.sim, secrets=secrets),
            **{"http_listen": "127.0.0.1:0", "http_retry_budget_s": 10, **settings},
        )  # fmt: skip
        env_file = write_private(tmp_path / f"breezeway-{len(started)}.env", text)
        daemon = ServedDaemon(env_file, notify, {})
        started.append(daemon)
        await daemon.start(journal_socket)
        if wait_ready:
            await daemon.ready()
        return daemon

    yield start
    for daemon in started:
        await daemon.kill()
    notify.close()
