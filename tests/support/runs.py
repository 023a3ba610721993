"""A run's traces in the database: its ``etl_sync_log`` rows, cursors, ``running`` rows."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from breezeway_daemon.db import runs


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


async def running_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every run still marked ``running``."""
    return await pool.fetch(
        "SELECT id, region_code, entity_type, owner_pid FROM breezeway.etl_sync_log "
        "WHERE sync_status = 'running'"
    )
