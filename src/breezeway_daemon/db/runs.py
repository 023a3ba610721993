"""The run log (``etl_sync_log``, one row per run), run locks and incremental cursors.

``db.lease`` holds a run's lock and row from start to end; this module is their SQL and
vocabulary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

HOST = socket.gethostname()
PID = os.getpid()


def advisory_lock_key(name: str) -> int:
    """A stable bigint advisory-lock key for ``name``, the same in every process."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def run_lock_key(region: str, entity: str) -> int:
    """The advisory-lock key of one region and entity.

    A run of one region and entity holds a session advisory lock for that pair on its own connection
    for as long as it runs, so that no two processes sync the same pair at once. Holding the lock
    also proves that any other ``running`` row of the pair is dead: its owner would hold the lock
    otherwise; and the lock held (``pg_locks``) proves a row alive, whatever host and pid it names
    (two containers share both).
    """
    return advisory_lock_key(f"breezeway-run/{region}/{entity}")


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session advisory lock ``key`` if nobody holds it; whether it was taken."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def try_lock_pair(conn: asyncpg.Connection, region: str, entity: str) -> bool:
    return await try_lock(conn, run_lock_key(region, entity))


async def unlock_pair(conn: asyncpg.Connection, region: str, entity: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", run_lock_key(region, entity))


class RunStatus(StrEnum):
    """A run's status: a row's ``sync_status`` (``skipped`` runs have no row)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not started: another process holds the pair's lock, or another daemon the batch."""


class RequestMode(StrEnum):
    """What a run was asked to do (a row's ``sync_mode``); how it lists is the entity's
    ``ListingMode``."""

    INCREMENTAL = "incremental"
    """From the cursor (entities listed in full are listed in full)."""
    FULL = "full"
    """Everything, ignoring the cursor; deletions are found."""
    RESYNC = "resync"
    """A date window again; the cursor stays where it is."""


@dataclass
class RunCounts:
    """What a run (or one batch of it) did to records; the ``etl_sync_log`` columns."""

    records_processed: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    records_deleted: int = 0
    records_rejected: int = 0
    items_rejected: int = 0
    """Child items (db/children.py) rejected while their parents were stored."""
    api_calls_made: int = 0

    def add(self, other: RunCounts, *, processed: bool = True) -> None:
        """Add ``other``'s counts; ``processed=False``: its records were already counted
        as processed (a retry)."""
        for counter in dataclasses.fields(RunCounts):
            if processed or counter.name != "records_processed":
                name = counter.name
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class StuckRun:
    """A ``running`` row the watchdog failed, and why."""

    run_id: int
    region: str
    entity: str
    owner_host: str | None
    owner_pid: int | None
    started_at: datetime
    heartbeat_at: datetime | None
    reason: str


OWNER = "{owner}"
"""In ``fail_running``'s reason: each row's owner, ``host:pid``."""


_RUNNING_MATCH = """
    sync_status = 'running'
    AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR region_code = $2)
    AND ($3::text IS NULL OR entity_type = $3) AND ($4::text IS NULL OR owner_host = $4)
    AND ($5::integer IS NULL OR owner_pid = $5)
"""


async def fail_running(
    conn: asyncpg.Connection | asyncpg.Pool,
    reason: str,
    *,
    run_id: int | None = None,
    region: str | None = None,
    entity: str | None = None,
    host: str | None = None,
    pid: int | None = None,
    own_sessions: Collection[int] | None = None,
) -> int:
    """Fail the ``running`` rows that match every filter given; how many.

    ``reason`` is their error (``OWNER`` in it becomes each row's owner). A row that
    is no longer ``running`` is left alone: whoever ended it first said why. At
    least one filter is required: nothing fails every run at once.

    ``own_sessions`` (the database sessions of this process's runs): a row whose
    pair's run lock another session holds is a live run and is spared, whatever
    host and pid it names. None: no such check (the caller holds the pair's lock).
    """
    filters = (run_id, region, entity, host, pid)
    if filters == (None,) * 5:
        raise ValueError("fail_running needs a filter")
    dead: list[int] | None = None
    if own_sessions is not None:
        rows = await conn.fetch(
            "SELECT id, region_code, entity_type FROM breezeway.etl_sync_log WHERE "
            + _RUNNING_MATCH,
            *filters,
        )
        pairs = {(row["region_code"], row["entity_type"]) for row in rows}
        live = await pairs_locked_elsewhere(conn, pairs, own_sessions)
        dead = [row["id"] for row in rows if (row["region_code"], row["entity_type"]) not in live]
        if not dead:
            return 0
    status = await conn.execute(
        """
        UPDATE breezeway.etl_sync_log
        SET sync_status = 'failed', sync_completed_at = now(),
            error_message = replace($6::text, $7::text,
                coalesce(owner_host, '?') || ':' || coalesce(owner_pid::text, '?'))
        WHERE ($8::bigint[] IS NULL OR id = ANY($8)) AND """
        + _RUNNING_MATCH,
        *filters,
        reason,
        OWNER,
        dead,
    )
    return int(status.split()[-1])


async def pairs_locked_elsewhere(
    conn: asyncpg.Connection | asyncpg.Pool,
    pairs: Iterable[tuple[str, str]],
    own_sessions: Collection[int] = (),
) -> set[tuple[str, str]]:
    """The (region, entity) pairs among ``pairs`` whose run lock a database session
    other than ``own_sessions`` holds now: a live run, in some process somewhere."""
    keys = {run_lock_key(region, entity): (region, entity) for region, entity in pairs}
    if not keys:
        return set()
    # A bigint advisory lock shows its high half as classid, its low half as objid.
    rows = await conn.fetch(
        """
        SELECT classid::bigint AS high, objid::bigint AS low FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND pid <> ALL($1::integer[])
        """,
        list(own_sessions),
    )
    held = set()
    for row in rows:
        key = row["high"] << 32 | row["low"]
        key = key - (1 << 64) if key >= 1 << 63 else key
        if key in keys:
            held.add(keys[key])
    return held


async def start_run(
    conn: asyncpg.Connection, region: str, entity: str, *, mode: RequestMode, trigger: str
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
        str(mode),
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
            cursor_from = $11, cursor_to = $12, items_rejected = $13
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
        counts.items_rejected,
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
