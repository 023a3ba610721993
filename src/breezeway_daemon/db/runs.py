"""The run log (``etl_sync_log``, one row per run), run locks and incremental cursors.

A run of one region and entity holds a session advisory lock for that pair on
its own connection for as long as it runs, so that no two processes sync the
same pair at once. Holding the lock also proves that any other ``running`` row
of the pair is dead: its owner would hold the lock otherwise.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime

import asyncpg

HOST = socket.gethostname()
PID = os.getpid()


def advisory_lock_key(name: str) -> int:
    """A stable bigint advisory-lock key for ``name``, the same in every process."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def run_lock_key(region: str, entity: str) -> int:
    """The advisory-lock key of one region and entity."""
    return advisory_lock_key(f"breezeway-run/{region}/{entity}")


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session advisory lock ``key`` if nobody holds it; whether it was taken."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def try_lock_pair(conn: asyncpg.Connection, region: str, entity: str) -> bool:
    return await try_lock(conn, run_lock_key(region, entity))


async def unlock_pair(conn: asyncpg.Connection, region: str, entity: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", run_lock_key(region, entity))


@dataclass
class RunCounts:
    records_processed: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    records_deleted: int = 0
    records_rejected: int = 0
    api_calls_made: int = 0


async def reap_abandoned(conn: asyncpg.Connection, region: str, entity: str) -> int:
    """Fail the pair's ``running`` rows; call only while holding the pair's lock."""
    status = await conn.execute(
        """
        UPDATE breezeway.etl_sync_log
        SET sync_status = 'failed', sync_completed_at = now(),
            error_message = 'abandoned: its process (' || coalesce(owner_host, '?') || ':'
                || coalesce(owner_pid::text, '?') || ') stopped without finishing the run'
        WHERE region_code = $1 AND entity_type = $2 AND sync_status = 'running'
        """,
        region,
        entity,
    )
    return int(status.split()[-1])


async def start_run(
    conn: asyncpg.Connection, region: str, entity: str, *, mode: str, trigger: str
) -> tuple[int, datetime]:
    """Insert the run's row; returns its id and start time (the database's clock)."""
    row = await conn.fetchrow(
        """
        INSERT INTO breezeway.etl_sync_log (
            region_code, entity_type, sync_status, sync_mode, trigger,
            last_successful_sync_at, owner_host, owner_pid, heartbeat_at)
        VALUES ($1, $2, 'running', $3, $4,
            (SELECT max(last_successful_sync_at) FROM breezeway.etl_sync_log
             WHERE region_code = $1 AND entity_type = $2),
            $5, $6, now())
        RETURNING id, sync_started_at
        """,
        region,
        entity,
        mode,
        trigger,
        HOST,
        PID,
    )
    return row["id"], row["sync_started_at"]


async def heartbeat(conn: asyncpg.Connection, run_id: int, counts: RunCounts) -> None:
    await conn.execute(
        """
        UPDATE breezeway.etl_sync_log
        SET heartbeat_at = now(), records_processed = $2, api_calls_made = $3
        WHERE id = $1 AND sync_status = 'running'
        """,
        run_id,
        counts.records_processed,
        counts.api_calls_made,
    )


async def finish_run(
    conn: asyncpg.Connection | asyncpg.Pool,
    run_id: int,
    *,
    success: bool,
    counts: RunCounts,
    error: str | None = None,
    cursor_from: datetime | None = None,
    cursor_to: datetime | None = None,
) -> None:
    """Close the run's row. Only a ``running`` row is closed (the watchdog may have failed it)."""
    await conn.execute(
        """
        UPDATE breezeway.etl_sync_log
        SET sync_status = CASE WHEN $2 THEN 'success' ELSE 'failed' END,
            sync_completed_at = now(),
            last_successful_sync_at = CASE WHEN $2 THEN now() ELSE last_successful_sync_at END,
            records_processed = $3, records_new = $4, records_updated = $5,
            records_unchanged = $6, records_deleted = $7, records_rejected = $8,
            api_calls_made = $9, error_message = $10, heartbeat_at = now(),
            cursor_from = $11, cursor_to = $12
        WHERE id = $1 AND sync_status = 'running'
        """,
        run_id,
        success,
        counts.records_processed,
        counts.records_new,
        counts.records_updated,
        counts.records_unchanged,
        counts.records_deleted,
        counts.records_rejected,
        counts.api_calls_made,
        error,
        cursor_from,
        cursor_to,
    )


async def record_skipped_run(
    conn: asyncpg.Connection | asyncpg.Pool, region: str, entity: str, *, trigger: str, reason: str
) -> int:
    """A run that did not start because a parent failed: a ``failed`` row saying so."""
    return await conn.fetchval(
        """
        INSERT INTO breezeway.etl_sync_log (
            region_code, entity_type, sync_status, trigger, sync_completed_at,
            last_successful_sync_at, error_message, owner_host, owner_pid)
        VALUES ($1, $2, 'failed', $3, now(),
            (SELECT max(last_successful_sync_at) FROM breezeway.etl_sync_log
             WHERE region_code = $1 AND entity_type = $2),
            $4, $5, $6)
        RETURNING id
        """,
        region,
        entity,
        trigger,
        reason,
        HOST,
        PID,
    )


async def run_status(conn: asyncpg.Connection | asyncpg.Pool, run_id: int) -> str | None:
    return await conn.fetchval(
        "SELECT sync_status FROM breezeway.etl_sync_log WHERE id = $1", run_id
    )


# --- cursors ----------------------------------------------------------------------
async def read_cursor(
    conn: asyncpg.Connection | asyncpg.Pool, region: str, entity: str
) -> datetime | None:
    return await conn.fetchval(
        "SELECT cursor_at FROM breezeway.sync_cursors WHERE region_code = $1 AND entity_type = $2",
        region,
        entity,
    )


async def write_cursor(
    conn: asyncpg.Connection | asyncpg.Pool,
    region: str,
    entity: str,
    cursor_at: datetime,
    run_id: int,
) -> None:
    await conn.execute(
        """
        INSERT INTO breezeway.sync_cursors (region_code, entity_type, cursor_at, run_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (region_code, entity_type)
        DO UPDATE SET cursor_at = EXCLUDED.cursor_at, run_id = EXCLUDED.run_id, updated_at = now()
        """,
        region,
        entity,
        cursor_at,
        run_id,
    )
