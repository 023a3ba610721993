"""Retention: deleting run history, rejected records, alert history and processed webhook
events past their age."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import structlog

log = structlog.get_logger(__name__)


def _deleted(status: str) -> int:
    return int(status.split()[-1])


def _days(age: timedelta) -> float:
    return age.total_seconds() / 86400


async def purge_sync_log(pool: asyncpg.Pool, older_than: timedelta) -> dict[str, int]:
    """Delete finished run rows and rejected records older than ``older_than``.

    Running rows are never deleted, nor each pair's latest success (which later
    runs carry forward as ``last_successful_sync_at``).
    """
    async with pool.acquire() as conn, conn.transaction():
        runs = await conn.execute(
            """
            DELETE FROM breezeway.etl_sync_log
            WHERE sync_status IN ('success', 'failed') AND sync_started_at < now() - $1::interval
              AND id NOT IN (
                SELECT DISTINCT ON (region_code, entity_type) id FROM breezeway.etl_sync_log
                WHERE sync_status = 'success' ORDER BY region_code, entity_type, id DESC)
            """,
            older_than,
        )
        rejected = await conn.execute(
            "DELETE FROM breezeway.rejected_records WHERE rejected_at < now() - $1::interval",
            older_than,
        )
    counts = {"sync_log_rows": _deleted(runs), "rejected_records": _deleted(rejected)}
    log.info("retention_purged", older_than_days=_days(older_than), **counts)
    return counts


async def purge_alert_history(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete alert history rows older than ``older_than``; how many were deleted."""
    status = await pool.execute(
        "DELETE FROM breezeway.alert_history WHERE created_at < now() - $1::interval",
        older_than,
    )
    count = _deleted(status)
    log.info("retention_purged", older_than_days=_days(older_than), alert_history_rows=count)
    return count


async def purge(pool: asyncpg.Pool, older_than: timedelta) -> dict[str, int]:
    """Everything retention deletes, older than ``older_than``: the daemon's daily job."""
    counts = await purge_sync_log(pool, older_than)
    counts["alert_history_rows"] = await purge_alert_history(pool, older_than)
    counts["webhook_events"] = _deleted(
        await pool.execute(
            "DELETE FROM breezeway.webhook_events "
            "WHERE processed_at IS NOT NULL AND received_at < now() - $1::interval",
            older_than,
        )
    )
    return counts
