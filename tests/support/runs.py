"""A run's traces in the database: its ``etl_sync_log`` rows, cursors, ``running`` rows;
and ``lock_holder``, another process holding pairs' run locks (a live run elsewhere)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from breezeway_daemon.db import runs


async def pair_rows(
    pool: asyncpg.Pool, table: str, region: str, entity: str, columns: str = "*"
) -> list[asyncpg.Record]:
    """A region and entity's rows of ``table`` (etl_sync_log, rejected_records), oldest first."""
    return await pool.fetch(
        f"SELECT {columns} FROM breezeway.{table} WHERE region_code = $1 AND entity_type = $2 "
        "ORDER BY id",
        region,
        entity,
    )


async def log_rows(pool: asyncpg.Pool, region: str, entity: str) -> list[asyncpg.Record]:
    """The pair's etl_sync_log rows, oldest first."""
    return await pair_rows(pool, "etl_sync_log", region, entity)


async def cursor(pool: asyncpg.Pool, region: str, entity: str) -> datetime | None:
    return await runs.read_cursor(pool, region, entity)


async def running_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every run still marked ``running``."""
    return await pool.fetch(
        "SELECT id, region_code, entity_type, owner_pid FROM breezeway.etl_sync_log "
        "WHERE sync_status = 'running'"
    )


async def running_row(
    pool: asyncpg.Pool,
    entity: str,
    *,
    started: str,
    heartbeat: str | None,
    host: str = "some-other-host",
    pid: int | None = 4242,
    region: str = "region_1",
) -> int:
    """A ``running`` row started ``started`` ago whose last heartbeat was ``heartbeat`` ago."""
    return await pool.fetchval(
        """
        INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status, sync_started_at,
            heartbeat_at, owner_host, owner_pid)
        VALUES ($1, $2, 'running', now() - $3::text::interval,
            now() - $4::text::interval, $5, $6)
        RETURNING id
        """,
        region, entity, started, heartbeat, host, pid,
    )  # fmt: skip


async def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    return proc.pid


_HOLD_LOCKS = """
import asyncio, sys
import asyncpg
from breezeway_daemon.db import runs

async def main():
    conn = await asyncpg.connect(sys.argv[1])
    for pair in sys.argv[2:]:
        region, entity = pair.split("/")
        assert await runs.try_lock_pair(conn, region, entity), pair
    print("locked", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await conn.close()

asyncio.run(main())
"""


@asynccontextmanager
async def lock_holder(dsn: str, *pairs: tuple[str, str]) -> AsyncIterator[None]:
    """Another process that holds these (region, entity) pairs' run locks until the block
    ends, as a live run of another daemon does."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCKS, dsn, *(f"{r}/{e}" for r, e in pairs),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            assert (await proc.stdout.readline()).strip() == b"locked"
        yield
    finally:
        proc.stdin.close()
        async with asyncio.timeout(20):
            await proc.wait()
